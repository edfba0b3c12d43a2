"""``hostd key add|list|del``: SSH keys of users and deploy keys of repositories, end to end."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.hostd.cli.conftest import Hostd
from tests.hostd.store.test_keys import ED, keygen, ssh_fingerprint


@pytest.fixture
def site(hostd: Hostd) -> Hostd:
    """An installation with users alice and bob, and alice's repository alice/notes."""
    for user in ("alice", "bob"):
        assert hostd("user", "add", user, stdin=f"{user}'s password\n")[0] == 0
    assert hostd("repo", "create", "alice/notes", "--vcs", "git")[0] == 0
    return hostd


def added(out: str, pattern: str) -> str:
    """The key id in ``hostd key add``'s one line, which must match ``pattern`` (ID for the id)."""
    match = re.fullmatch(pattern.replace("ID", "([0-9]+)") + "\n", out)
    assert match is not None, out
    return match[1]


def created() -> str:
    return "created " + datetime.now(UTC).strftime("%Y-%m-%d")


def test_a_user_key_is_added_listed_and_deleted(site: Hostd, tmp_path: Path) -> None:
    pub = keygen(tmp_path, "ed25519", comment="alice@laptop")
    fingerprint = ssh_fingerprint(pub)
    code, out, err = site("key", "add", "Alice", stdin=pub.read_text())
    assert (code, err) == (0, "")
    key_id = added(out, f"added key ID {re.escape(fingerprint)} for alice")
    rsa = keygen(tmp_path, "rsa", 3072)
    code, out, _ = site("key", "add", "alice", "--title", "work desktop", stdin=rsa.read_text())
    rsa_id = added(out, f"added key ID {re.escape(ssh_fingerprint(rsa))} for alice")

    code, out, _ = site("key", "list", "alice")
    assert (code, out.splitlines()) == (0, [
        f"{key_id}\tssh-ed25519\t256\t{fingerprint}\talice@laptop\t{created()}",  # the comment is the title
        f"{rsa_id}\tssh-rsa\t3072\t{ssh_fingerprint(rsa)}\twork desktop\t{created()}",
    ])
    assert site("key", "list", "bob") == (0, "", "")

    code, out, _ = site("key", "del", key_id)
    assert (code, out) == (0, f"deleted key {key_id} {fingerprint} (ssh-ed25519) of alice\n")
    assert site("key", "del", key_id) == (1, "", f"hostd: no such key: {key_id}\n")
    assert [line.split("\t")[0] for line in site("key", "list", "alice")[1].splitlines()] == [rsa_id]


def test_deploy_keys_are_read_only_unless_written(site: Hostd, tmp_path: Path) -> None:
    reader, writer = keygen(tmp_path, "ecdsa", 256, comment="ci"), keygen(tmp_path, "ed25519", comment="deploy")
    code, out, _ = site("key", "add", "--repo", "Alice/Notes", stdin=reader.read_text())
    reader_id = added(out, f"added deploy key ID {re.escape(ssh_fingerprint(reader))} \\(read-only\\) for alice/notes")
    code, out, _ = site("key", "add", "--repo", "alice/notes", "--write", "--title", "pusher", stdin=writer.read_text())
    writer_id = added(out, f"added deploy key ID {re.escape(ssh_fingerprint(writer))} \\(read-write\\) for alice/notes")
    code, out, _ = site("key", "list", "--repo", "alice/notes")
    assert (code, out.splitlines()) == (0, [
        f"{reader_id}\tecdsa-sha2-nistp256\t256\t{ssh_fingerprint(reader)}\tci\tread-only\t{created()}",
        f"{writer_id}\tssh-ed25519\t256\t{ssh_fingerprint(writer)}\tpusher\tread-write\t{created()}",
    ])
    assert site("key", "list", "alice") == (0, "", "")
    code, out, _ = site("key", "del", writer_id)
    assert out == f"deleted key {writer_id} {ssh_fingerprint(writer)} (ssh-ed25519) of deploy key of alice/notes\n"
    # Deleting the repository takes its deploy keys with it.
    assert site("repo", "delete", "alice/notes")[0] == 0
    assert site("key", "del", reader_id) == (1, "", f"hostd: no such key: {reader_id}\n")


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("alice",), "", "no key given"),
    (("alice",), f"{ED}\n{ED}\n", "more than one line: give one public key"),
    (("alice",), f'command="sh" {ED}\n',
     "authorized_keys options before the key are not accepted (hostd writes its own)"),
    (("alice",), "ssh-ed25519 not*base64\n", "the key body is not valid base64"),
    (("carol",), ED, "no such user: carol"),
    (("--repo", "alice/nope"), ED, "no such repository: alice/nope"),
    (("alice", "--title", "a\x1bb"), ED, "a key's title is at most 100 characters, with no control characters"),
], ids=["empty", "two-keys", "options", "base64", "user", "repo", "title"])
def test_refusals_are_one_line(site: Hostd, args: tuple[str, ...], stdin: str, message: str) -> None:
    code, out, err = site("key", "add", *args, stdin=stdin)
    assert (code, out, err) == (1, "", f"hostd: {message}\n")
    assert site("key", "list", "alice") == (0, "", "")


def test_weak_and_duplicate_keys_are_refused(site: Hostd, tmp_path: Path) -> None:
    weak = keygen(tmp_path, "rsa", 1024)
    assert site("key", "add", "alice", stdin=weak.read_text()) == (
        1, "", "hostd: RSA keys under 2048 bits are refused as weak (this one has 1024)\n")
    assert site("key", "add", "alice", stdin=ED)[0] == 0
    for args in (("alice",), ("bob",), ("--repo", "alice/notes")):
        assert site("key", "add", *args, stdin=ED) == (1, "", "hostd: this key is already in use\n")


@pytest.mark.parametrize(("args", "message"), [
    (("key", "add"), "one of the arguments USER --repo is required"),
    (("key", "add", "alice", "--repo", "alice/notes"), "argument --repo: not allowed with argument USER"),
    (("key", "add", "alice", "--write"), "--write is for deploy keys only (--repo OWNER/NAME)"),
    (("key", "list"), "one of the arguments USER --repo is required"),
    (("key", "list", "--repo", "notes"), "argument --repo: invalid repository name 'notes'"),
    (("key", "del", "x"), "argument ID: x is not a whole number"),
], ids=["add-neither", "add-both", "write-user", "list-neither", "list-repo", "del-id"])
def test_a_wrong_command_line_is_a_usage_error(site: Hostd, args: tuple[str, ...], message: str) -> None:
    code, out, err = site(*args, stdin=ED)
    assert code == 2 and out == ""
    assert err.splitlines()[-1].startswith(f"hostd: {message}")
    assert site("key", "list", "alice") == (0, "", "")
