"""Feature flags: the declared registry, the database store, and the never-failing reader."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.database import Database
from hostd.flags import (
    DECLARED,
    KEY_PREFIX,
    READ_ONLY,
    Flag,
    FlagError,
    Flags,
    FlagStore,
    declared,
    key_prefix,
    memcache_key,
    publish,
)
from singlemalt import SafeMemcache
from tests.singlemalt.conftest import Memcached, start_memcached


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
def store(tmp_path: Path) -> FlagStore:
    db = Database(tmp_path / "hostd.db")
    db.create()
    return FlagStore(db)


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
        conn.execute("INSERT INTO flags (name, value) VALUES ('retired', 1)")
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


def test_memcached_spreads_values_between_workers(memcached: Memcached) -> None:
    clock = FakeClock()
    source = DummySource({"read_only": True})
    first = Flags(source, SafeMemcache(memcached.address), clock=clock)
    second = Flags(source, SafeMemcache(memcached.address), clock=clock)
    assert first.enabled(READ_ONLY) is True
    assert second.enabled(READ_ONLY) is True
    assert source.reads == 1  # the second worker found it in memcached
    assert SafeMemcache(memcached.address).get(KEY_PREFIX + "read_only") == b"1"


def test_published_value_wins_within_the_process_ttl(memcached: Memcached) -> None:
    clock = FakeClock()
    memcache = SafeMemcache(memcached.address)
    source = DummySource({"read_only": False})
    flags = Flags(source, memcache, clock=clock)
    assert flags.enabled(READ_ONLY) is False
    source.values["read_only"] = True  # what `hostd flag set` does: database, then memcached
    assert publish(memcache, READ_ONLY, True)
    clock.now += 2.0
    assert flags.enabled(READ_ONLY) is True
    assert source.reads == 1


def test_workers_do_not_overwrite_a_published_value(memcached: Memcached) -> None:
    """A worker that read the database just before a change must not undo the CLI's publish."""
    cli = SafeMemcache(memcached.address)

    class RacingSource(DummySource):
        def get(self, name: str) -> bool | None:
            # The worker has read "off"; before it writes memcached, the
            # CLI commits "on" and publishes it.
            publish(cli, READ_ONLY, True)
            return False

    flags = Flags(RacingSource(), SafeMemcache(memcached.address))
    assert flags.enabled(READ_ONLY) is False  # stale for one process TTL at most
    assert cli.get(memcache_key(READ_ONLY)) == b"1"


def test_installations_do_not_share_flags(memcached: Memcached) -> None:
    """Two stacks' pools on one memcached (or a CLI pointed at the wrong one) keep apart."""
    ours, theirs = key_prefix(b"secret one"), key_prefix(b"secret two")
    assert ours != theirs and ours.startswith(KEY_PREFIX)
    assert key_prefix(b"secret one") == ours
    memcache = SafeMemcache(memcached.address)
    assert publish(memcache, READ_ONLY, True, prefix=theirs)
    source = DummySource({"read_only": False})
    assert Flags(source, memcache, prefix=ours).enabled(READ_ONLY) is False
    assert source.reads == 1
    assert Flags(DummySource(), memcache, prefix=theirs).enabled(READ_ONLY) is True


def test_garbage_in_memcached_is_a_miss(memcached: Memcached) -> None:
    memcache = SafeMemcache(memcached.address)
    memcache.set(memcache_key(READ_ONLY), b"yes please", expire=10)
    source = DummySource({"read_only": True})
    assert Flags(source, memcache).enabled(READ_ONLY) is True
    assert source.reads == 1


def test_memcached_down_falls_back_to_the_database(memcached: Memcached, store: FlagStore) -> None:
    clock = FakeClock()
    flags = Flags(store, SafeMemcache(memcached.address, timeout=0.2), clock=clock)
    assert flags.enabled(READ_ONLY) is False
    memcached.kill()
    store.set(READ_ONLY, True)
    clock.now += 2.0
    assert flags.enabled(READ_ONLY) is True


def test_memcached_not_configured(store: FlagStore) -> None:
    store.set(READ_ONLY, True)
    assert Flags(store, SafeMemcache(None)).enabled(READ_ONLY) is True


@pytest.mark.parametrize("default", [False, True], ids=["default-off", "default-on"])
def test_unreadable_database_gives_the_default(tmp_path: Path, default: bool) -> None:
    flag = Flag("read_only", default, "test")
    missing = FlagStore(Database(tmp_path / "no" / "such" / "dir" / "hostd.db"))
    assert Flags(missing).enabled(flag) is default
    no_table = FlagStore(Database(tmp_path / "empty.db"))
    assert Flags(no_table).enabled(flag) is default


def test_failure_after_success_gives_the_last_known_value(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    source = DummySource({"read_only": True})
    flags = Flags(source, clock=clock)
    assert flags.enabled(READ_ONLY) is True
    source.error = sqlite3.OperationalError("database is locked")
    clock.now += 5
    with caplog.at_level(logging.WARNING, logger="hostd.flags"):
        assert flags.enabled(READ_ONLY) is True
    assert "flag read_only unreadable (OperationalError: database is locked); using on" in caplog.text


def test_failures_are_retried_once_per_ttl_and_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    source = DummySource()
    source.error = OSError("disk gone")
    flags = Flags(source, clock=clock, log_interval=60)
    with caplog.at_level(logging.WARNING, logger="hostd.flags"):
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
