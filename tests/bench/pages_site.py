"""What the page benchmark visits and how: the repositories, their page sets, and a visitor over HTTPS.

The repositories are the generated inputs (:mod:`tests.bench.repogen`, built
once and cached): flask-sized git and its hg conversion, and a git/git-sized
git repository (:data:`GIT_GIT`). The generated histories have no README and
no source file near 500 lines, so the benchmark pushes both first
(:func:`sample_files`, :func:`push_files`). The pages are chosen from the
repository the same way every run (:func:`git_shape`, :func:`page_set`): the
summary, two directories (the top-level one with the most entries and the
deepest one), the 500-line file as a page and raw, the history and its next
page, four commits (the tip, the newest merge, two older ones on the
first-parent line), branches and tags (and bookmarks for hg). The next page
of the history is whatever its pager links to (:func:`next_page`), so the
benchmark follows the pages' own paging (``?page=`` or ``?after=``).

A :class:`Visitor` holds one keep-alive HTTPS connection per client thread
to HAProxy, as a browser does, and sends its credentials with every
request: none, a session cookie from the sign-in form (:func:`sign_in`), or
HTTP Basic when there is no form to sign in with.
"""

from __future__ import annotations

import html
import http.client
import random
import re
import ssl
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from tests.bench.clientops import Runner
from tests.bench.fastimport import build_git
from tests.bench.history import LARGE, WORDS, between, pick
from tests.bench.repogen import ensure_built, ensure_inputs
from tests.bench.sides import basic_authorization

#: git/git's size as issue 21 gives it (~70,000 commits, ~4,000 files, a deep tree): the clone benchmark's
#: git/git-sized profile (60,000 commits, 3 levels) made longer and deeper. It builds in well under a minute.
GIT_GIT = replace(LARGE, name="gitgit", seed=4, commits=70_000, files=3_000, dirs=400, depth=3)
#: Page kinds, in the order of the report; the label says what URL each is.
KINDS: dict[str, str] = {
    "summary": "/OWNER/NAME (README + tree)",
    "tree": "/OWNER/NAME/tree/REF/DIR",
    "blob": "/OWNER/NAME/blob/REF/FILE",
    "raw": "/OWNER/NAME/raw/REF/FILE",
    "commits": "/OWNER/NAME/commits/REF",
    "commits-next": "/OWNER/NAME/commits/REF, next page (the pager's link)",
    "commit": "/OWNER/NAME/commit/ID",
    "branches": "/OWNER/NAME/branches",
    "tags": "/OWNER/NAME/tags",
    "bookmarks": "/OWNER/NAME/bookmarks",
}
#: How far down main's first-parent line the two older commits are (clamped to the history's length).
OLDER = (500, 2500)
#: The file of the file pages and its length, and the README of the summary (:func:`sample_files`).
SAMPLE, SAMPLE_LINES, README = "src/pages_sample.py", 500, "README.md"


@dataclass(frozen=True, slots=True)
class Input:
    """A repository to serve: ``source`` is copied in; its pages are chosen in ``twin`` (itself for git, the
    git repository an hg input was converted from). Only ``gated`` ones are judged against the target."""

    label: str
    vcs: str
    name: str
    source: Path
    twin: Path
    gated: bool


def inputs(root: Path, *, hg: bool, large: bool) -> list[Input]:
    """The inputs, built if missing (cached under ``root``): flask-sized git and hg, git/git-sized git."""
    built = ensure_inputs(root, large=False)
    found = [Input("git, flask-sized", "git", "flask", built.flask_git, built.flask_git, True)]
    if hg:
        found.append(Input("hg, flask-sized", "hg", "flask-hg", built.flask_hg, built.flask_git, True))
    if large:
        big = ensure_built(root / "gitgit.git", {"spec": asdict(GIT_GIT)}, lambda path: build_git(path, GIT_GIT))
        found.append(Input("git, git/git-sized", "git", "gitgit", big, big, False))
    return found


@dataclass(frozen=True, slots=True)
class Page:
    """One URL of the page set: its kind (a key of :data:`KINDS`) and its path (percent-encoded)."""

    kind: str
    path: str


@dataclass(frozen=True, slots=True)
class Shape:
    """What a page set is made of (the ref its pages name, two directories, four commits as git ids), and the
    size of the repository at the ref: commits, files, the deepest file's depth."""

    ref: str
    dirs: tuple[str, ...]
    commits: tuple[str, ...]
    history: int
    files: int
    depth: int


def git_shape(runner: Runner, git_dir: Path, ref: str) -> Shape:
    """The directories and commits of the pages, chosen in bare repository ``git_dir`` at ``ref``."""
    git = ["--git-dir", str(git_dir)]
    dirs = runner.git(*git, "ls-tree", "-r", "-d", "--name-only", ref).split()
    files = runner.git(*git, "ls-tree", "-r", "--name-only", ref).split()
    children = Counter(entry.rpartition("/")[0] for entry in [*files, *dirs])
    top = max((d for d in dirs if "/" not in d), key=lambda d: (children[d], d))
    deep = max(dirs, key=lambda d: (d.count("/"), children[d], d))
    chain = runner.git(*git, "rev-list", "--first-parent", ref).split()
    merges = [merge for merge in runner.git(*git, "rev-list", "--merges", "-2", ref).split() if merge != chain[0]]
    picked = [chain[0], *merges[:1], *(chain[min(depth, len(chain) - 1)] for depth in OLDER)]
    history = int(runner.git(*git, "rev-list", "--count", ref))
    return Shape(ref, tuple(dict.fromkeys([top, deep])), tuple(dict.fromkeys(picked)), history, len(files),
                 max(path.count("/") + 1 for path in files))


def sample_files(seed: int = 21) -> dict[str, str]:
    """A README and a ~500-line module, the same every run: the generated histories have no README, and no
    source file longer than ~350 lines, so the benchmark pushes these before it visits (see :data:`SAMPLE`)."""
    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(pick(rng, WORDS) for _ in range(between(rng, low, high)))

    readme = ["# Bench project", "", *(words(12, 20) + "." for _ in range(3)), ""]
    for section in range(6):
        readme += [f"## {words(2, 4).title()}", "", f"{words(20, 40)}, see [{words(1, 2)}](https://example.org/"
                   f"{section}) and `{pick(rng, WORDS)}()`.", "", "```python",
                   *(f"{pick(rng, WORDS)} = {pick(rng, WORDS)}({pick(rng, WORDS)!r})" for _ in range(4)), "```", "",
                   *(f"- {words(4, 10)}" for _ in range(4)), ""]
    module = ['"""' + words(6, 10) + '."""', "", "from __future__ import annotations", ""]
    while len(module) < SAMPLE_LINES - 10:
        name = f"{pick(rng, WORDS)}_{pick(rng, WORDS)}"
        module += ["", f"class {name.title().replace('_', '')}:", f'    """{words(6, 12)}."""', ""]
        for _method in range(between(rng, 2, 5)):
            arg = pick(rng, WORDS)
            module += [f"    def {pick(rng, WORDS)}(self, {arg}: str, limit: int = {between(rng, 1, 99)}) -> str:",
                       f'        """{words(5, 12)}."""', f"        if {arg} is None or limit < 0:",
                       f'            raise ValueError(f"{words(2, 5)}: {{{arg}!r}}")',
                       f"        # {words(4, 10)}", f"        return self.{pick(rng, WORDS)}({arg})[:limit]", ""]
    return {README: "\n".join(readme) + "\n", SAMPLE: "\n".join(module) + "\n"}


def looks_right(page: Page, body: bytes) -> bool:
    """Whether a page shows what it must: the summary the README's title, the file page the sample module's
    docstring, the raw file its very bytes (a styled error page answered 200 would not)."""
    sample = sample_files()[SAMPLE].encode()
    expected = {"summary": b"Bench project", "blob": sample.splitlines()[0].strip(b'"'), "raw": sample}
    return page.kind not in expected or (body == sample if page.kind == "raw" else expected[page.kind] in body)


def push_files(runner: Runner, vcs: str, clone: Path, url: str, files: dict[str, str], message: str) -> None:
    """One commit of ``files`` (path to text) in ``clone``, pushed to ``url`` (git: to its main branch)."""
    for name, content in files.items():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        (clone / name).write_text(content)
    if vcs == "git":
        runner.git("add", *files, cwd=clone)
        runner.git("commit", "-q", "-m", message, cwd=clone)
        runner.git("push", "-q", url, "HEAD:main", cwd=clone)
    else:
        runner.hg("commit", "-A", "-q", "-m", message, cwd=clone)
        runner.hg("push", "-q", url, cwd=clone)


def page_set(repo: str, shape: Shape, commits: tuple[str, ...], *, bookmarks: bool) -> list[Page]:
    """The page set of ``repo`` (OWNER/NAME): every kind but the history's next page, which the pager gives."""
    base, ref = f"/{repo}", quote(shape.ref)
    found = [Page("summary", base)]
    found += [Page("tree", f"{base}/tree/{ref}/{quote(d)}") for d in shape.dirs]
    found += [Page("blob", f"{base}/blob/{ref}/{quote(SAMPLE)}"),
              Page("raw", f"{base}/raw/{ref}/{quote(SAMPLE)}"),
              Page("commits", f"{base}/commits/{ref}")]
    found += [Page("commit", f"{base}/commit/{commit}") for commit in commits]
    found += [Page("branches", f"{base}/branches"), Page("tags", f"{base}/tags")]
    return found + ([Page("bookmarks", f"{base}/bookmarks")] if bookmarks else [])


def hg_commits(hg_dir: Path, git_commits: tuple[str, ...]) -> tuple[str, ...]:
    """The hg nodes of git commits, from the conversion's map (``.hg/shamap``: "gitsha hgnode" lines)."""
    nodes = dict(line.split() for line in (hg_dir / ".hg" / "shamap").read_text().splitlines())
    return tuple(nodes[commit] for commit in git_commits)


_HREF = re.compile(r'href="([^"]+)"')


def next_page(body: bytes, repo: str) -> str | None:
    """The path of the history's next page, as its pager links it (a link to the history with a query), or None."""
    for match in _HREF.finditer(body.decode("utf-8", "replace")):
        parts = urlsplit(html.unescape(match.group(1)))
        if parts.path.startswith(f"/{repo}/commits/") and parts.query:
            return f"{parts.path}?{parts.query}"
    return None


# -- visiting -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetched:
    """One response: status, body, the time from sending the request to the body's last byte (ms)."""

    status: int
    body: bytes
    ms: float
    headers: http.client.HTTPMessage


class Visitor:
    """One visitor's requests through HAProxy: a keep-alive connection per thread, credentials on each request."""

    def __init__(self, host: str, port: int, ca: Path, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.context = ssl.create_default_context(cafile=str(ca))
        self.headers = dict(headers or {})
        self.local = threading.local()
        self.reconnects = 0

    def _connection(self) -> http.client.HTTPSConnection:
        connection: http.client.HTTPSConnection | None = getattr(self.local, "connection", None)
        if connection is None:  # connected here, before any timing starts
            connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=60)
            connection.connect()
            self.local.connection = connection
        return connection

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Fetched:
        """The response to one request; a connection the server closed meanwhile is opened again, untimed."""
        for attempt in (1, 2):
            connection = self._connection()
            started = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers={**self.headers, **(headers or {})})
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    raise
                self.reconnects += 1
                continue
            ms = (time.perf_counter() - started) * 1000
            if response.will_close:
                connection.close()
                self.local.connection = None
            return Fetched(response.status, data, ms, response.headers)
        raise AssertionError("unreachable")

    def get(self, path: str) -> Fetched:
        return self.request("GET", path)

    def close(self) -> None:
        connection = getattr(self.local, "connection", None)
        if connection is not None:
            connection.close()


class _Form(HTMLParser):
    """The first form of a page: its action and its inputs (name, type, value)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.inputs: list[tuple[str, str, str]] = []
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action") or "/login"
        elif tag == "input" and self.action is not None and not self.done and "name" in values:
            self.inputs.append((values["name"], values.get("type", "text").lower(), values.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        self.done = self.done or (tag == "form" and self.action is not None)


def cookies(headers: http.client.HTTPMessage) -> dict[str, str]:
    """The cookies a response sets, name to value (attributes left out)."""
    found = {}
    for line in headers.get_all("Set-Cookie") or []:
        name, _eq, value = line.split(";", 1)[0].strip().partition("=")
        found[name] = value
    return found


def sign_in(anonymous: Visitor, user: str, password: str) -> tuple[dict[str, str], str]:
    """(headers that make a visitor ``user``, how): the session cookie of the ``/login`` form, else HTTP Basic."""
    basic = {"Authorization": basic_authorization(user, password)}
    form_page = anonymous.get("/login")
    form = _Form()
    form.feed(form_page.body.decode("utf-8", "replace"))
    if form_page.status != 200 or form.action is None or not any(kind == "password" for _n, kind, _v in form.inputs):
        return basic, f"HTTP Basic (GET /login answered {form_page.status} without a sign-in form)"
    jar = cookies(form_page.headers)
    fields, named = {}, False
    for name, kind, value in form.inputs:
        if kind == "password":
            fields[name] = password
        elif kind in ("text", "email") and not named:
            fields[name], named = user, True
        elif kind not in ("submit", "checkbox"):
            fields[name] = value
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
    answer = anonymous.request("POST", form.action, urlencode(fields).encode(),
                               {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    jar.update(cookies(answer.headers))
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items() if v)}
    home = anonymous.request("GET", "/", headers=headers)
    if answer.status not in (302, 303) or user.encode() not in home.body:
        return basic, f"HTTP Basic (the /login form answered {answer.status}; not signed in after it)"
    return headers, "the session cookie of the /login form"
