"""Sealer: keys only the secret can name, values only the secret can write, for a limited time."""

from __future__ import annotations

import logging

import pytest

from singlemalt.sealed import Opened, Sealer

SECRET = b"sealed-test-secret-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_round_trip_until_the_expiry() -> None:
    clock = Clock()
    sealer = Sealer(SECRET, "sm:x:", clock=clock)
    key = sealer.key("lock", "192.0.2.1", "alice")
    assert key.startswith("sm:x:") and len(key) == len("sm:x:") + 64
    assert "alice" not in key and "192.0.2.1" not in key
    sealed = sealer.seal(key, b"locked", ttl=60)
    assert sealer.open(key, sealed) == Opened(b"locked", clock.now + 61)
    clock.now += 60
    assert sealer.open(key, sealed) is not None
    clock.now += 1
    assert sealer.open(key, sealed) is None


def test_keys_depend_on_the_secret_the_prefix_and_every_part() -> None:
    sealer = Sealer(SECRET, "sm:x:")
    assert sealer.key("a", "b") == Sealer(SECRET, "sm:x:").key("a", "b")
    assert sealer.key("a", "b") != Sealer(SECRET + b"!", "sm:x:").key("a", "b")
    assert sealer.key("a", "b") != Sealer(SECRET, "sm:y:").key("a", "b").replace("sm:y:", "sm:x:")
    assert len({sealer.key("ab"), sealer.key("a", "b"), sealer.key("a\0", "b"), sealer.key("a", "\0b")}) == 4


def test_a_value_opens_only_under_its_own_key_prefix_and_secret() -> None:
    sealer = Sealer(SECRET, "sm:x:")
    key = sealer.key("one")
    sealed = sealer.seal(key, b"payload", ttl=60)
    assert sealer.open(sealer.key("two"), sealed) is None
    other_purpose = Sealer(SECRET, "sm:y:")
    assert other_purpose.open(key, sealed) is None
    assert Sealer(SECRET + b"other", "sm:x:").open(key, sealed) is None


@pytest.mark.parametrize("raw", [
    b"", b"1", b"0", b"locked", b"s1", b"s1...", b"s1.1.." + b"0" * 64, b"s1.99999999999.6c.", b"\xff\xfe" * 50,
    b"s1.9999999999.6c6f636b6564." + b"g" * 64, b"s1.9999999999.6." + b"0" * 64, b"s1.-1.." + b"0" * 64,
    b"s1.9999999999.6c6f636b6564." + b"0" * 64 + b"\n", b"s1.1" + b"0" * 20 + b".." + b"0" * 64,
], ids=lambda raw: repr(raw[:24]))
def test_anything_else_is_ignored_and_never_raises(raw: bytes) -> None:
    sealer = Sealer(SECRET, "sm:x:")
    assert sealer.open(sealer.key("k"), raw) is None


def test_absent_and_stale_values_are_quiet_forged_ones_are_logged_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    sealer = Sealer(SECRET, "sm:x:", clock=clock, log_interval=60)
    key = sealer.key("k")
    stale = sealer.seal(key, b"v", ttl=1)
    with caplog.at_level(logging.WARNING, logger="singlemalt.sealed"):
        clock.now += 5
        assert sealer.open(key, None) is None
        assert sealer.open(key, stale) is None
        assert not caplog.records
        for _ in range(5):
            assert sealer.open(key, b"forged") is None
        clock.now += 61
        assert sealer.open(key, b"forged again") is None
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "ignored 1 forged or corrupted memcached value(s) under sm:x: since the last report",
        "ignored 5 forged or corrupted memcached value(s) under sm:x: since the last report",
    ]


def test_bad_configuration_and_repr() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Sealer(b"short", "sm:x:")
    for prefix in ("", "has space", "x" * 101, "caf\u00e9"):
        with pytest.raises(ValueError, match="key prefix"):
            Sealer(SECRET, prefix)
    sealer = Sealer(SECRET, "sm:x:")
    with pytest.raises(ValueError, match="at most 256 bytes"):
        sealer.seal(sealer.key("k"), b"x" * 257, ttl=1)
    assert repr(sealer) == "<Sealer prefix='sm:x:'>"
    assert "sealed-test" not in repr(sealer)
