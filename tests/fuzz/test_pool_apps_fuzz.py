"""Bad input against each pool's whole WSGI app, in-process (hypothesis).

Each pool is built exactly as gunicorn builds it (:func:`hostd.serve.wsgi.git_app`
and friends) on a fresh data directory, with memcached *not* running, so
every cache and throttle call fails and must fail safe. Requests are
malformed at every layer: method, path (traversal, encodings, control
characters), query string, headers (Authorization garbage, X-HgArg-*,
Git-Protocol, gzip that is not gzip), and bodies (random and half-valid
pkt-lines, hg argument bodies). The property: the app answers with a status
below 500, never raises, and its body can be read and closed.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mercurial import wireprotov1server

from hostd.ops.bootstrap import initialize
from hostd.serve import wsgi
from hostd.settings import Settings
from tests import pg
from tests.ports import free_ports

EXAMPLES = int(os.environ.get("HOSTD_FUZZ_EXAMPLES", "200"))
SHA = "0123456789abcdef0123456789abcdef01234567"

# --- Strategies ---------------------------------------------------------------------

SEGMENTS = st.sampled_from([
    "demo", "hello", "hello.git", "hello-hg", "nobody", "x.git", "..", ".", "%2e%2e", "%2F", ".git", ".hg",
    "info", "refs", "git-upload-pack", "git-receive-pack", "HEAD", "objects", "lfs", "objects/batch",
    "static", "~", "a" * 300, "\x00", "\x7f", "é", "\udcff".encode("utf-8", "surrogateescape").decode("latin-1"),
    "healthz", "readyz", "raw-file", "tip", "archive", "hello.git.git", " ", "%00",
])
PATHS = st.one_of(
    st.lists(SEGMENTS, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=80).map(lambda s: "/" + s),
    st.sampled_from(["", "//", "/demo//hello.git/info/refs", "/demo/hello.git/../../etc/passwd"]),
)
# Every wire command in Mercurial's own table, some hgweb pages, and nonsense.
HG_COMMANDS = st.sampled_from(sorted(cmd.decode() for cmd in wireprotov1server.commands) + [
    "log", "changelog", "file", "raw-file", "archive", "static", "nosuchcommand", "", "cmd", "\x00",
])
QUERY_PARTS = st.one_of(
    st.builds(lambda s: f"service={s}", st.sampled_from(["git-upload-pack", "git-receive-pack", "git-x", "", "%00"])),
    st.builds(lambda c: f"cmd={c}", HG_COMMANDS),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["key", "namespace", "heads", "common", "nodes", "pairs",
                                                         "cmds", "x", "style", "rev", "roots", "bases", "path",
                                                         "listkeys", "bundlecaps", "file", "node"]),
              st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)),
    st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=40),
)
QUERIES = st.lists(QUERY_PARTS, max_size=5).map("&".join)
METHODS = st.one_of(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND"]),
                    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12))
PRINTABLE = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=200)


def pkt(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


PKT_LINES = st.lists(st.one_of(
    st.binary(max_size=100).map(pkt),
    st.just(b"0000"), st.just(b"0001"), st.just(b"0002"), st.just(b"0003"), st.just(b"ffff"), st.just(b"zzzz"),
    st.sampled_from([f"want {SHA}\n", f"have {SHA}\n", "done\n", "command=ls-refs\n", "command=fetch\n",
                     f"{'0' * 40} {SHA} refs/heads/main\0report-status\n", "deepen 1\n", "shallow x\n",
                     "agent=fuzz\n", "object-format=sha256\n"]).map(lambda s: pkt(s.encode())),
), max_size=12).map(b"".join)
BODIES = st.one_of(st.just(b""), st.binary(max_size=2000), PKT_LINES,
                   PKT_LINES.map(gzip.compress), st.binary(max_size=200).map(lambda b: b"\x1f\x8b\x08" + b),
                   st.just(b"HG20\x00\x00\x00\x00garbage"), st.just(b"HG10UN" + b"\x00" * 40))


@st.composite
def headers(draw: st.DrawFn, password: str, valid: bool = False) -> dict[str, str]:
    result: dict[str, str] = {}
    kinds = ["none", "valid", "wrong", "garbage", "badb64", "nocolon", "bearer"]
    auth = draw(st.sampled_from(["valid"] * 6 + kinds if valid else kinds))
    if auth == "valid":
        result["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"demo:{password}".encode()).decode()
    elif auth == "wrong":
        user = draw(st.sampled_from(["demo", "", "nobody", "demo\x00", "d" * 500]))
        result["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"{user}:{draw(PRINTABLE)}".encode()).decode()
    elif auth == "garbage":
        result["HTTP_AUTHORIZATION"] = draw(PRINTABLE)
    elif auth == "badb64":
        result["HTTP_AUTHORIZATION"] = "Basic " + draw(PRINTABLE)
    elif auth == "nocolon":
        result["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(draw(st.binary(max_size=60))).decode()
    elif auth == "bearer":
        result["HTTP_AUTHORIZATION"] = "Bearer " + draw(PRINTABLE)
    for i in range(draw(st.integers(0, 4))):
        result[f"HTTP_X_HGARG_{draw(st.integers(0, 3)) if i else 1}"] = draw(st.one_of(
            PRINTABLE, st.sampled_from(["cmds=heads+%3Bknown+nodes%3D", "key=default&namespace=bookmarks",
                                        "heads=" + SHA, "common=" + "0" * 40, "bundlecaps=HG20"]))).replace("\n", "")
    optional = {
        "HTTP_X_HGARGS_POST": st.integers(-5, 5000).map(str) | PRINTABLE,
        "HTTP_X_HGPROTO_1": st.sampled_from(["0.1 0.2 comp=zstd,zlib,none,bzip2", "partial-pull", "x" * 100]),
        "CONTENT_TYPE": st.sampled_from(["application/x-git-upload-pack-request",
                                         "application/x-git-receive-pack-request", "application/mercurial-0.1",
                                         "application/mercurial-0.2", "application/x-www-form-urlencoded",
                                         "multipart/form-data; boundary=x", "text/plain"]) | PRINTABLE,
        "HTTP_CONTENT_ENCODING": st.sampled_from(["gzip", "x-gzip", "deflate", "br", "identity", "gzip, gzip"]),
        "HTTP_GIT_PROTOCOL": st.sampled_from(["version=2", "version=1", "version=9", "", "\x00"]),
        "HTTP_ACCEPT": st.sampled_from(["application/mercurial-0.1", "*/*", "text/html"]),
        "HTTP_X_FORWARDED_FOR": PRINTABLE,
        "HTTP_X_FORWARDED_PROTO": st.sampled_from(["https", "http", "gopher", ""]),
        "HTTP_X_HOSTD_ROUTE": st.sampled_from(["git:smart-rpc", "hg:wire-command", "web:default", "?"]),
        "HTTP_TRANSFER_ENCODING": st.sampled_from(["chunked", "gzip", "identity"]),
        "HTTP_COOKIE": PRINTABLE,
        "HTTP_HOST": PRINTABLE,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()) and draw(st.booleans()):
            result[name] = draw(strategy)
    return result


# --- The apps -------------------------------------------------------------------------

class Pools:
    def __init__(self, apps: dict[str, Callable[..., Any]], password: str) -> None:
        self.apps = apps
        self.password = password


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pools]:
    [memcached] = free_ports(1)  # nothing listens there: memcached is down
    env = {"HOSTD_DATA": str(tmp_path_factory.mktemp("fuzz") / "var"), "HOSTD_MEMCACHED_PORT": str(memcached),
           "HOSTD_DATABASE_URL": pg.new_database(migrated=False)}
    config = Settings.from_env(env)
    demo = initialize(config)
    assert demo is not None
    yield Pools({"git": wsgi.git_app(config), "hg": wsgi.hg_app(config), "web": wsgi.web_app(config)},
                demo.password)


def call(app: Callable[..., Any], method: str, path: str, query: str, extra: dict[str, str],
         body: bytes) -> tuple[str, bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8101", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "CONTENT_LENGTH": str(len(body)),
        "HTTP_X_REQUEST_ID": "fuzz",
    }
    environ.update(extra)
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Callable[..., Any]:
        seen.append(status)
        return lambda data: None

    result = app(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    assert seen, "no start_response"
    return seen[-1], content


REQUESTS = st.tuples(METHODS, PATHS, QUERIES, BODIES, st.booleans())

# Well-formed protocol requests of the demo repositories with one part
# garbled: these get past authentication and classification into dulwich,
# hgweb and the pages, where the parsers of bodies and arguments live.
SHAPED = {
    "git": st.one_of(
        st.tuples(st.just("GET"), st.just("/demo/hello.git/info/refs"),
                  st.sampled_from(["service=git-upload-pack", "service=git-receive-pack"]), st.just(b""),
                  st.just(False)),
        st.tuples(st.sampled_from(["POST", "GET", "PUT"]),
                  st.sampled_from(["/demo/hello.git/git-upload-pack", "/demo/hello.git/git-receive-pack"]),
                  st.just(""), BODIES, st.booleans()),
    ),
    "hg": st.tuples(st.sampled_from(["GET", "POST"]), st.sampled_from(["/demo/hello-hg", "/demo/hello-hg/"]),
                    st.builds(lambda c, q: f"cmd={c}&{q}" if q else f"cmd={c}", HG_COMMANDS, QUERIES),
                    BODIES, st.booleans()),
    "web": st.tuples(st.sampled_from(["GET", "POST", "HEAD"]),
                     st.sampled_from(["/", "/login", "/demo/hello", "/demo/hello-hg", "/demo/hello.git", "/demo"]),
                     QUERIES, BODIES, st.booleans()),
}


@pytest.mark.parametrize("pool", ["git", "hg", "web"])
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_no_5xx_and_no_exception(pools: Pools, pool: str, data: st.DataObject) -> None:
    shaped = data.draw(st.booleans())
    method, path, query, body, lie_about_length = data.draw(SHAPED[pool] if shaped else REQUESTS)
    extra = data.draw(headers(pools.password, valid=shaped))
    if lie_about_length:
        extra["CONTENT_LENGTH"] = data.draw(st.sampled_from(["0", "1", "100", "4096"]))
    status, _ = call(pools.apps[pool], method, path, query, extra, body)
    code = int(status.split(" ", 1)[0])
    event(f"{pool} {code}")
    assert 200 <= code < 500, (status, method, path, query, extra)


BUNDLE2 = "bundlecaps=HG20,bundle2%3DHG20%250Alistkeys"


@pytest.mark.parametrize(("pool", "path", "query", "expected"), [
    ("web", "/\x80", "", 404),  # GET /%80: not UTF-8
    ("hg", "/demo/hello-hg", "cmd=known", 400),  # wire command without its "nodes" argument
    ("hg", "/demo/hello-hg", "cmd=archive", 400),  # page without its "node"
    ("hg", "/demo/hello-hg", "cmd=capabilities", 200),
    # Found by the table tests in tests/hostd/hg/test_app.py (500s and cut-off streams):
    ("hg", "/demo/hello-hg", f"cmd=changegroup&roots={SHA}", 404),  # unknown node
    ("hg", "/demo/hello-hg", "cmd=changegroup&roots=", 400),  # empty revset
    ("hg", "/demo/hello-hg", "cmd=get_cached_bundle_inline&path=/etc/passwd", 404),
    ("hg", "/demo/hello-hg", "cmd=batch&cmds=stream_out+", 400),  # streams cannot be batched
    ("hg", "/demo/hello-hg", f"cmd=getbundle&{BUNDLE2}&listkeys={'n' * 300}", 400),  # cut off after 200
    ("hg", "/demo/hello-hg", "cmd=static&file=../x", 404),
], ids=["web-non-utf8-path", "hg-known-without-nodes", "hg-archive-without-node", "hg-capabilities",
        "hg-changegroup-unknown-root", "hg-changegroup-no-roots", "hg-inline-bundle-outside-the-cache",
        "hg-batched-stream", "hg-getbundle-long-listkeys", "hg-static-parent"])
def test_found_by_fuzzing(pools: Pools, pool: str, path: str, query: str, expected: int) -> None:
    """Inputs this suite found answering 500, now a clear 4xx (and a control)."""
    auth = "Basic " + base64.b64encode(f"demo:{pools.password}".encode()).decode()
    status, _ = call(pools.apps[pool], "GET", path, query,
                     {"HTTP_AUTHORIZATION": auth, "HTTP_ACCEPT": "application/mercurial-0.1"}, b"")
    assert int(status.split(" ", 1)[0]) == expected
