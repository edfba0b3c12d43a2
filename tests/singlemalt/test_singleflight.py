"""SingleFlight: one holder per key, other keys unaffected, the table empties itself."""

from __future__ import annotations

import threading

import pytest

from singlemalt.singleflight import SingleFlight
from tests.polling import wait_until


def test_waiters_enter_one_at_a_time_and_the_key_is_dropped() -> None:
    flights = SingleFlight()
    inside: list[int] = []
    overlap = threading.Event()
    gate = threading.Event()

    def work(n: int) -> None:
        with flights.turn("k"):
            if inside:
                overlap.set()
            inside.append(n)
            gate.wait(10)
            inside.remove(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    wait_until("all five wait for the key", lambda: flights.pending("k") == 5, 10, interval=0.005)
    assert len(inside) == 1
    gate.set()
    for thread in threads:
        thread.join(10)
    assert not overlap.is_set()
    assert flights.pending("k") == 0
    assert repr(flights) == "<SingleFlight keys=0>"


def test_other_keys_do_not_wait() -> None:
    flights = SingleFlight()
    with flights.turn("a"):
        entered = threading.Event()

        def other() -> None:
            with flights.turn("b"):
                entered.set()

        thread = threading.Thread(target=other)
        thread.start()
        assert entered.wait(10)
        thread.join(10)
        assert flights.pending("a") == 1 and flights.pending("b") == 0


def test_an_exception_releases_the_turn() -> None:
    flights = SingleFlight()
    with pytest.raises(RuntimeError), flights.turn("k"):
        raise RuntimeError("boom")
    assert flights.pending("k") == 0
    with flights.turn("k"):
        assert flights.pending("k") == 1
