"""Name validation, as a table."""

from __future__ import annotations

import pytest

from hostd.names import RepoName, normalize_name, parse_repo_name, parse_repo_path

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
