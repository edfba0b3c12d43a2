"""The JSON body of the webhook delivery that describes one push, the same shape for git and hg.

A background job calls :func:`push_payload` with what the push log recorded
(repository, pusher, time, and the ``(ref, old, new)`` updates) and sends the
result as the delivery's body.

Usage::

    body = push_payload(
        vcs="git", repo_dir=Path("/srv/repos/alice/tools.git"), owner="alice", name="tools",
        pusher="bob", at=1796403662.0, updates=[("refs/heads/main", old_id, new_id)],
        base_url="https://git.example.com",
    )
    data = json.dumps(body).encode()

Which commits a ref brought (newest first, at most :data:`MAX_COMMITS` over
the whole push, each listed once, under the first ref that brought it):

* a moved ref: those reachable from ``new`` and not from ``old`` (``old..new``,
  hg ``only(new, old)``);
* a created ref: those reachable from ``new`` and from no ref the push left
  alone nor from any ``old`` of the push. For git that is every ref except
  the updated ones, by name; for hg every named-branch head except the ones
  the push's branch updates grew into (descendants of their ``new``, so a
  later push to the same branch does not hide this one's commits). A branch
  or bookmark created at an existing commit brings none;
* a deleted ref: none. A ref whose ``old`` or ``new`` is not in the
  repository (a force-push race, a later gc), or not a commit (a tag of a
  tree), brings none either.

``total_commits`` counts distinct commits. While every ref's commits fit in
one listing (the usual push) it is exact and costs nothing more. A ref with
more is counted by git or hg without listing its commits, minus those
reachable from the tips of the refs counted before it. That errs low only
in a big push where a ref newly reaches commits that an earlier updated ref
already had before the push, and never below the number listed.

Cost: one call resolves every id of the push (existence, tags peeled), then
one call lists each ref that is neither deleted nor missing; a second (a
count) only once a ref may hold more than :data:`MAX_COMMITS` commits or the
listing is full. For git each call is a ``git`` subprocess, every argument
a validated 40-hex id or a validated git ref inside a ``--exclude=`` option
word, so nothing a pusher names can be read as an option. For hg each is a
revset evaluated in-process by Mercurial (the worker has it imported), on
one repository object per push, the ids quoted by Mercurial (``id(%s)``).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from mercurial import encoding, error, initialization, registrar
from mercurial.repo import factory as repo_factory

from hostd.hg.app import base_ui

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Registers Mercurial's revset predicates (``id()``, ``only()``, ...), as hostd.hg.sshserve does; idempotent.
initialization.init()

MAX_COMMITS: Final = 20
ZERO: Final = "0" * 40
TIMEOUT: Final = 300.0

_ID = re.compile(r"[0-9a-f]{40}\Z")
# git check-ref-format forbids these characters anywhere in a ref name. That
# matters here because a created ref's name becomes a --exclude pattern: no
# glob character (* ? [ \) may reach it, and its first byte is never a dash
# (the pattern is part of one "--exclude=..." word anyway).
_GIT_REF = re.compile(r"refs/[^\x00-\x20\x7f~^:?*\[\\]+\Z")
# hg refs are only echoed back (never passed to hg): the form compute_updates writes.
_HG_REF = re.compile(r"(?:branch|bookmark):.+\Z", re.DOTALL)
_HG_USER = re.compile(r"(.*?)\s*<([^<>]*)>\s*\Z", re.DOTALL)
#: What Mercurial raises for a repository it cannot open (RepoError, Abort), a
#: revset it cannot parse, a node or revision it cannot find (RepoLookupError,
#: LookupError) or a revlog it cannot read (StorageError): that question fails
#: (None, logged), as the ``hg`` command's exit status 255 did.
_HG_FAILURES: Final = (error.RepoError, error.Abort, error.RepoLookupError, error.LookupError, error.StorageError,
                       error.ParseError)
# Five NUL-separated fields per commit, each commit ended by NUL (-z). git
# cuts a message at an embedded NUL, so the count of fields cannot drift.
_GIT_FORMAT = "--format=%H%x00%an%x00%ae%x00%aI%x00%B"


@dataclass(frozen=True, slots=True)
class Update:
    """One ``(ref, old, new)`` entry of the push log, validated."""

    ref: str
    old: str
    new: str

    @property
    def created(self) -> bool:
        """The ref did not exist before the push."""
        return self.old == ZERO

    @property
    def deleted(self) -> bool:
        """The push removed the ref."""
        return self.new == ZERO


@dataclass(frozen=True, slots=True)
class Commit:
    """What the payload says about one commit."""

    id: str
    name: str
    email: str
    timestamp: str
    message: str


@dataclass(frozen=True, slots=True)
class Range:
    """Commits reachable from ``tip`` and from none of ``hide`` (commit ids);
    with ``others``, from none of the refs the push left alone either."""

    tip: str
    hide: tuple[str, ...]
    others: bool


class Repository(Protocol):
    """The questions asked of a repository; each answer is one git subprocess or one in-process hg revset."""

    def resolve(self, ids: Sequence[str]) -> dict[str, str]:
        """Each of ``ids`` that names a commit (a tag peeled) mapped to that commit's id."""
        ...

    def log(self, commits: Range, limit: int) -> list[Commit] | None:
        """The newest ``limit`` commits of the range, newest first; None on failure."""
        ...

    def count(self, commits: Range) -> int | None:
        """How many commits the range has; None on failure."""
        ...


def push_payload(*, vcs: str, repo_dir: Path, owner: str, name: str, pusher: str, at: float,
                 updates: Sequence[tuple[str, str, str]], base_url: str) -> dict[str, Any]:
    """The JSON-serialisable body of the push webhook (shape in the module docstring).

    Raises ValueError for an unknown ``vcs`` or a malformed update (an id that
    is not 40 lower-case hex digits, a ref that is not a git ref or an hg
    ``branch:``/``bookmark:`` name): the push log never writes one.
    Raises FileNotFoundError when ``repo_dir`` is not there (and the push
    has an id to resolve).
    """
    if vcs not in ("git", "hg"):
        raise ValueError(f"unknown vcs {vcs!r}")
    parsed = [_update(vcs, *entry) for entry in updates]
    if vcs == "git":
        listed, total = collect(GitRepository(repo_dir.absolute(), tuple(u.ref for u in parsed)), parsed)
    else:
        news = tuple(u.new for u in parsed if u.ref.startswith("branch:") and not u.deleted)
        with HgRepository(repo_dir.absolute(), news) as hg_repo:
            listed, total = collect(hg_repo, parsed)
    url = f"{base_url}/{owner}/{name}"
    return {
        "event": "push",
        "repository": {"owner": owner, "name": name, "full_name": f"{owner}/{name}", "vcs": vcs,
                       "html_url": url, "clone_url": url},
        "pusher": {"username": pusher},
        "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
        "refs": [{"ref": u.ref, "before": u.old, "after": u.new, "created": u.created, "deleted": u.deleted}
                 for u in parsed],
        "commits": [{"id": c.id, "ref": ref, "author": {"name": c.name, "email": c.email},
                     "timestamp": c.timestamp, "message": c.message, "url": f"{url}/commit/{c.id}"}
                    for ref, c in listed],
        "total_commits": total,
        "commits_truncated": total > len(listed),
    }


def _update(vcs: str, ref: str, old: str, new: str) -> Update:
    for value in (old, new):
        if not _ID.match(value):
            raise ValueError(f"{ref!r}: {value!r} is not a full hex id")
    if not (_GIT_REF if vcs == "git" else _HG_REF).match(ref) or (vcs == "git" and (".." in ref or "@{" in ref)):
        raise ValueError(f"{ref!r} is not a {vcs} ref")
    return Update(ref, old, new)


def collect(repo: Repository, updates: Sequence[Update]) -> tuple[list[tuple[str, Commit]], int]:
    """The commits to list, each with the first ref that brought it, and the distinct total."""
    resolved = repo.resolve(sorted({i for u in updates for i in (u.old, u.new) if i != ZERO}))
    olds = tuple(dict.fromkeys(resolved[u.old] for u in updates if u.old in resolved))
    listed: list[tuple[str, Commit]] = []
    seen: set[str] = set()
    known: set[str] | None = set()  # every id counted so far, while every ref was listed in full
    tips: list[str] = []
    total = 0
    for u in updates:
        if u.deleted or u.new not in resolved or not (u.created or u.old in resolved):
            continue
        tip = resolved[u.new]
        commits = Range(tip, olds if u.created else (resolved[u.old],), u.created)
        found: list[Commit] | None = None  # None: not listed, the listing is full
        if len(listed) < MAX_COMMITS:
            found = repo.log(commits, MAX_COMMITS)
            if found is None:
                continue
        fresh = [c for c in found or () if c.id not in seen][: MAX_COMMITS - len(listed)]
        listed.extend((u.ref, c) for c in fresh)
        seen.update(c.id for c in fresh)
        if known is not None and found is not None and len(found) < MAX_COMMITS:
            # The whole range is in hand, and so was every one before it: exact.
            added = {c.id for c in found} - known
            known |= added
            total += len(added)
        else:
            known = None
            counted = repo.count(replace(commits, hide=commits.hide + tuple(tips)))
            total += max(counted or 0, len(fresh))
        tips.append(tip)
    return listed, total


def _run(argv: list[str], *, cwd: Path, stdin: bytes = b"") -> bytes | None:
    """The output of one command; None (logged) when it fails.

    A minimal environment: no system or user configuration, plain output.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "LC_ALL": "C.UTF-8",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_NO_REPLACE_OBJECTS": "1",
           "HGPLAIN": "1", "HGRCPATH": "", "HGENCODING": "utf-8"}
    result = subprocess.run(argv, cwd=cwd, env=env, input=stdin, capture_output=True, timeout=TIMEOUT, check=False)
    if result.returncode != 0:
        log.warning("%s failed (%d): %s", argv[:6], result.returncode,
                    result.stderr.decode("utf-8", "replace").strip()[-500:])
        return None
    return result.stdout


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class GitRepository:
    """A bare git repository, asked through ``git``; ``refs`` are every ref the push updated."""

    git_dir: Path
    refs: tuple[str, ...]

    def _git(self, args: list[str], stdin: bytes = b"") -> bytes | None:
        # Output in UTF-8 whatever the repository's config says; no signature
        # checks (slow, and their text would corrupt the format).
        base = ["git", f"--git-dir={self.git_dir}", "-c", "i18n.logOutputEncoding=UTF-8",
                "-c", "log.showSignature=false"]
        return _run(base + args, cwd=self.git_dir, stdin=stdin)

    def _revs(self, commits: Range) -> list[str]:
        revs = [commits.tip, "--not", *commits.hide]
        if commits.others:
            # --glob=refs/*, not --all: --all adds HEAD, which --exclude does not
            # remove, and HEAD names the branch a first push creates.
            revs += [f"--exclude={ref}" for ref in self.refs] + ["--glob=refs/*"]
        return revs

    def resolve(self, ids: Sequence[str]) -> dict[str, str]:
        if not ids:
            return {}
        query = "".join(f"{i}^{{commit}}\n" for i in ids).encode()
        out = self._git(["cat-file", "--batch-check=%(objectname) %(objecttype)"], query)
        found: dict[str, str] = {}
        for wanted, line in zip(ids, (out or b"").decode("ascii", "replace").splitlines(), strict=False):
            parts = line.split()
            if len(parts) == 2 and parts[1] == "commit" and _ID.match(parts[0]):
                found[wanted] = parts[0]
        return found

    def log(self, commits: Range, limit: int) -> list[Commit] | None:
        out = self._git(["log", "-z", _GIT_FORMAT, f"--max-count={limit}", *self._revs(commits)])
        if out is None:
            return None
        fields = out.split(b"\0")[:-1]
        if len(fields) % 5:
            log.warning("unparsable git log output in %s", self.git_dir)
            return None
        return [Commit(_text(fields[i]), _text(fields[i + 1]), _text(fields[i + 2]), _text(fields[i + 3]),
                       _text(fields[i + 4]).rstrip("\n")) for i in range(0, len(fields), 5)]

    def count(self, commits: Range) -> int | None:
        out = self._git(["rev-list", "--count", *self._revs(commits)])
        return None if out is None or not out.strip().isdigit() else int(out)


def _ids(count: int) -> bytes:
    """A revset of ``count`` full hex nodes, one ``%s`` each for Mercurial's quoting; ``id()`` so that
    no tag or bookmark of that name can stand in, and a node that is not there is no error, just none."""
    return b"+".join([b"id(%s)"] * count) or b"none()"


def _hg_text(raw: bytes) -> str:
    """A user or description from Mercurial (local encoding, the UTF-8 kept aside) as ``hg log -T json``
    gave it under HGENCODING=utf-8, whatever this process's locale: an ancient non-UTF-8 one read as Latin-1."""
    return _text(encoding.fromlocal(raw))


def _hg_commit(ctx: Any) -> Commit:
    user = _hg_text(ctx.user())
    match = _HG_USER.match(user)
    name, email = (match.group(1), match.group(2)) if match else (user.strip(), "")
    when, offset = ctx.date()  # offset: seconds west of UTC
    return Commit(ctx.hex().decode("ascii"), name, email, _hg_time(int(when), int(offset)),
                  _hg_text(ctx.description()))


def _hg_time(when: int, offset: int) -> str:
    """ISO 8601 in the changeset's own offset; UTC if that offset is not one a clock can have."""
    zone = timezone(timedelta(seconds=-offset)) if abs(offset) < 86400 else UTC
    try:
        return datetime.fromtimestamp(when, zone).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(0, UTC).isoformat(timespec="seconds")


class HgRepository:
    """An hg repository, read in-process; ``branch_news`` are the new heads of the push's branch updates.

    Used as a ``with`` block: opened at the first question, with hostd's ui
    (:func:`hostd.hg.app.base_ui`: no system or user hgrc), unfiltered (the
    push log records what is on disk, whatever a view hides), and closed on
    leaving. One object per push: no repository object is shared by threads.
    """

    def __init__(self, root: Path, branch_news: tuple[str, ...]) -> None:
        self.root = root
        self.branch_news = branch_news
        self._repo: Any = None

    def __enter__(self) -> HgRepository:
        return self

    def __exit__(self, *exc_info: object) -> None:
        repo, self._repo = self._repo, None
        if repo is not None:
            repo.close()

    def _ask(self, question: Callable[[Any], _T]) -> _T | None:
        """``question(repo)``; None (logged) when Mercurial cannot answer. FileNotFoundError: no directory."""
        try:
            if self._repo is None:
                opened = repo_factory.repository(base_ui(), os.fsencode(self.root),
                                                 intents={registrar.INTENT_READONLY})
                self._repo = opened.unfiltered()
            return question(self._repo)
        except _HG_FAILURES as failure:
            if self._repo is None and not self.root.is_dir():
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(self.root)) from failure
            log.warning("hg query failed in %s: %s: %s", self.root, type(failure).__name__, failure)
            return None

    def _revset(self, commits: Range) -> tuple[bytes, list[bytes]]:
        """``only(id(tip), hide...)`` and its arguments, for ``repo.revs``."""
        spec = b"only(id(%s), " + _ids(len(commits.hide))
        nodes = [commits.tip, *commits.hide]
        if commits.others:
            spec += b" + (head() - descendants(" + _ids(len(self.branch_news)) + b"))"
            nodes += self.branch_news
        return spec + b")", [node.encode("ascii") for node in nodes]

    def resolve(self, ids: Sequence[str]) -> dict[str, str]:
        if not ids:
            return {}
        spec, args = _ids(len(ids)), [i.encode("ascii") for i in ids]
        found = self._ask(lambda repo: [repo[rev].hex().decode("ascii") for rev in repo.revs(spec, *args)])
        return {n: n for n in found or ()}

    def log(self, commits: Range, limit: int) -> list[Commit] | None:
        spec, args = self._revset(commits)
        spec = b"sort(" + spec + b", -rev)"
        return self._ask(lambda repo: [_hg_commit(repo[rev]) for rev in islice(repo.revs(spec, *args), limit)])

    def count(self, commits: Range) -> int | None:
        spec, args = self._revset(commits)
        return self._ask(lambda repo: len(repo.revs(spec, *args)))
