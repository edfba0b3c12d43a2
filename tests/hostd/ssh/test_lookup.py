"""Key lookups: one line for a known key, nothing for the rest, and failures counted per connection."""

from __future__ import annotations

import pytest

from hostd.names import RepoName
from hostd.ssh.lookup import MAX_COUNTED, KeyRequests, RememberedKeys
from hostd.store.database import DatabaseUnavailable
from hostd.store.keys import KeyGrant

BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIK1n0P3ZrGP0B0mEOHm+m9k3v3M2XyVb2t0Q8L7h2c5R"
KNOWN = "SHA256:" + "k" * 43


class Keys:
    def lookup(self, fingerprint: str) -> KeyGrant | None:
        if fingerprint != KNOWN:
            return None
        return KeyGrant(7, "ssh-ed25519", BLOB, None, RepoName("alice", "proj"), False)


class Throttle:
    """Records failures; locks an address after ``limit`` of them (the real one is singlemalt's)."""

    def __init__(self, limit: int = 100) -> None:
        self.failures: dict[str, int] = {}
        self.limit = limit

    def blocked(self, address: str, username: str | None) -> bool:
        return self.failures.get(address, 0) >= self.limit

    def record_failure(self, address: str, username: str | None) -> None:
        assert username is None
        self.failures[address] = self.failures.get(address, 0) + 1


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _requests(limit: int = 100) -> tuple[KeyRequests, Throttle, Clock]:
    throttle, clock = Throttle(limit), Clock()
    return KeyRequests(Keys(), throttle, settle=30, clock=clock), throttle, clock  # type: ignore[arg-type]


def test_a_known_key_gets_its_line_forcing_the_helper() -> None:
    requests, _, _ = _requests()
    assert requests(KNOWN, "192.0.2.1 5000") == f'restrict,command="key {KNOWN}" ssh-ed25519 {BLOB}\n'
    assert requests("SHA256:" + "u" * 43, "192.0.2.1 5000") == ""


def test_the_keys_an_agent_tries_first_are_forgiven_when_one_works() -> None:
    requests, throttle, clock = _requests()
    for n in range(3):
        requests(f"SHA256:{n}" + "u" * 42, "192.0.2.1 5000")
    requests(KNOWN, "192.0.2.1 5000")
    clock.now += 60
    requests(KNOWN, "192.0.2.1 5001")
    assert throttle.failures == {}


def test_a_connection_that_never_gets_in_counts_its_failures_once_settled() -> None:
    requests, throttle, clock = _requests()
    for n in range(10):
        requests(f"SHA256:{n}" + "u" * 42, "192.0.2.1 6000")
    assert throttle.failures == {}
    clock.now += 31
    requests(KNOWN, "198.51.100.1 7000")
    assert throttle.failures == {"192.0.2.1": MAX_COUNTED}


def test_a_locked_out_address_gets_no_key_at_all() -> None:
    requests, throttle, clock = _requests(limit=MAX_COUNTED)
    requests("SHA256:" + "u" * 43, "192.0.2.1 6000")
    for n in range(MAX_COUNTED):
        requests(f"SHA256:{n}" + "v" * 42, "192.0.2.1 6001")
    clock.now += 31
    requests(KNOWN, "198.51.100.1 7000")
    assert requests(KNOWN, "192.0.2.1 6002") == ""
    assert requests(KNOWN, "198.51.100.1 7001") != ""


class FlakyKeys(Keys):
    down = False

    def lookup(self, fingerprint: str) -> KeyGrant | None:
        if self.down:
            raise DatabaseUnavailable("down")
        return super().lookup(fingerprint)


def test_keys_seen_lately_are_answered_while_the_database_is_down() -> None:
    keys, clock = FlakyKeys(), Clock()
    remembered = RememberedKeys(keys, keep=300, clock=clock)
    grant = remembered.lookup(KNOWN)
    assert remembered.lookup("SHA256:" + "u" * 43) is None
    keys.down = True
    assert remembered.lookup(KNOWN) == grant
    assert remembered.lookup("SHA256:" + "u" * 43) is None
    with pytest.raises(DatabaseUnavailable):
        remembered.lookup("SHA256:" + "n" * 43)  # never seen: no answer to give
    clock.now += 301
    with pytest.raises(DatabaseUnavailable):
        remembered.lookup(KNOWN)
