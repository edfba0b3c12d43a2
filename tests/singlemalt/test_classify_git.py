"""classify_git: the route table, path hygiene, and fail-closed properties."""

from __future__ import annotations

from typing import Any

import pytest
from gunicorn.util import unquote_to_wsgi_str
from hypothesis import given, settings
from hypothesis import strategies as st

from singlemalt.classify_git import classify_git
from singlemalt.target import Action, Malformed, Target
from tests.path_cases import PATH_CASES, SEGMENT, SEPARATOR, PathCase

# What a path refused after decoding is called (PATH_INFO has no encodings).
CONTROL = "control character in path"

SHA1 = "0123456789abcdef0123456789abcdef01234567"
SHA256 = SHA1 + "89abcdef0123456789abcdef"
REPO = "alice/demo.git"


def env(method: str, path: str, query: str = "") -> dict[str, Any]:
    return {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}


def read(operation: str, repository: str = REPO) -> Target:
    return Target(repository, Action.READ, operation)


def write(operation: str, repository: str = REPO) -> Target:
    return Target(repository, Action.WRITE, operation)


UNKNOWN = write("git-unknown")

CASES = [
    # smart HTTP
    pytest.param(env("GET", "/alice/demo.git/info/refs", "service=git-upload-pack"),
                 read("git-upload-pack"), id="refs-upload-pack"),
    pytest.param(env("POST", "/alice/demo.git/git-upload-pack"), read("git-upload-pack"),
                 id="post-upload-pack"),
    pytest.param(env("GET", "/alice/demo.git/info/refs", "service=git-receive-pack"),
                 write("git-receive-pack"), id="refs-receive-pack"),
    pytest.param(env("POST", "/alice/demo.git/git-receive-pack"), write("git-receive-pack"),
                 id="post-receive-pack"),
    pytest.param(env("GET", "/alice/demo/info/refs", "service=git-upload-pack"),
                 read("git-upload-pack", "alice/demo"), id="repo-without-dot-git"),
    pytest.param(env("GET", "/alice/demo.git/info/refs", "x=1&service=git-upload-pack"),
                 read("git-upload-pack"), id="refs-other-params"),
    pytest.param(env("GET", "/alice/demo.git/info/refs", "service=git%2Dupload-pack"),
                 read("git-upload-pack"), id="refs-percent-encoded"),
    pytest.param(env("GET", "/alice/demo.git/info/refs/", "service=git-upload-pack"),
                 read("git-upload-pack"), id="trailing-slash"),
    pytest.param(env("GET", "/a/b/c/demo.git/info/refs", "service=git-upload-pack"),
                 read("git-upload-pack", "a/b/c/demo.git"), id="nested-repo"),
    # dumb HTTP reads
    pytest.param(env("GET", "/alice/demo.git/info/refs"), read("git-dumb"), id="dumb-refs"),
    pytest.param(env("GET", "/alice/demo.git/HEAD"), read("git-dumb"), id="dumb-head"),
    pytest.param(env("GET", "/alice/demo.git/objects/info/packs"), read("git-dumb"),
                 id="dumb-packs"),
    pytest.param(env("GET", "/alice/demo.git/objects/info/alternates"), read("git-dumb"),
                 id="dumb-alternates"),
    pytest.param(env("GET", "/alice/demo.git/objects/info/http-alternates"), read("git-dumb"),
                 id="dumb-http-alternates"),
    pytest.param(env("GET", f"/alice/demo.git/objects/{SHA1[:2]}/{SHA1[2:]}"), read("git-dumb"),
                 id="dumb-loose-sha1"),
    pytest.param(env("GET", f"/alice/demo.git/objects/{SHA256[:2]}/{SHA256[2:]}"),
                 read("git-dumb"), id="dumb-loose-sha256"),
    pytest.param(env("GET", f"/alice/demo.git/objects/pack/pack-{SHA1}.pack"), read("git-dumb"),
                 id="dumb-pack"),
    pytest.param(env("GET", f"/alice/demo.git/objects/pack/pack-{SHA1}.idx"), read("git-dumb"),
                 id="dumb-idx"),
    pytest.param(env("GET", f"/alice/demo.git/objects/pack/pack-{SHA256}.pack"),
                 read("git-dumb"), id="dumb-pack-sha256"),
    # fail closed: writes on a best-effort repository
    pytest.param(env("GET", "/alice/demo.git/info/refs", "service=git-upload-archive"), UNKNOWN,
                 id="refs-upload-archive"),
    pytest.param(env("POST", "/alice/demo.git/git-upload-archive"), UNKNOWN,
                 id="post-upload-archive"),
    pytest.param(env("GET", "/alice/demo.git/info/refs", "service=evil"), UNKNOWN,
                 id="refs-unknown-service"),
    pytest.param(env("GET", "/alice/demo.git/info/refs", "service="), UNKNOWN,
                 id="refs-empty-service"),
    pytest.param(env("GET", "/alice/demo.git/info/refs", "SERVICE=git-upload-pack"),
                 read("git-dumb"), id="service-name-is-case-sensitive"),
    pytest.param(env("POST", "/alice/demo.git/info/lfs/objects/batch"), UNKNOWN,
                 id="lfs-batch"),
    pytest.param(env("GET", "/alice/demo.git/info/lfs/objects/" + SHA256), UNKNOWN,
                 id="lfs-download"),
    pytest.param(env("PUT", "/alice/demo.git/lfs/objects/" + SHA256), UNKNOWN,
                 id="lfs-upload"),
    pytest.param(env("GET", "/alice/demo.git/git-upload-pack"), UNKNOWN, id="get-rpc"),
    pytest.param(env("POST", "/alice/demo.git/info/refs", "service=git-upload-pack"), UNKNOWN,
                 id="post-refs"),
    pytest.param(env("HEAD", "/alice/demo.git/info/refs", "service=git-upload-pack"), UNKNOWN,
                 id="head-method"),
    pytest.param(env("PUT", "/alice/demo.git/HEAD"), UNKNOWN, id="put-head"),
    pytest.param(env("DELETE", "/alice/demo.git/objects/info/packs"), UNKNOWN,
                 id="delete-packs"),
    pytest.param(env("OPTIONS", "/alice/demo.git"), UNKNOWN, id="options-repo"),
    pytest.param(env("GET", "/alice/demo.git/config"), UNKNOWN, id="config-file"),
    pytest.param(env("GET", "/alice/demo.git/hooks/pre-receive"), UNKNOWN, id="hooks"),
    pytest.param(env("GET", "/alice/demo.git/objects/zz/" + "z" * 38), UNKNOWN,
                 id="loose-not-hex"),
    pytest.param(env("GET", f"/alice/demo.git/objects/{SHA1[:2]}/{SHA1[2:-1]}"), UNKNOWN,
                 id="loose-short"),
    pytest.param(env("GET", "/alice/demo/objects/pack/pack-x.pack"),
                 write("git-unknown", "alice/demo"), id="pack-bad-name"),
    pytest.param(env("GET", "/alice/demo/info/lfs"), write("git-unknown", "alice/demo"),
                 id="best-effort-info"),
    pytest.param(env("GET", "/alice/demo/whatever"), write("git-unknown", "alice/demo/whatever"),
                 id="best-effort-whole-path"),
    pytest.param(env("GET", "/info/refs", "service=git-upload-pack"), write("git-unknown", ""),
                 id="no-repository"),
    pytest.param(env("GET", "/"), write("git-unknown", ""), id="root"),
    pytest.param({"PATH_INFO": "/alice/demo.git/HEAD"}, UNKNOWN, id="no-method"),
    # malformed
    pytest.param(env("GET", "/alice/demo.git/info/refs",
                     "service=git-upload-pack&service=git-receive-pack"),
                 Malformed("ambiguous parameter: service"), id="duplicate-service"),
    pytest.param(env("GET", "/alice/demo.git/info/refs",
                     "service=git-upload-pack&service=git-upload-pack"),
                 Malformed("ambiguous parameter: service"), id="duplicate-same-service"),
    # PATH_INFO alone (a server that passes no raw request target); the
    # shared table in tests/path_cases.py covers the raw target.
    pytest.param(env("GET", "/alice/../bob/demo.git/info/refs"), Malformed(SEGMENT),
                 id="dot-dot"),
    pytest.param(env("GET", "/alice/demo.git/../../bob.git/HEAD"), Malformed(SEGMENT),
                 id="dot-dot-after-repo"),
    pytest.param(env("GET", "/../bob.git/HEAD"), Malformed(SEGMENT), id="leading-dot-dot"),
    pytest.param(env("GET", "/alice/./demo.git/HEAD"), Malformed(SEGMENT), id="dot"),
    pytest.param(env("GET", "/alice/demo.git/.."), Malformed(SEGMENT), id="trailing-dot-dot"),
    pytest.param(env("GET", "/alice//demo.git/HEAD"), Malformed(SEGMENT), id="double-slash"),
    pytest.param(env("GET", "//alice/demo.git/HEAD"), Malformed(SEGMENT),
                 id="leading-double-slash"),
    pytest.param(env("GET", "/alice/demo\x00.git/HEAD"), Malformed(CONTROL), id="nul"),
    pytest.param(env("GET", "/alice/demo\n.git/HEAD"), Malformed(CONTROL), id="newline"),
    pytest.param(env("GET", "/alice/demo\x7f.git/HEAD"), Malformed(CONTROL), id="del"),
    pytest.param(env("GET", "/alice\\demo.git/HEAD"), Malformed(SEPARATOR), id="backslash"),
    pytest.param({"REQUEST_METHOD": "GET", "PATH_INFO": b"/x/HEAD"}, Malformed("unsafe path"),
                 id="path-not-str"),
]


@pytest.mark.parametrize(("environ", "expected"), CASES)
def test_classify_git(environ: dict[str, Any], expected: Target | Malformed) -> None:
    assert classify_git(environ) == expected


@pytest.mark.parametrize("header", ["RAW_URI", "REQUEST_URI"])
@pytest.mark.parametrize("case", PATH_CASES, ids=[case.name for case in PATH_CASES])
def test_path_table_shared_with_haproxy(case: PathCase, header: str) -> None:
    """The raw request target is judged as HAProxy judges it (same table, same reasons)."""
    environ = env("GET", unquote_to_wsgi_str(case.path) + "/info/refs", "service=git-upload-pack")
    environ[header] = case.path + "/info/refs?service=git-upload-pack"
    result = classify_git(environ)
    if case.reason is None:
        assert isinstance(result, Target), result
    else:
        assert result == Malformed(case.reason)


def test_raw_uri_wins_over_request_uri() -> None:
    """gunicorn's RAW_URI, the request target as sent, is read first."""
    environ = env("GET", "/alice/demo.git/HEAD")
    environ["RAW_URI"] = "/alice%2Fdemo.git/HEAD"
    environ["REQUEST_URI"] = "/alice/demo.git/HEAD"
    assert classify_git(environ) == Malformed(SEPARATOR)


@pytest.mark.parametrize("target", ["https://example.org/alice%2Fdemo.git/HEAD",
                                    "/alice%2Fdemo.git/HEAD#frag", "//alice/demo.git/HEAD"])
def test_raw_target_forms(target: str) -> None:
    environ = env("GET", "/alice/demo.git/HEAD")
    environ["RAW_URI"] = target
    assert isinstance(classify_git(environ), Malformed)


def test_absolute_form_raw_target_is_judged_by_its_path() -> None:
    environ = env("GET", "/alice/demo.git/HEAD")
    environ["RAW_URI"] = "https://example.org/alice/demo.git/HEAD?x=%2F"
    assert classify_git(environ) == read("git-dumb")


def test_raw_target_not_str_fails_closed() -> None:
    environ = env("GET", "/alice/demo.git/HEAD")
    environ["RAW_URI"] = b"/alice/demo.git/HEAD"
    assert classify_git(environ) == Malformed("unsafe path")


def test_dotted_names_are_fine() -> None:
    target = classify_git(env("GET", "/alice/my..repo.git/HEAD"))
    assert target == Target("alice/my..repo.git", Action.READ, "git-dumb")


def test_query_not_str_fails_closed() -> None:
    environ = env("GET", "/alice/demo.git/info/refs")
    environ["QUERY_STRING"] = b"service=git-upload-pack"
    assert classify_git(environ) == UNKNOWN


KNOWN_READ_SUFFIXES = ("/info/refs", "/HEAD", "/objects/info/packs", "/git-upload-pack")


@settings(database=None, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "", "get"]),
    path=st.text(max_size=80),
    query=st.text(max_size=80),
)
def test_never_raises(method: str, path: str, query: str) -> None:
    result = classify_git(env(method, path, query))
    assert isinstance(result, Target | Malformed)


@settings(database=None, deadline=None)
@given(path=st.text(alphabet="abc/.-_gitHEADrefsobjectsinfo", max_size=60),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
       query=st.text(max_size=40))
def test_reads_are_only_known_routes(path: str, method: str, query: str) -> None:
    result = classify_git(env(method, path, query))
    if isinstance(result, Target) and result.action is Action.READ:
        assert method in ("GET", "POST")
        stripped = "/" + path.strip("/")
        assert stripped.endswith(KNOWN_READ_SUFFIXES) or "/objects/" in stripped
        if method == "POST":
            assert stripped.endswith("/git-upload-pack")
        assert "service=git-receive-pack" not in query


@settings(database=None, deadline=None)
@given(service=st.text(max_size=30).filter(lambda s: s != "git-upload-pack"))
def test_unknown_services_are_never_read(service: str) -> None:
    from urllib.parse import quote

    result = classify_git(env("GET", "/r.git/info/refs", "service=" + quote(service)))
    assert not (isinstance(result, Target) and result.action is Action.READ)
