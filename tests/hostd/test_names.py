"""Name validation, as a table."""

from __future__ import annotations

import pytest

from hostd.names import (
    RepoName,
    is_server_name,
    normalize_name,
    parse_host_port,
    parse_ip_port,
    parse_repo_name,
    parse_repo_path,
)

NAMES = [
    ("alice", "alice"),
    ("Alice", "alice"),
    ("a", "a"),
    ("a.b_c-d", "a.b_c-d"),
    ("9lives", "9lives"),
    ("x" * 100, "x" * 100),
    ("x" * 101, None),
    ("", None),
    (".hidden", None),
    ("-option", None),
    ("_under", None),
    ("a..b", None),
    ("a/b", None),
    ("a b", None),
    ("a\x00b", None),
    ("a\nb", None),
    ("héllo", None),
    ("healthz", None),
    ("static", None),
]


@pytest.mark.parametrize(("text", "expected"), NAMES, ids=[repr(t)[:30] for t, _ in NAMES])
def test_normalize_name(text: str, expected: str | None) -> None:
    assert normalize_name(text) == expected


REPOS = [
    ("alice/demo", RepoName("alice", "demo")),
    ("Alice/Demo", RepoName("alice", "demo")),
    ("alice/demo.git", None),
    ("alice", None),
    ("alice/demo/x", None),
    ("/alice/demo", None),
    ("alice/..", None),
    ("../demo", None),
]


@pytest.mark.parametrize(("text", "expected"), REPOS, ids=[t for t, _ in REPOS])
def test_parse_repo_name(text: str, expected: RepoName | None) -> None:
    assert parse_repo_name(text) == expected


PATHS = [
    ("alice/demo.git", (RepoName("alice", "demo"), True)),
    ("/alice/demo.git/", (RepoName("alice", "demo"), True)),
    ("alice/demo", (RepoName("alice", "demo"), False)),
    ("alice/Demo.GIT", (RepoName("alice", "demo"), True)),
    ("alice/demo.git.git", None),
    ("alice/.git", None),
    ("alice", None),
    ("a/b/c", None),
    ("alice/demo%2Fx", None),
]


@pytest.mark.parametrize(("path", "expected"), PATHS, ids=[p for p, _ in PATHS])
def test_parse_repo_path(path: str, expected: tuple[RepoName, bool] | None) -> None:
    assert parse_repo_path(path) == expected


HOST_PORTS = [
    ("10.0.0.12:8101", ("10.0.0.12", 8101)),
    ("shard-2.example.com:443", ("shard-2.example.com", 443)),
    ("[::1]:8101", ("::1", 8101)),
    ("[fe80::1:2]:1", ("fe80::1:2", 1)),
    ("h:65535", ("h", 65535)),
    ("h:65536", None),
    ("h:0", None),
    ("h:", None),
    ("h", None),
    (":80", None),
    ("::1:80", None),
    ("-h:80", None),
    ("h.:80", None),
    ("h h:80", None),
    ('h":80', None),
    ("h#x:80", None),
    ("${X}:80", None),
    ("h:8o", None),
    ("h:²", None),
    ("h:123456", None),
    ("a" * 253 + ":80", ("a" * 253, 80)),
    ("a" * 254 + ":80", None),
    ("[]:80", None),
    ("[" + "1" * 46 + "]:80", None),
]


@pytest.mark.parametrize(("text", "expected"), HOST_PORTS, ids=[t[:40] for t, _ in HOST_PORTS])
def test_parse_host_port(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_host_port(text) == expected


SERVER_NAMES = [
    ("git1", True),
    ("git-s2", True),
    ("Pool_2.b", True),
    ("x" * 64, True),
    ("x" * 65, False),
    ("", False),
    ("-x", False),
    (".x", False),
    ("git2;del server git/git1", False),
    ("git 2", False),
    ("git2\nshow info", False),
    ('git"2', False),
]


@pytest.mark.parametrize(("text", "expected"), SERVER_NAMES, ids=[repr(t)[:30] for t, _ in SERVER_NAMES])
def test_is_server_name(text: str, expected: bool) -> None:
    assert is_server_name(text) is expected


IP_PORTS = [
    ("127.0.0.1:8111", "127.0.0.1:8111"),
    ("[::1]:8111", "[::1]:8111"),
    ("[0:0::1]:80", "[::1]:80"),
    ("localhost:8111", None),
    ("pool-2.example:8101", None),
    ("127.0.0.1", None),
    ("127.0.0.1:0", None),
    ("127.0.0.1:65536", None),
    ("::1:8111", None),
    ("300.1.1.1:80", None),
    ("127.0.0.1:80 check", None),
]


@pytest.mark.parametrize(("text", "expected"), IP_PORTS, ids=[t for t, _ in IP_PORTS])
def test_parse_ip_port(text: str, expected: str | None) -> None:
    assert parse_ip_port(text) == expected
