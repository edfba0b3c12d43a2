"""The admin CLI, called in-process with a temporary data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostd.cli.conftest import Hostd


def test_user_and_repository_lifecycle(hostd: Hostd, tmp_path: Path) -> None:
    assert hostd("user", "add", "Alice", stdin="s3cret-password\n")[0] == 0
    code, out, _ = hostd("repo", "create", "alice/demo", "--vcs", "git", "--public")
    assert (code, out.strip()) == (0, "public git repository alice/demo created on shard default")
    assert (tmp_path / "var" / "repos" / "alice" / "demo.git" / "HEAD").exists()
    assert hostd("repo", "create", "alice/notes", "--vcs", "hg")[0] == 0
    assert (tmp_path / "var" / "repos" / "alice" / "notes" / ".hg").is_dir()
    code, out, _ = hostd("repo", "list")
    assert out.splitlines() == ["alice/demo\tgit\tpublic\tdefault", "alice/notes\thg\tprivate\tdefault"]
    assert hostd("user", "add", "bob", stdin="another-password\n")[0] == 0
    assert hostd("grant", "bob", "alice/notes", "write")[0] == 0
    assert hostd("revoke", "bob", "alice/notes")[0] == 0
    assert hostd("repo", "delete", "alice/demo")[0] == 0
    assert not (tmp_path / "var" / "repos" / "alice" / "demo.git").exists()


ERRORS = [
    (("user", "passwd", "nobody"), "no such user: nobody"),
    (("repo", "create", "nobody/x", "--vcs", "git"), "no such user: nobody"),
    (("repo", "create", "alice/demo", "--vcs", "git"), "repository already exists: alice/demo"),
    (("repo", "create", "alice/demo", "--vcs", "hg"), "repository already exists: alice/demo"),
    (("repo", "delete", "alice/none"), "no such repository: alice/none"),
    (("grant", "nobody", "alice/demo", "read"), "no such user: nobody"),
    (("grant", "alice", "alice/none", "read"), "no such repository: alice/none"),
    (("revoke", "alice", "alice/demo"), "alice has no grant on alice/demo"),
    (("user", "add", "alice"), "user already exists: alice"),
    (("user", "add", "_bad"), "invalid user name"),
    (("token", "revoke", "nope"), "no such token: nope"),
]


@pytest.mark.parametrize(("args", "message"), ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_errors_print_one_line_and_exit_non_zero(hostd: Hostd, args: tuple[str, ...], message: str) -> None:
    hostd("user", "add", "alice", stdin="s3cret-password\n")
    hostd("repo", "create", "alice/demo", "--vcs", "git")
    code, _, err = hostd(*args, stdin="s3cret-password\n")
    assert code == 1
    assert err.count("\n") == 1 and message in err


def test_bad_repository_name_is_a_usage_error(hostd: Hostd) -> None:
    code, _, err = hostd("repo", "create", "../etc", "--vcs", "git")
    assert code == 2
    assert err.splitlines()[-1].startswith("hostd: argument OWNER/NAME: invalid repository name '../etc'")


def test_tokens_are_shown_once_and_listed_without_secret(hostd: Hostd) -> None:
    hostd("user", "add", "alice", stdin="s3cret-password\n")
    code, out, _ = hostd("token", "create", "alice", "--scope", "read", "--expires-days", "7")
    assert code == 0
    token = out.splitlines()[-1]
    assert token.startswith("smt_")
    code, out, _ = hostd("token", "list", "alice")
    assert token not in out and "\tread\t" in out and "expires" in out
    token_id = out.split("\t")[0]
    assert hostd("token", "revoke", token_id)[0] == 0
    assert "revoked" in hostd("token", "list", "alice")[1]


def test_short_password_is_refused(hostd: Hostd) -> None:
    code, _, err = hostd("user", "add", "alice", stdin="short\n")
    assert code == 1 and "at least 8" in err


def test_maintain_and_an_empty_push_log(hostd: Hostd) -> None:
    hostd("user", "add", "alice", stdin="s3cret-password\n")
    hostd("repo", "create", "alice/demo", "--vcs", "git")
    code, out, _ = hostd("maintain", "alice/demo")
    assert code == 0 and out and all(line.startswith("alice/demo: ") for line in out.splitlines())
    assert hostd("log", "alice/demo") == (0, "", "")
    assert hostd("maintain", "alice/none") == (1, "", "hostd: no such repository: alice/none\n")
