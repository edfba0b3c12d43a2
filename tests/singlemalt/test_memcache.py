"""SafeMemcache against a real memcached, including one that dies or hangs mid-test."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pymemcache.client.base import PooledClient

from singlemalt.memcache import SafeMemcache

from .conftest import FakeClock, Memcached

LOGGER = "singlemalt.memcache"




def key() -> str:
    return "test:" + uuid.uuid4().hex


@pytest.mark.parametrize("servers", [None, "", [], [""]], ids=["none", "empty", "no-list", "blank"])
def test_not_configured_is_always_a_miss(servers: Any) -> None:
    memcache = SafeMemcache(servers)
    assert not memcache.configured
    assert memcache.get("k") is None
    assert memcache.set("k", b"v") is False
    assert memcache.add("k", b"v") is False
    assert memcache.incr("k") is None
    assert memcache.delete("k") is False
    assert memcache.touch("k", expire=60) is False


def test_operations(memcache: SafeMemcache) -> None:
    k = key()
    assert memcache.configured
    assert memcache.get(k) is None
    assert memcache.incr(k) is None
    assert memcache.add(k, b"1", expire=60)
    assert not memcache.add(k, b"9", expire=60)
    assert memcache.incr(k) == 2
    assert memcache.incr(k, 5) == 7
    assert memcache.get(k) == b"7"
    assert memcache.set(k, b"value", expire=60)
    assert memcache.get(k) == b"value"
    assert memcache.touch(k, expire=600)
    assert memcache.delete(k)
    assert not memcache.delete(k)
    assert not memcache.touch(k, expire=600)
    assert memcache.get(k) is None


def test_touch_sets_a_new_expiry(shared_memcached: Memcached) -> None:
    memcache = SafeMemcache(shared_memcached.address)
    k = key()
    assert memcache.set(k, b"v", expire=60)
    assert shared_memcached.ttl(k) <= 60
    assert memcache.touch(k, expire=900)
    assert 800 < shared_memcached.ttl(k) <= 900


def test_list_of_one_server_and_client_kinds(shared_memcached: Memcached) -> None:
    single = SafeMemcache([shared_memcached.address, shared_memcached.address])  # the same server once
    assert repr(single) == f"<SafeMemcache ['{shared_memcached.address}']>"
    k = key()
    assert single.set(k, b"x") and single.get(k) == b"x"


def test_factory(shared_memcached: Memcached) -> None:
    memcache = SafeMemcache(lambda: PooledClient(shared_memcached.address))
    k = key()
    assert memcache.set(k, b"y") and memcache.get(k) == b"y"


def test_several_servers_spread_keys(memcached_factory: Callable[..., Memcached]) -> None:
    servers = [memcached_factory(), memcached_factory()]
    memcache = SafeMemcache([s.address for s in servers])
    keys = [key() for _ in range(20)]
    for k in keys:
        assert memcache.set(k, k.encode())
    assert [memcache.get(k) for k in keys] == [k.encode() for k in keys]
    direct = [SafeMemcache(s.address) for s in servers]
    assert all(any(d.get(k) for k in keys) for d in direct)


def test_several_servers_one_dies(memcached_factory: Callable[..., Memcached]) -> None:
    servers = [memcached_factory(), memcached_factory()]
    memcache = SafeMemcache([s.address for s in servers], retry_interval=60)
    keys = [key() for _ in range(20)]
    servers[0].kill()
    assert all(memcache.set(k, b"v") for k in keys)  # the write that finds the node dead goes to the other
    assert all(memcache.get(k) == b"v" for k in keys)


def test_memcached_killed_mid_test(
    memcached_factory: Callable[..., Memcached], caplog: pytest.LogCaptureFixture
) -> None:
    server = memcached_factory()
    clock = FakeClock()
    memcache = SafeMemcache(server.address, retry_interval=10, log_interval=60, clock=clock)
    k = key()
    assert memcache.set(k, b"v") and memcache.get(k) == b"v"

    server.kill()
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert memcache.get(k) is None  # the pooled connection breaks: a miss, not an exception
    started = time.monotonic()
    for _ in range(1000):
        assert memcache.get(k) is None
        assert memcache.set(k, b"v") is False
        assert memcache.add(k, b"v") is False
        assert memcache.incr(k) is None
        assert memcache.delete(k) is False
        assert memcache.touch(k, expire=60) is False
    assert time.monotonic() - started < 0.5  # the breaker is open: nothing is attempted
    assert len(caplog.records) == 1
    assert f"memcached {server.address}: get failed" in caplog.records[0].getMessage()
    assert "bypassing memcached for 10s" in caplog.records[0].getMessage()

    for _ in range(5):  # retried every interval, refused every time, still one log line a minute
        clock.now += 11
        assert memcache.get(k) is None
    assert len(caplog.records) == 1
    clock.now += 60
    assert memcache.get(k) is None
    assert len(caplog.records) == 2
    assert "(6 failures since last report)" in caplog.records[1].getMessage()

    memcached_factory(server.port)
    clock.now += 11
    assert memcache.set(k, b"back")
    assert memcache.get(k) == b"back"
    assert [r.getMessage() for r in caplog.records[2:]] == [f"memcached {server.address} is reachable again"]


def test_hung_memcached_costs_one_timeout(
    memcached_factory: Callable[..., Memcached], caplog: pytest.LogCaptureFixture
) -> None:
    server = memcached_factory()
    memcache = SafeMemcache(server.address, timeout=0.2, retry_interval=30)
    k = key()
    assert memcache.set(k, b"v")
    server.pause()
    try:
        started = time.monotonic()
        assert memcache.get(k) is None
        assert 0.15 < time.monotonic() - started < 2
        started = time.monotonic()
        for _ in range(100):
            assert memcache.get(k) is None
        assert time.monotonic() - started < 0.2
    finally:
        server.resume()
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


def test_client_errors_are_misses(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("boom")

    memcache = SafeMemcache(lambda: Broken(), retry_interval=0)
    assert memcache.get("k") is None
    assert memcache.incr("k") is None
    assert "RuntimeError: boom" in caplog.text


def test_illegal_key_is_a_miss_and_leaves_the_server_alone(
    memcache: SafeMemcache, caplog: pytest.LogCaptureFixture
) -> None:
    assert memcache.get("has space") is None
    assert memcache.set("x" * 300, b"v") is False
    k = key()
    assert memcache.set(k, b"v") and memcache.get(k) == b"v"  # no breaker opened for the caller's mistake
    assert [r.getMessage().split(" (")[0] for r in caplog.records if r.name == LOGGER] == ["memcached get refused"]
