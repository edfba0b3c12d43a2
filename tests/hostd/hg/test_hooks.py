"""The head pairing of the hg push log, as a table over small DAGs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from hostd.hg.hooks import head_moves

Parents = dict[int, tuple[int, ...]]

# 0 - 1 - 2        (default)
#      \- 3        (default)
#   4 = merge(2, 3)
#   5 child of 0   (stable)
DAG: Parents = {0: (), 1: (0,), 2: (1,), 3: (1,), 4: (2, 3), 5: (0,)}


def ancestors_in(parents: Parents) -> Callable[[int, int], Iterator[int]]:
    """``ancestors(rev, floor)`` over a parents table, as the changelog gives it."""
    def ancestors(rev: int, floor: int) -> Iterator[int]:
        seen: set[int] = set()
        todo = [p for p in parents[rev] if p >= floor]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            yield current
            todo.extend(p for p in parents[current] if p >= floor)

    return ancestors


D = b"default"
S = b"stable"

CASES = [
    pytest.param({}, {D: {0}}, [(D, None, 0)], id="first-push-creates-branch"),
    pytest.param({D: {1}}, {D: {2}}, [(D, 1, 2)], id="fast-forward"),
    pytest.param({D: {1}}, {D: {2, 3}}, [(D, 1, 2), (D, 1, 3)], id="one-head-forks-into-two"),
    pytest.param({D: {2}}, {D: {2, 3}}, [(D, None, 3)], id="new-head-beside-unchanged-head"),
    pytest.param({D: {2, 3}}, {D: {4}}, [(D, 2, 4), (D, 3, 4)], id="merge-joins-two-heads"),
    pytest.param({D: {1}}, {D: {1}, S: {5}}, [(S, None, 5)], id="new-named-branch"),
    pytest.param({D: {2}, S: {5}}, {D: {2}, S: {5}}, [], id="nothing-moved"),
    pytest.param({D: {2, 3}}, {D: {2}}, [(D, 3, None)], id="head-vanished-without-descendant"),
]


@pytest.mark.parametrize(("before", "after", "expected"), CASES)
def test_head_moves(
    before: dict[bytes, set[int]], after: dict[bytes, set[int]], expected: list[tuple[bytes, int | None, int | None]]
) -> None:
    assert head_moves(before, after, ancestors_in(DAG)) == expected


def test_ancestor_walk_stops_at_the_oldest_replaced_head() -> None:
    """The walk below the floor would be wasted: no replaced head is there."""
    floors: list[int] = []

    def ancestors(rev: int, floor: int) -> Iterator[int]:
        floors.append(floor)
        yield from ancestors_in(DAG)(rev, floor)

    assert head_moves({D: {1}}, {D: {2, 3}}, ancestors) == [(D, 1, 2), (D, 1, 3)]
    assert floors == [1, 1]
