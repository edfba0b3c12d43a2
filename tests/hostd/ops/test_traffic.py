"""Sessions per second from cumulative counters, and the PNG they are drawn to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.ops import haproxy, traffic
from hostd.ops.haproxy import PoolError
from hostd.ops.traffic import Sample
from hostd.settings import Settings

ROWS = [
    {"pxname": "https", "svname": "FRONTEND", "stot": "90"},
    {"pxname": "git", "svname": "git1", "stot": "30"},
    {"pxname": "git", "svname": "git2", "stot": "12"},
    {"pxname": "git", "svname": "BACKEND", "stot": "42"},
    {"pxname": "web", "svname": "BACKEND", "stot": "7"},
    {"pxname": "stats", "svname": "BACKEND", "stot": "99"},
    {"pxname": "hg", "svname": "BACKEND", "stot": "not a number"},
]


def test_totals_per_backend_or_per_server() -> None:
    assert traffic.totals(ROWS) == {"git": 42, "web": 7}
    assert traffic.totals(ROWS, servers=True) == {"git/git1": 30, "git/git2": 12}


def test_rates_are_deltas_over_time_and_survive_a_counter_reset() -> None:
    run = [
        Sample(100.0, {"git": 10, "web": 0}),
        Sample(102.0, {"git": 16, "web": 1}),
        # A reload: the new worker counts from zero; 3 sessions since.
        Sample(103.0, {"git": 3, "web": 1}),
        Sample(104.0, {"git": 3}),
    ]
    lines = {line.key: line for line in traffic.rates(run)}
    assert lines["git"].points == ((102.0, 3.0), (103.0, 3.0), (104.0, 0.0))
    assert lines["web"].points == ((102.0, 0.5), (103.0, 0.0))
    assert lines["git"].peak == 3.0
    assert traffic.total_sessions(run, "git") == 9
    assert traffic.summary(run) == [
        "git\tsessions 9\tpeak 3.0/s\tmean 2.25/s",
        "web\tsessions 1\tpeak 0.5/s\tmean 0.25/s",
    ]


def test_lines_are_grouped_by_backend() -> None:
    run = [Sample(0.0, {"web": 0, "git/git2": 0, "git/git1": 0, "git": 0}), Sample(1.0, {})]
    assert [line.key for line in traffic.rates(run)] == ["git", "git/git1", "git/git2", "web"]


BAD_BOUNDS = [(0, 1), (-1, 1), (10, 0.01), (10, 11), (traffic.MAX_DURATION + 1, 1)]


@pytest.mark.parametrize(("duration", "interval"), BAD_BOUNDS,
                         ids=["zero", "negative", "tiny-interval", "interval-longer", "too-long"])
def test_sampling_is_bounded(duration: float, interval: float, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        traffic.samples(Settings(data_dir=tmp_path), duration, interval)


def test_samples_on_a_fixed_schedule_and_skip_failed_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    now = [1000.0]
    answers: Iterator[str | PoolError] = iter(["# pxname,svname,stot\ngit,BACKEND,1\n", PoolError("socket gone"),
                    "# pxname,svname,stot\ngit,BACKEND,5\n", "# pxname,svname,stot\ngit,BACKEND,6\n"])

    def command(_settings: Settings, text: str) -> str:
        assert text == "show stat -1 6 -1"
        answer = next(answers)
        if isinstance(answer, PoolError):
            raise answer
        return answer

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(haproxy, "command", command)
    run = list(traffic.samples(Settings(data_dir=tmp_path), 3.0, 1.0, clock=lambda: now[0], sleep=sleep))
    assert [(s.at, s.totals) for s in run] == [(1000.0, {"git": 1}), (1002.0, {"git": 5}), (1003.0, {"git": 6})]


def test_draw_writes_a_png(tmp_path: Path) -> None:
    run = [Sample(1_700_000_000.0 + i, {"git": i * i, "hg": i, "web": 0}) for i in range(10)]
    path = tmp_path / "traffic.png"
    traffic.draw(traffic.rates(run), path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert path.stat().st_size > 10_000


def test_without_matplotlib_the_chart_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert traffic.chart_problem() is None
    monkeypatch.setattr(traffic.importlib.util, "find_spec", lambda name: None)
    assert "pip install -e '.[chart]'" in (traffic.chart_problem() or "")
