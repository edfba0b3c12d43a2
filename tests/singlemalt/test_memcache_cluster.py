"""SafeMemcache over three real memcached nodes: one dies, hangs, comes back stale, or restarts.

The node a key lives on is found from outside (which server holds it), not
from SafeMemcache's internals, so these tests hold whatever the hashing.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

import pytest

from singlemalt.memcache import SafeMemcache

from .conftest import FakeClock, Memcached

LOGGER = "singlemalt.memcache"




def placed(memcache: SafeMemcache, nodes: list[Memcached], per_node: int = 5) -> dict[int, list[str]]:
    """At least ``per_node`` keys stored through ``memcache`` on each node, by node index, found by asking each node."""
    direct = [SafeMemcache(node.address) for node in nodes]
    where: dict[int, list[str]] = {i: [] for i in range(len(nodes))}
    while min(len(keys) for keys in where.values()) < per_node:
        k = "cluster:" + uuid.uuid4().hex
        assert memcache.set(k, b"before", expire=600)
        [holder] = [i for i, d in enumerate(direct) if d.get(k) == b"before"]
        where[holder].append(k)
    return where


def failures(caplog: pytest.LogCaptureFixture, node: Memcached) -> int:
    return sum(f"memcached {node.address}: " in r.getMessage() for r in caplog.records if r.name == LOGGER)




@pytest.fixture
def cluster(nodes: list[Memcached], clock: FakeClock, caplog: pytest.LogCaptureFixture) -> SafeMemcache:
    """A client of the three nodes that logs every failure (so the log counts the tries of a dead node)."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    return SafeMemcache([n.address for n in nodes], timeout=0.2, retry_interval=10, log_interval=0, clock=clock)


def test_every_process_places_a_key_on_the_same_node(cluster: SafeMemcache, nodes: list[Memcached]) -> None:
    where = placed(cluster, nodes)
    other = SafeMemcache([n.address for n in reversed(nodes)])  # another worker, servers listed in another order
    assert all(other.get(k) == b"before" for keys in where.values() for k in keys)


def test_a_dead_node_costs_one_failure_and_its_keys_move(
    cluster: SafeMemcache, nodes: list[Memcached], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    where = placed(cluster, nodes)
    dead, live = nodes[0], where[1] + where[2]
    dead.kill()
    assert cluster.set(where[0][0], b"moved")  # the one try that finds it dead, then the next node
    assert cluster.get_many(live + where[0]) == {**dict.fromkeys(live, b"before"), where[0][0]: b"moved"}
    for _ in range(20):
        assert all(cluster.get(k) == b"before" for k in live)  # keys on live nodes keep working
        for k in where[0]:  # the dead node's keys work on the others
            assert cluster.set(k, b"moved") and cluster.get(k) == b"moved"
    counter = where[0][0] + ":n"
    assert cluster.incr(counter) is None and cluster.add(counter, b"1") and cluster.incr(counter) == 2
    assert failures(caplog, dead) == 1
    assert "its keys go to the other nodes for 10s" in caplog.text
    clock.now += 11  # one try per interval, still dead
    assert cluster.get(where[0][0]) == b"moved"
    assert failures(caplog, dead) == 2


def test_a_batch_read_that_finds_a_node_dead_reads_the_rest(
    cluster: SafeMemcache, nodes: list[Memcached], caplog: pytest.LogCaptureFixture
) -> None:
    where = placed(cluster, nodes)
    nodes[2].kill()
    everything = where[0] + where[1] + where[2]
    assert cluster.get_many(everything) == dict.fromkeys(where[0] + where[1], b"before")
    assert failures(caplog, nodes[2]) == 1
    for k in where[2]:
        assert cluster.set(k, b"moved")
    assert cluster.get_many(everything) == {**dict.fromkeys(where[0] + where[1], b"before"),
                                            **dict.fromkeys(where[2], b"moved")}
    assert failures(caplog, nodes[2]) == 1


def test_a_hung_node_is_tried_by_one_thread_per_interval(
    cluster: SafeMemcache, nodes: list[Memcached], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    where = placed(cluster, nodes)
    hung = nodes[1]
    hung.pause()
    assert cluster.get(where[1][0]) is None  # one timeout
    clock.now += 11
    results: list[bytes | None] = []
    start = threading.Barrier(8)

    def reader() -> None:
        start.wait()
        results.append(cluster.get(where[1][0]))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # One thread claims the retry and waits out the timeout; the others go
    # around the hung node at once instead of queueing on it.
    assert failures(caplog, hung) == 2
    assert results.count(None) == 8  # the fallback node never had this key


def test_a_node_back_with_stale_entries_gets_its_keys_back(
    cluster: SafeMemcache, nodes: list[Memcached], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    where = placed(cluster, nodes)
    stale, k = nodes[2], where[2][0]
    stale.pause()
    assert cluster.get(k) is None
    assert cluster.set(k, b"written while it was away")
    assert cluster.get(k) == b"written while it was away"
    stale.resume()
    clock.now += 11
    # Back, with what it held: anything cached must be bound to what it
    # depends on, because an entry can outlive a change made meanwhile.
    assert cluster.get(k) == b"before"
    assert f"memcached {stale.address} is reachable again" in caplog.text
    assert cluster.get_many(where[2]) == dict.fromkeys(where[2], b"before")


def test_a_restarted_node_is_used_again_after_one_interval(
    cluster: SafeMemcache, nodes: list[Memcached], clock: FakeClock,
    memcached_factory: Callable[..., Memcached], caplog: pytest.LogCaptureFixture,
) -> None:
    where = placed(cluster, nodes)
    # Idle pooled connections, as a threaded worker leaves them: all dead once the server restarts.
    [pool] = [node.client.client_pool for node in cluster._nodes if node.name == nodes[0].address]  # type: ignore[attr-defined]
    connections = [pool.get() for _ in range(3)]
    for connection in connections:
        connection.get(where[0][0])
        pool.release(connection)
    nodes[0].kill()
    restarted = memcached_factory(nodes[0].port)
    assert cluster.get(where[0][0]) is None  # a dead connection: the node is out for an interval
    clock.now += 11
    # Its other idle connections were dropped with the failure, so the
    # first try after the interval reaches the new server.
    assert cluster.set(where[0][0], b"after") and cluster.get(where[0][0]) == b"after"
    assert SafeMemcache(restarted.address).get(where[0][0]) == b"after"
    assert failures(caplog, restarted) == 1


def test_all_nodes_down_is_a_miss(cluster: SafeMemcache, nodes: list[Memcached]) -> None:
    where = placed(cluster, nodes, per_node=1)
    for node in nodes:
        node.kill()
    keys = [k for keys in where.values() for k in keys]
    for k in keys * 2:
        assert cluster.get(k) is None
    assert cluster.get_many(keys) == {}
    assert cluster.incr(keys[0]) is None and cluster.set(keys[0], b"v") is False
