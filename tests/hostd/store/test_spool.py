"""The spool: batches kept whole on disk, handed back oldest first, each to one writer."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from hostd.store.spool import STALE_CLAIM, Spool


class Down(Exception):
    pass


def test_batches_come_back_in_the_order_they_were_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for i in range(5):
        spool.put([[i, "a"], [i, "b"]])
    seen: list[Any] = []
    assert spool.drain(seen.append) == 5
    assert seen == [[[i, "a"], [i, "b"]] for i in range(5)]
    assert spool.pending() == [] and spool.drain(seen.append) == 0


def test_a_failed_write_keeps_that_batch_and_the_rest(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for i in range(3):
        spool.put([[i]])
    written: list[Any] = []

    def second_fails(rows: Any) -> None:
        if rows == [[1]]:
            raise Down("database gone again")
        written.append(rows)

    with pytest.raises(Down):
        spool.drain(second_fails)
    assert written == [[[0]]]
    assert len(spool.pending()) == 2
    assert spool.drain(written.append) == 2
    assert written == [[[0]], [[1]], [[2]]]


def test_a_file_cut_off_by_a_crash_is_never_handed_out(tmp_path: Path) -> None:
    """Written to a temporary name first: a half-written batch is not a batch."""
    spool = Spool(tmp_path / "spool")
    spool.put([[1]])
    (spool.directory / "00000000000000000000-dead.tmp").write_text("[[2], [")
    seen: list[Any] = []
    assert spool.drain(seen.append) == 1
    assert seen == [[[1]]]


def test_two_drains_at_once_write_every_batch_exactly_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for i in range(200):
        spool.put([[i]])
    seen: list[Any] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def write(rows: Any) -> None:
        with lock:
            seen.append(rows[0][0])

    def drain() -> None:
        start.wait()
        spool.drain(write)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(200))
    assert spool.pending() == []


def test_a_claim_whose_process_died_is_taken_over_once_stale(tmp_path: Path) -> None:
    now = [1_000_000.0]
    spool = Spool(tmp_path / "spool", clock=lambda: now[0])
    kept = spool.put([[1]])
    claimed = kept.with_suffix(".claimed")
    kept.rename(claimed)  # a drain that died before it wrote
    os.utime(claimed, (now[0], now[0]))
    seen: list[Any] = []
    assert spool.drain(seen.append) == 0 and seen == []
    now[0] += STALE_CLAIM + 1
    assert spool.drain(seen.append) == 1 and seen == [[[1]]]
    assert spool.pending() == []
