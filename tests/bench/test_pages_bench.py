"""The page benchmark: its pure parts, and the whole machinery once end to end with tiny counts.

No timing is asserted; ``make bench`` reports those. The end-to-end test
starts a real stack, serves a tiny generated git repository (120 commits:
a history of more than one page) and its hg conversion, and checks that
every page kind was timed for both visitors (anonymous and signed in) and
viewed cold after a push, with no failure.
"""

from __future__ import annotations

import contextlib
import email.message
import http.client
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest

from tests.bench import pages_bench as pb
from tests.bench.fastimport import build_git
from tests.bench.hgconvert import build_hg
from tests.bench.history import HistorySpec
from tests.bench.interference import Monitor, Span
from tests.bench.pages_site import (
    KINDS,
    README,
    SAMPLE,
    SAMPLE_LINES,
    Fetched,
    Input,
    Page,
    Shape,
    _Form,
    cookies,
    looks_right,
    next_page,
    page_set,
    sample_files,
)
from tests.bench.report import Metric, abba_rounds

SHAPE = Shape("main", ("src", "src/a b"), ("c" * 40, "d" * 40), 40, 12, 3)
TINY_REPO = HistorySpec(name="tiny", seed=11, commits=120, files=12, dirs=4, lines=(5, 30), long_branches=("maint",),
                        topics=0.2, tags=3)
TINY_PLAN = pb.Plan(requests=2, clients=2, cold_runs=1, budget=30.0, large=False)


def test_the_page_set_has_every_kind_but_the_next_page_and_encodes_paths() -> None:
    found = page_set("bench/flask", SHAPE, SHAPE.commits, bookmarks=False)
    assert [page.kind for page in found] == ["summary", "tree", "tree", "blob", "raw", "commits", "commit", "commit",
                                             "branches", "tags"]
    assert found[2].path == "/bench/flask/tree/main/src/a%20b"
    assert found[3].path == f"/bench/flask/blob/main/{SAMPLE}" and found[6].path == "/bench/flask/commit/" + "c" * 40
    assert page_set("o/n", SHAPE, SHAPE.commits, bookmarks=True)[-1] == Page("bookmarks", "/o/n/bookmarks")
    assert {page.kind for page in found} | {"commits-next", "bookmarks"} == set(KINDS)


@pytest.mark.parametrize(("body", "expected"), [
    (b'<a href="/o/n/tree/main">t</a><nav class="pager"><a href="/o/n/commits/main?page=2">Older</a></nav>',
     "/o/n/commits/main?page=2"),
    (b'<a href="https://h:1/o/n/commits/main?after=abc&amp;x=1">Older</a>', "/o/n/commits/main?after=abc&x=1"),
    (b'<a href="/o/n/commits/main">main</a><a href="/o/other/commits/main?page=2">x</a>', None),
], ids=["page", "absolute-escaped", "none"])
def test_next_page_follows_the_pagers_link(body: bytes, expected: str | None) -> None:
    assert next_page(body, "o/n") == expected


def test_sample_files_are_a_readme_and_a_500_line_module_the_same_every_run() -> None:
    files = sample_files()
    assert files == sample_files() and set(files) == {README, SAMPLE}
    assert abs(len(files[SAMPLE].splitlines()) - SAMPLE_LINES) <= 10
    assert files[README].startswith("# ") and "```python" in files[README]
    compile(files[SAMPLE], SAMPLE, "exec")


def test_a_page_looks_right_when_it_shows_the_sample() -> None:
    sample = sample_files()[SAMPLE].encode()
    docstring = sample.splitlines()[0].strip(b'"')
    assert looks_right(Page("summary", "/"), b"<h1>Bench project</h1>")
    assert not looks_right(Page("summary", "/"), b"<p>There is no such page</p>")
    assert looks_right(Page("blob", "/"), b"<td><span>&#34;&#34;&#34;" + docstring + b"&#34;&#34;&#34;</span></td>")
    assert looks_right(Page("raw", "/"), sample) and not looks_right(Page("raw", "/"), sample + b"x")
    assert looks_right(Page("tags", "/"), b"")


def test_the_sign_in_form_and_its_cookies_are_read() -> None:
    form = _Form()
    form.feed('<form method="post" action="/login"><input type="hidden" name="csrf" value="t0k">'
              '<input name="username"><input type="password" name="password"><input type="submit" value="Go">'
              '</form><form action="/logout"><input name="other"></form>')
    assert form.action == "/login"
    assert form.inputs == [("csrf", "hidden", "t0k"), ("username", "text", ""), ("password", "password", "")]
    headers = cast(http.client.HTTPMessage, email.message.Message())
    headers["Set-Cookie"] = "session=abc; Secure; HttpOnly; SameSite=Lax"
    headers["Set-Cookie"] = "csrf=xyz; Path=/"
    assert cookies(headers) == {"session": "abc", "csrf": "xyz"}


def bench_with(samples: dict[tuple[str, str, str], list[float]]) -> pb.Bench:
    """A Bench holding ``samples`` ((repository label, kind, visitor) -> ms), no stack."""
    nothing = cast(Any, None)
    bench = pb.Bench(TINY_PLAN, nothing, nothing, Monitor(None), {}, "HTTP Basic")
    for (label, kind, who), values in samples.items():
        for value in values:
            bench.results.add(Metric(label, kind, "ms"), who, value)
        bench.urls[(label, kind)] = 1
    for label, gated in (("git, flask-sized", True), ("git, git/git-sized", False)):
        given = Input(label, "git", "x", Path("/"), Path("/"), gated)
        bench.sites.append(pb.Site(given, "bench/x", SHAPE, (), Path("/")))
    return bench


def test_tables_show_each_kind_and_all_pages_and_judge_only_the_gated_repository() -> None:
    fast, slow, flask, large = [10.0] * 20, [200.0] * 20, "git, flask-sized", "git, git/git-sized"
    bench = bench_with({(flask, "blob", pb.ANONYMOUS): fast, (flask, "commit", pb.ANONYMOUS): slow,
                        (flask, "blob", pb.SIGNED_IN): fast, (large, "blob", pb.ANONYMOUS): slow})
    bench.cold[(flask, "blob")] = [30.0, 50.0]
    table = pb.site_table(bench, flask).splitlines()
    assert table[2] == f"| blob: {KINDS['blob']} | 1 | {' | '.join(['10.00'] * 6)} | 40.00 | 50.00 | 40 |"
    assert table[3] == f"| commit: {KINDS['commit']} | 1 | 200 | 200 | 200 | — | — | — | — | — | 20 |"
    assert table[4] == "| **all pages** | 2 | 10.00 | 200 | 200 | 10.00 | 10.00 | 10.00 |  |  | 60 |"
    assert len(table) == 5
    rows = pb.verdicts(bench).splitlines()[2:]
    assert rows == ["| git, flask-sized | anonymous | 200 | commit: 200 | commit | < 150 ms | FAIL |",
                    "| git, flask-sized | signed in | 10.00 | blob: 10.00 | none | < 150 ms | PASS |",
                    "| git, git/git-sized | anonymous | 200 | blob: 200 | blob | — | printed, not gated |",
                    "| git, git/git-sized | signed in | — | — | — | — | printed, not gated |"]


class Clock:
    """A stand-in monitor: each span is disturbed when ``noisy`` is set."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.noisy = False

    @contextlib.contextmanager
    def span(self) -> Iterator[Span]:
        span = Span(wall=1.0, others=0.5 if self.noisy else 0.0)
        yield span
        self.spans.append(span)
        self.noisy = False

    def take(self) -> list[Span]:
        spans, self.spans = self.spans, []
        return spans


class Counter:
    """A stand-in visitor: answers 200 in ``ms`` and counts its requests per path."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def get(self, path: str) -> Fetched:
        self.seen.append(path)
        return Fetched(200, b"", float(len(self.seen)), http.client.HTTPMessage())


def test_a_batch_sends_its_round_when_it_ends_and_a_disturbed_round_is_taken_again() -> None:
    clock, visitor = Clock(), Counter()
    bench = pb.Bench(TINY_PLAN, cast(Any, None), cast(Any, None), cast(Monitor, clock), {pb.ANONYMOUS:
                     cast(Any, visitor)}, "HTTP Basic")
    site = pb.Site(Input("r", "git", "x", Path("/"), Path("/"), True), "o/n", SHAPE, (), Path("/"))
    keys = {"a": (pb.ANONYMOUS, Page("blob", "/a")), "b": (pb.ANONYMOUS, Page("raw", "/b"))}
    with ThreadPoolExecutor(max_workers=2) as pool:
        batch = pb.Batch(bench, site, keys, pool)
        for number, key in abba_rounds(bench.results, batch.take, "s", list(keys), 2, 60.0):
            assert visitor.seen.count(keys[key][1].path) == number  # queued: nothing sent before the round ends
            batch.queued.append(key)
            clock.noisy = number == 1
    assert len(visitor.seen) == 6  # 3 rounds of 2, the disturbed second one taken again
    assert bench.results.count(Metric("r", "blob", "ms"), pb.ANONYMOUS) == 2
    assert (bench.rounds, bench.disturbed) == (3, 1)
    assert bench.results.remarks == ["s: 1 disturbed round(s) taken again"]


def test_plans() -> None:
    assert pb.parse_args([]).plan == pb.Plan()
    quick = pb.parse_args(["--quick"]).plan
    assert quick.requests < pb.Plan().requests and not quick.large and quick.hg
    assert pb.parse_args(["--requests", "5", "--clients", "1", "--no-large", "--no-hg"]).plan == pb.Plan(
        requests=5, clients=1, large=False, hg=False)


def test_the_benchmark_is_in_make_bench() -> None:
    assert '"tests.bench.pages_bench"' in (Path(__file__).parent / "__main__.py").read_text()


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Input]:
    root = tmp_path_factory.mktemp("pages-inputs")
    build_git(root / "tiny.git", TINY_REPO)
    build_hg(root / "tiny.git", root / "tiny-hg")
    return [Input("git, tiny", "git", "tiny", root / "tiny.git", root / "tiny.git", True),
            Input("hg, tiny", "hg", "tiny-hg", root / "tiny-hg", root / "tiny.git", True)]


def test_every_page_kind_is_timed_for_both_visitors_and_cold(tiny_inputs: list[Input], tmp_path: Path) -> None:
    with contextlib.ExitStack() as cleanup:
        bench = pb.run(TINY_PLAN, tmp_path / "work", tiny_inputs, Monitor(None), cleanup)
        report = pb.render(bench, pb.describe(bench, "test", quick=True))
    assert bench.results.failures == [], report
    assert bench.signed_in_how == "the session cookie of the /login form", report
    for given in tiny_inputs:
        kinds = [kind for kind in KINDS if kind != "bookmarks" or given.vcs == "hg"]
        for kind in kinds:
            for who in pb.VISITORS:
                assert bench.results.count(Metric(given.label, kind, "ms"), who) >= TINY_PLAN.requests, (kind, report)
            assert len(bench.cold[(given.label, kind)]) == TINY_PLAN.cold_runs, (kind, report)
    assert report.count("| PASS |") + report.count("| FAIL |") == 4, report
