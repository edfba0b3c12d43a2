"""The failed-login throttle over three real memcached nodes, while one of them fails.

Two throttles on separate :class:`SafeMemcache` clients stand for two
workers, each with its own view of which node is up, and the guesses
alternate between them.  Each scenario runs once per node, so whichever
node holds the pair's counter or lock is the one that fails.

What holds, and what these tests pin:

- a node dead (killed, or hung: SIGSTOP): the (address, account) pair is
  locked after exactly ``limit`` failures, as with every node up (an
  operation that finds its node dead is done on the next node);
- a node back with stale entries (SIGCONT after the others counted without
  it) or restarted empty: its keys return to it, so a counter or lock
  written elsewhere meanwhile is out of sight, as in a memcached restart.
  The pair is locked again within ``limit`` failures: a node's return
  costs at most one more ``limit`` of guesses, never an unlimited number.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from singlemalt.memcache import SafeMemcache
from singlemalt.throttle import LoginThrottle

from .conftest import FakeClock, Memcached

SECRET = b"throttle-cluster-secret-0123456789"
LIMIT = 5
NODE = pytest.mark.parametrize("failing", [0, 1, 2], ids=["node0", "node1", "node2"])






@pytest.fixture
def workers(nodes: list[Memcached], clock: FakeClock) -> list[LoginThrottle]:
    def worker() -> LoginThrottle:
        memcache = SafeMemcache([n.address for n in nodes], timeout=0.2, retry_interval=10, clock=clock)
        return LoginThrottle(memcache, secret=SECRET, limit=LIMIT)

    return [worker(), worker()]


def subject() -> tuple[str, str]:
    return f"10.1.{uuid.uuid4().hex[:6]}", f"alice-{uuid.uuid4().hex[:6]}"


def failures_until_locked(workers: list[LoginThrottle], address: str, user: str) -> int:
    """Guesses, alternating between the workers, until both refuse the pair; fails the test past 3 * LIMIT."""
    for guesses in range(1, 3 * LIMIT + 1):
        workers[guesses % 2].record_failure(address, user)
        if all(worker.blocked(address, user) for worker in workers):
            return guesses
    pytest.fail(f"not locked after {3 * LIMIT} failures")


@NODE
@pytest.mark.parametrize("how", ["killed", "hung"])
def test_locks_out_after_its_limit_while_a_node_is_down(
    workers: list[LoginThrottle], nodes: list[Memcached], failing: int, how: str
) -> None:
    address, user = subject()
    if how == "killed":
        nodes[failing].kill()
    else:
        nodes[failing].pause()
    assert failures_until_locked(workers, address, user) == LIMIT
    assert not workers[0].blocked(address, "bob")  # the lock is the pair's, as always


@NODE
def test_locks_out_again_within_its_limit_when_a_node_comes_back_stale(
    workers: list[LoginThrottle], nodes: list[Memcached], clock: FakeClock, failing: int
) -> None:
    address, user = subject()
    for guesses in range(LIMIT - 2):  # counted on every node's view, before the outage
        workers[guesses % 2].record_failure(address, user)
    nodes[failing].pause()
    assert failures_until_locked(workers, address, user) <= LIMIT
    nodes[failing].resume()  # with the counters and locks it held before
    clock.now += 11  # both workers try it again, and it answers
    assert failures_until_locked(workers, address, user) <= LIMIT


@NODE
def test_locks_out_again_within_its_limit_after_a_node_restarts_empty(
    workers: list[LoginThrottle], nodes: list[Memcached], clock: FakeClock, failing: int,
    memcached_factory: Callable[..., Memcached],
) -> None:
    address, user = subject()
    assert failures_until_locked(workers, address, user) == LIMIT
    nodes[failing].kill()
    memcached_factory(nodes[failing].port)  # the same address, nothing in it
    clock.now += 11
    assert failures_until_locked(workers, address, user) <= LIMIT
    clock.now += 11
    assert failures_until_locked(workers, address, user) <= LIMIT  # and in steady state again
