"""Feature flags: the declared registry, the database store, and the never-failing reader."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostd.store.database import Database, DatabaseUnavailable
from hostd.store.flags import (
    DECLARED,
    KEY_PREFIX,
    READ_ONLY,
    SHARED_TTL,
    Flag,
    FlagError,
    Flags,
    FlagStore,
    SharedFlags,
    declared,
)
from singlemalt import SafeMemcache
from tests import pg
from tests.singlemalt.conftest import Memcached, start_memcached

SECRET = b"flags-test-secret-0123456789"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class DummySource:
    """A flag source that counts reads and can be made to fail."""

    def __init__(self, values: dict[str, bool] | None = None) -> None:
        self.values = dict(values or {})
        self.reads = 0
        self.error: Exception | None = None

    def get(self, name: str) -> bool | None:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.values.get(name)


@pytest.fixture
def store(database: Database) -> FlagStore:
    return FlagStore(database)


@pytest.fixture
def memcached() -> Iterator[Memcached]:
    server = start_memcached()
    yield server
    server.kill()


# -- the registry ---------------------------------------------------------------


def test_read_only_is_declared_off() -> None:
    assert declared("read_only") is READ_ONLY
    assert READ_ONLY.default is False
    assert READ_ONLY.description


def test_registry_is_frozen() -> None:
    with pytest.raises(TypeError):
        DECLARED["new"] = Flag("new", True, "made up")  # type: ignore[index]


def test_unknown_name_is_an_error() -> None:
    with pytest.raises(FlagError, match="no such flag: 'read_olny'"):
        declared("read_olny")


# -- the store ------------------------------------------------------------------


def test_store_set_get_and_states(store: FlagStore) -> None:
    assert store.get("read_only") is None
    [state] = store.states()
    assert (state.flag, state.value, state.stored) == (READ_ONLY, False, False)
    store.set(READ_ONLY, True)
    assert store.get("read_only") is True
    [state] = store.states()
    assert (state.value, state.stored) == (True, True)
    store.set(READ_ONLY, False)
    assert store.get("read_only") is False
    assert store.states()[0].stored


def test_store_refuses_undeclared_flags_and_ignores_stale_rows(store: FlagStore) -> None:
    with pytest.raises(FlagError):
        store.set(Flag("nonsense", False, "not declared"), True)
    with store.db.transaction() as conn:
        conn.execute("INSERT INTO flags (name, value) VALUES ('retired', true)")
    assert [state.flag.name for state in store.states()] == ["read_only"]


# -- the reader -------------------------------------------------------------------


def test_reads_the_database_and_caches_in_process(store: FlagStore) -> None:
    clock = FakeClock()
    flags = Flags(store, clock=clock)
    assert flags.enabled(READ_ONLY) is False
    store.set(READ_ONLY, True)
    assert flags.enabled(READ_ONLY) is False  # still within the process TTL
    clock.now += 2.0
    assert flags.enabled(READ_ONLY) is True


def test_process_cache_spares_the_source() -> None:
    clock = FakeClock()
    source = DummySource({"read_only": True})
    flags = Flags(source, clock=clock)
    for _ in range(100):
        assert flags.enabled(READ_ONLY) is True
    assert source.reads == 1


def shared(memcached: Memcached, secret: bytes = SECRET, **options: Any) -> SharedFlags:
    return SharedFlags(SafeMemcache(memcached.address, timeout=0.2), secret, **options)


def test_memcached_spreads_values_between_workers(memcached: Memcached) -> None:
    clock = FakeClock()
    source = DummySource({"read_only": True})
    first = Flags(source, shared(memcached), clock=clock)
    second = Flags(source, shared(memcached), clock=clock)
    assert first.enabled(READ_ONLY) is True
    assert second.enabled(READ_ONLY) is True
    assert source.reads == 1  # the second worker found it in memcached
    assert shared(memcached).read(READ_ONLY) is True
    [key] = memcached.keys()
    assert key == shared(memcached).key(READ_ONLY)
    assert key.startswith(KEY_PREFIX) and "read_only" not in key  # nobody can tell which flag it is


def test_published_value_wins_within_the_process_ttl(memcached: Memcached) -> None:
    clock = FakeClock()
    source = DummySource({"read_only": False})
    flags = Flags(source, shared(memcached), clock=clock)
    assert flags.enabled(READ_ONLY) is False
    source.values["read_only"] = True  # what `hostd flag set` does: database, then memcached
    assert shared(memcached).publish(READ_ONLY, True)
    clock.now += 2.0
    assert flags.enabled(READ_ONLY) is True
    assert source.reads == 1


def test_workers_do_not_overwrite_a_published_value(memcached: Memcached) -> None:
    """A worker that read the database just before a change must not undo the CLI's publish."""
    cli = shared(memcached)

    class RacingSource(DummySource):
        def get(self, name: str) -> bool | None:
            # The worker has read "off"; before it writes memcached, the
            # CLI commits "on" and publishes it.
            cli.publish(READ_ONLY, True)
            return False

    flags = Flags(RacingSource(), shared(memcached))
    assert flags.enabled(READ_ONLY) is False  # stale for one process TTL at most
    assert cli.read(READ_ONLY) is True


def test_installations_do_not_share_flags(memcached: Memcached) -> None:
    """Two stacks' pools on one memcached (or a CLI pointed at the wrong one) keep apart."""
    ours, theirs = shared(memcached, b"secret one" * 2), shared(memcached, b"secret two" * 2)
    assert ours.key(READ_ONLY) != theirs.key(READ_ONLY)
    assert theirs.publish(READ_ONLY, True)
    source = DummySource({"read_only": False})
    assert Flags(source, ours).enabled(READ_ONLY) is False
    assert source.reads == 1
    assert Flags(DummySource(), theirs).enabled(READ_ONLY) is True


def test_garbage_in_memcached_is_a_miss(memcached: Memcached) -> None:
    SafeMemcache(memcached.address).set(shared(memcached).key(READ_ONLY), b"yes please", expire=10)
    source = DummySource({"read_only": True})
    assert Flags(source, shared(memcached)).enabled(READ_ONLY) is True
    assert source.reads == 1


def test_a_forged_flag_is_ignored_logged_and_replaced(memcached: Memcached, caplog: pytest.LogCaptureFixture) -> None:
    """Anyone who reaches memcached can list its keys and write them.

    On the old code (``1``/``0`` under a listable key) writing ``1`` over
    every key switched read-only mode on in every worker.
    """
    source = DummySource({"read_only": False})
    assert shared(memcached).publish(READ_ONLY, False)
    raw = SafeMemcache(memcached.address)
    [key] = memcached.keys()
    for forged in (b"1", b"on", b"s1.9999999999.6f6e." + b"0" * 64):
        raw.set(key, forged, expire=0)
        with caplog.at_level(logging.WARNING, logger="singlemalt.sealed"):
            assert Flags(source, shared(memcached)).enabled(READ_ONLY) is False
        assert shared(memcached).read(READ_ONLY) is False  # removed, and the database's value offered
    assert "forged or corrupted memcached value(s) under hostd:flag:" in caplog.text
    # Someone else's genuine value (another secret) does not open here either.
    other = shared(memcached, b"another installation")
    other.publish(READ_ONLY, True)
    raw.set(key, raw.get(other.key(READ_ONLY)) or b"", expire=0)
    assert Flags(source, shared(memcached)).enabled(READ_ONLY) is False


def test_a_replayed_flag_counts_only_until_its_own_expiry(memcached: Memcached) -> None:
    wall = FakeClock()
    raw = SafeMemcache(memcached.address)
    assert shared(memcached, clock=wall).publish(READ_ONLY, True)
    [key] = memcached.keys()
    captured = raw.get(key)
    shared(memcached, clock=wall).publish(READ_ONLY, False)  # the admin switches it off
    raw.set(key, captured or b"", expire=0)  # and someone writes the old "on" back, to live forever
    assert shared(memcached, clock=wall).read(READ_ONLY) is True  # within its 10 s: accepted
    wall.now += SHARED_TTL + 1
    source = DummySource({"read_only": False})
    assert Flags(source, shared(memcached, clock=wall)).enabled(READ_ONLY) is False


def test_memcached_down_falls_back_to_the_database(memcached: Memcached, store: FlagStore) -> None:
    clock = FakeClock()
    flags = Flags(store, shared(memcached), clock=clock)
    assert flags.enabled(READ_ONLY) is False
    memcached.kill()
    store.set(READ_ONLY, True)
    clock.now += 2.0
    assert flags.enabled(READ_ONLY) is True


def test_memcached_not_configured(store: FlagStore) -> None:
    store.set(READ_ONLY, True)
    assert Flags(store, SharedFlags(SafeMemcache(None), SECRET)).enabled(READ_ONLY) is True


@pytest.mark.parametrize("default", [False, True], ids=["default-off", "default-on"])
def test_unreadable_database_gives_the_default(tmp_path: Path, default: bool) -> None:
    flag = Flag("read_only", default, "test")
    unreachable = Database(f"postgresql://hostd@/hostd?host={tmp_path}")
    assert Flags(FlagStore(unreachable)).enabled(flag) is default
    no_table = Database(pg.new_database(migrated=False))
    assert Flags(FlagStore(no_table)).enabled(flag) is default
    no_table.close()


def test_failure_after_success_gives_the_last_known_value(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    source = DummySource({"read_only": True})
    flags = Flags(source, clock=clock)
    assert flags.enabled(READ_ONLY) is True
    source.error = DatabaseUnavailable("connection refused")
    clock.now += 5
    with caplog.at_level(logging.WARNING, logger="hostd.store.flags"):
        assert flags.enabled(READ_ONLY) is True
    assert "flag read_only unreadable (DatabaseUnavailable: connection refused); using on" in caplog.text


def test_failures_are_retried_once_per_ttl_and_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    source = DummySource()
    source.error = OSError("disk gone")
    flags = Flags(source, clock=clock, log_interval=60)
    with caplog.at_level(logging.WARNING, logger="hostd.store.flags"):
        for _ in range(10):  # ten requests within one process TTL: one attempt
            assert flags.enabled(READ_ONLY) is False
        assert source.reads == 1
        for _ in range(20):  # twenty more attempts within the log interval
            clock.now += 2
            assert flags.enabled(READ_ONLY) is False
        assert source.reads == 21
        assert len(caplog.records) == 1
        clock.now += 30
        flags.enabled(READ_ONLY)
    assert len(caplog.records) == 2
    assert "(21 failures since last report)" in caplog.records[1].getMessage()


def test_any_exception_is_contained() -> None:
    class Broken:
        def get(self, name: str) -> bool | None:
            raise RuntimeError("bug")

    assert Flags(Broken()).enabled(READ_ONLY) is False
