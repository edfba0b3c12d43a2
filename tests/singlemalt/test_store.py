"""HtpasswdStore: lookups, versions, reloads, and failing closed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import passlib.hash as schemes
import pytest

from singlemalt.identity import Scope
from singlemalt.store import HtpasswdStore, TokenRecord, UserRecord

ALICE = schemes.apr_md5_crypt.hash("alice-pw")
BOB = schemes.bcrypt.using(rounds=4).hash("bob-pw")


def write(path: Path, text: str) -> None:
    path.write_text(text)
    # Make the change visible even on filesystems with coarse timestamps.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
    return path


def test_lookup(htpasswd: Path) -> None:
    store = HtpasswdStore(htpasswd)
    alice = store.user("alice")
    assert alice is not None
    assert (alice.username, alice.password_hash) == ("alice", ALICE)
    assert store.user("carol") is None
    assert store.token("abcdefghijkl") is None
    assert repr(store) == f"HtpasswdStore({str(htpasswd)!r})"


@pytest.mark.parametrize("name", ["a:b", "x" * 300, "a\nb", "\udcff"])
def test_names_htpasswd_cannot_hold(htpasswd: Path, name: str) -> None:
    assert HtpasswdStore(htpasswd).user(name) is None


def test_version_follows_the_hash_and_the_file_reloads(htpasswd: Path) -> None:
    store = HtpasswdStore(htpasswd)
    before = store.user("alice")
    assert before is not None and before == store.user("alice")
    write(htpasswd, f"alice:{schemes.apr_md5_crypt.hash('new-pw')}\n")
    after = store.user("alice")
    assert after is not None
    assert after.credential_version != before.credential_version
    assert store.user("bob") is None


def test_missing_file_at_start_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        HtpasswdStore(tmp_path / "nope")


def test_fails_closed_until_the_file_is_back(
    htpasswd: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = HtpasswdStore(htpasswd)
    caplog.set_level(logging.INFO, logger="singlemalt.store")
    htpasswd.unlink()
    assert store.user("alice") is None
    assert store.user("alice") is None
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    write(htpasswd, f"alice:{ALICE}\n")
    assert store.user("alice") is not None
    write(htpasswd, "this line is not htpasswd\n")
    assert store.user("alice") is None
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


def test_records_hide_secrets() -> None:
    user = UserRecord("alice", "$argon2id$secret-hash", 1)
    token = TokenRecord("abcdefghijkl", "alice", "deadbeef" * 8, Scope.READ, None, False)
    assert "secret-hash" not in repr(user)
    assert "deadbeef" not in repr(token)
