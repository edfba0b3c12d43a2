"""The repository pages' page time (issue 21): p50/p95/max per page kind through HAProxy TLS, warm and cold.

``python -m tests.bench.pages_bench [--quick] [--requests N] [--clients N] [--no-large] [--output FILE]``
(and ``make bench``): one stack (the end-to-end tests' ``start_stack``: HAProxy TLS → the web pool), public
copies of the generated inputs (:mod:`tests.bench.repogen`): flask-sized git and its hg twin (gated: p95 <
150 ms warm), and a git/git-sized git repository (printed, not gated). Per repository, the page set of
:mod:`tests.bench.pages_site` is visited anonymously and signed in (the ``/login`` form's session cookie, else
HTTP Basic): one untimed pass over every URL, then ``requests`` timed rounds over every URL and visitor in ABBA
order, each round's requests sent by ``clients`` concurrent keep-alive connections; a round in which others took
a noticeable share of a core is taken again (:mod:`tests.bench.interference`). Cold: the first anonymous view
of each page kind after a push to the repository (printed, not gated). Exit status 0 when every page answered
200, 1 otherwise (whether or not the target is met: the report says).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from hostd.settings import PROJECT_ROOT
from hostd.store.refstate import RACY_SECONDS
from tests.bench.clientops import Runner
from tests.bench.common import BenchError, machine, markdown_table, traversable
from tests.bench.interference import Monitor, Span, run_in_cgroup
from tests.bench.pages_site import (
    KINDS,
    SAMPLE,
    SAMPLE_LINES,
    Fetched,
    Input,
    Page,
    Shape,
    Visitor,
    git_shape,
    hg_commits,
    inputs,
    looks_right,
    next_page,
    page_set,
    push_files,
    sample_files,
    sign_in,
)
from tests.bench.repogen import read_stamp
from tests.bench.report import Metric, Results, abba_rounds, format_value
from tests.bench.sides import OWNER, PASSWORD, copy_git, copy_hg
from tests.bench.ssh_bench import nearest_rank, version
from tests.e2e.stackfixture import VENV_BIN, Stack, start_stack, stop_stack

WORK = PROJECT_ROOT / "var" / "bench" / "pages-run"
INPUTS = PROJECT_ROOT / "var" / "bench" / "inputs"
TARGET_MS = 150.0
ANONYMOUS, SIGNED_IN = "anonymous", "signed in"
VISITORS = (ANONYMOUS, SIGNED_IN)


@dataclass(frozen=True, slots=True)
class Plan:
    """Timed requests per URL and visitor, concurrent clients, cold views per kind, seconds of rounds per repo."""

    requests: int = 30
    clients: int = 2
    cold_runs: int = 3
    budget: float = 240.0
    large: bool = True
    hg: bool = True


PRESETS = {"full": Plan(), "quick": Plan(requests=8, cold_runs=1, budget=60.0, large=False)}


@dataclass(frozen=True, slots=True)
class Site:
    """A repository being served, its page set, and what the set was chosen from."""

    input: Input
    repo: str  # OWNER/NAME
    shape: Shape
    pages: tuple[Page, ...]
    clone: Path  # a client's clone, pushed from


@dataclass
class Bench:
    plan: Plan
    stack: Stack
    runner: Runner
    monitor: Monitor
    visitors: dict[str, Visitor]
    signed_in_how: str
    results: Results = field(default_factory=Results)
    sites: list[Site] = field(default_factory=list)
    #: (repository label, kind) -> the first views after a push (ms).
    cold: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    #: (repository label, kind) -> how many URLs of the kind were timed.
    urls: dict[tuple[str, str], int] = field(default_factory=dict)
    rounds: int = 0
    disturbed: int = 0

    def record(self, site: Site, who: str, page: Page, got: Fetched) -> None:
        """A timed response: its sample when it is a 200, else a failure (one per repository, kind and status)."""
        failure = f"{site.input.label}: {page.kind} answered {got.status}"
        if got.status == 200:
            self.results.add(Metric(site.input.label, page.kind, "ms"), who, got.ms)
        elif not any(line.startswith(failure) for line in self.results.failures):
            self.results.failures.append(f"{failure} (first: {page.path}, {who})")


class Batch:
    """One round's requests: queued while :func:`~tests.bench.report.abba_rounds` yields them, sent when it
    calls ``take`` at the round's end, by the plan's clients at once; the round is one span of the monitor."""

    def __init__(self, bench: Bench, site: Site, keys: dict[str, tuple[str, Page]], pool: ThreadPoolExecutor) -> None:
        self.bench, self.site, self.keys, self.pool = bench, site, keys, pool
        self.queued: list[str] = []

    def fetch(self, key: str) -> Fetched:
        who, page = self.keys[key]
        return self.bench.visitors[who].get(page.path)

    def take(self) -> Sequence[Span]:
        if self.queued:
            keys, self.queued = self.queued, []
            with self.bench.monitor.span():
                answers = list(self.pool.map(self.fetch, keys))
            for key, got in zip(keys, answers, strict=True):
                self.bench.record(self.site, *self.keys[key], got)
        spans = self.bench.monitor.take()
        self.bench.rounds += bool(spans)
        self.bench.disturbed += any(span.disturbed for span in spans)
        return spans


def connect_every_client(bench: Bench, pool: ThreadPoolExecutor) -> None:
    """Open each visitor's connection on each of the pool's threads (untimed): no timed request pays a handshake."""
    barrier = threading.Barrier(bench.plan.clients)

    def connect(_: int) -> None:
        barrier.wait(timeout=60)
        for visitor in bench.visitors.values():
            visitor.get("/static/site.css")

    list(pool.map(connect, range(bench.plan.clients)))


def warm(bench: Bench, site: Site) -> dict[str, Page]:
    """One untimed pass over every URL and visitor (finding the history's next page), then the timed rounds;
    the first URL of each kind that answered."""
    keys: dict[str, tuple[str, Page]] = {}
    for who, visitor in bench.visitors.items():
        found = list(site.pages)
        for page in found:
            got = visitor.get(page.path)
            if got.status == 200 and not looks_right(page, got.body):
                bench.results.failures.append(f"{site.input.label}, {who}: {page.path} lacks the sample's text")
            if got.status != 200 or not looks_right(page, got.body):
                bench.record(site, who, page, got)
                continue
            keys[f"{who} {page.path}"] = (who, page)
            if page.kind == "commits":
                following = next_page(got.body, site.repo)
                if following is None:
                    bench.results.failures.append(f"{site.input.label}, {who}: {page.path} links no next page")
                else:
                    found.append(Page("commits-next", following))
    first: dict[str, Page] = {}
    for who, page in keys.values():
        if who == ANONYMOUS:
            first.setdefault(page.kind, page)
            bench.urls[(site.input.label, page.kind)] = bench.urls.get((site.input.label, page.kind), 0) + 1
    with ThreadPoolExecutor(max_workers=bench.plan.clients, thread_name_prefix="visitor") as pool:
        connect_every_client(bench, pool)
        batch = Batch(bench, site, keys, pool)
        for _number, key in abba_rounds(bench.results, batch.take, f"{site.input.label}: warm pages", list(keys),
                                        bench.plan.requests, bench.plan.budget):
            batch.queued.append(key)
    return first  # the pool's threads have ended, and their connections with them


def push_commit(bench: Bench, site: Site, files: dict[str, str], message: str) -> None:
    """One commit of ``files`` in the site's clone, pushed over HTTPS through HAProxy with the owner's password."""
    url = bench.stack.url(site.repo + (".git" if site.input.vcs == "git" else ""), OWNER, PASSWORD)
    push_files(bench.runner, site.input.vcs, site.clone, url, files, message)


def cold(bench: Bench, site: Site, first: dict[str, Page]) -> None:
    """Per page kind, ``cold_runs`` times: a push, then the first anonymous view of the kind's first URL."""
    visitor, number = bench.visitors[ANONYMOUS], 0
    for _run in range(bench.plan.cold_runs):
        for kind, page in first.items():
            number += 1
            push_commit(bench, site, {f"bench/cold-{number}.txt": f"pushed before cold view {number}\n" * 20},
                        f"bench: cold view {number}")
            got = visitor.get(page.path)
            if got.status == 200:
                bench.cold.setdefault((site.input.label, kind), []).append(got.ms)
            else:
                bench.results.failures.append(f"{site.input.label}: cold {kind} {page.path} answered {got.status}")
    visitor.close()


# -- setting up -------------------------------------------------------------------


def add_site(bench: Bench, given: Input, work: Path) -> Site:
    """``given`` as a public repository of the owner (a copy of the input), with a client's clone of it into
    which the README and the ~500-line file are committed and pushed (:func:`~tests.bench.pages_site.sample_files`)."""
    repo = f"{OWNER}/{given.name}"
    bench.stack.hostd("repo", "create", repo, "--vcs", given.vcs, "--public")
    place, clone = bench.stack.settings.repo_root / OWNER, work / "clients" / given.name
    if given.vcs == "git":
        copy_git(given.source, place / f"{given.name}.git")
        bench.runner.git("clone", "-q", str(given.source), str(clone))
    else:
        copy_hg(given.source, place / given.name)
        bench.runner.hg("clone", "-q", str(given.source), str(clone))
    shape = git_shape(bench.runner, given.twin, "main")
    if given.vcs == "hg":  # the hg pages name the branch, whose tip has the tags commit and the sample files
        shape = replace(shape, ref="default")
    commits = shape.commits if given.vcs == "git" else hg_commits(given.source, shape.commits)
    site = Site(given, repo, shape, tuple(page_set(repo, shape, commits, bookmarks=given.vcs == "hg")), clone)
    push_commit(bench, site, sample_files(), "Add a README and a longer module")
    time.sleep(RACY_SECONDS + 0.5)  # pages computed within RACY_SECONDS of a ref change are not kept: not warm
    bench.sites.append(site)
    return site


def run(plan: Plan, work: Path, given: Sequence[Input], monitor: Monitor, cleanup: contextlib.ExitStack) -> Bench:
    """Start the stack (stopped by ``cleanup``), serve every input, measure each (a failing one is reported)."""
    (work / "stack").mkdir(parents=True)
    if PROJECT_ROOT / "var" in work.parents:
        traversable(work / "stack", PROJECT_ROOT / "var")
    with contextlib.redirect_stdout(sys.stderr):
        stack = start_stack(work / "stack")
    cleanup.callback(stop_stack, stack)
    stack.add_user(OWNER, PASSWORD)
    settings, ca = stack.settings, stack.settings.tls_dir / "ca.pem"
    anonymous = Visitor(settings.bind, settings.ports.https, ca)
    headers, how = sign_in(anonymous, OWNER, PASSWORD)
    visitors = {ANONYMOUS: anonymous, SIGNED_IN: Visitor(settings.bind, settings.ports.https, ca, headers)}
    bench = Bench(plan, stack, Runner(stack.clients, monitor), monitor, visitors, how)
    for item in given:
        print(f"-- pages: {item.label}", file=sys.stderr, flush=True)
        try:
            site = add_site(bench, item, work)
            cold(bench, site, warm(bench, site))
        except (BenchError, OSError, subprocess.SubprocessError, AssertionError) as error:
            traceback.print_exc(file=sys.stderr)
            bench.results.failures.append(f"{item.label}: {error}")
    return bench


# -- the report -------------------------------------------------------------------


def cells(values: Sequence[float]) -> list[object]:
    """p50, p95 and max (nearest rank), in ms; dashes without samples."""
    if not values:
        return ["—", "—", "—"]
    return [format_value(nearest_rank(values, share), "ms") for share in (0.5, 0.95, 1.0)]


def samples(results: Results, label: str, who: str, kind: str | None = None) -> list[float]:
    """Every sample of a repository and visitor, or of one page kind of them."""
    return [value for (metric, side), values in results.samples.items()
            if metric.group == label and side == who and kind in (None, metric.row) for value in values]


def site_table(bench: Bench, label: str) -> str:
    """Per page kind: URLs, p50/p95/max per visitor, the cold views' median and max; the overall row last."""
    rows: list[list[object]] = []
    for kind, shown in KINDS.items():
        timed = [samples(bench.results, label, who, kind) for who in VISITORS]
        first = bench.cold.get((label, kind), [])
        if not any(timed) and not first:
            continue
        rows.append([f"{kind}: {shown}", bench.urls.get((label, kind), 0), *cells(timed[0]), *cells(timed[1]),
                     format_value(statistics.median(first), "ms") if first else "—",
                     format_value(max(first), "ms") if first else "—", sum(map(len, timed))])
    overall = [samples(bench.results, label, who) for who in VISITORS]
    rows.append(["**all pages**", sum(n for (site, _k), n in bench.urls.items() if site == label),
                 *cells(overall[0]), *cells(overall[1]), "", "", sum(map(len, overall))])
    return markdown_table(["page", "URLs", "anon p50", "anon p95", "anon max", "signed-in p50", "signed-in p95",
                           "signed-in max", "cold median", "cold max", "requests"], rows)


def verdicts(bench: Bench) -> str:
    """Per repository and visitor: the p95 over all pages against the target, the slowest kind, the kinds over."""
    rows: list[list[object]] = []
    for site in bench.sites:
        for who in VISITORS:
            label, overall = site.input.label, samples(bench.results, site.input.label, who)
            p95s = {k: nearest_rank(got, 0.95) for k in KINDS if (got := samples(bench.results, label, who, k))}
            p95 = nearest_rank(overall, 0.95) if overall else None
            worst = max(p95s, key=p95s.__getitem__, default=None)
            over = ", ".join(kind for kind, value in p95s.items() if value >= TARGET_MS) or ("none" if p95s else "—")
            judged = ("not measured" if p95 is None else "PASS" if p95 < TARGET_MS else "FAIL") if site.input.gated \
                else "printed, not gated"
            rows.append([label, who, format_value(p95, "ms"),
                         "—" if worst is None else f"{worst}: {format_value(p95s[worst], 'ms')}", over,
                         f"< {TARGET_MS:g} ms" if site.input.gated else "—", judged])
    return markdown_table(["repository", "visitor", "p95, all pages (ms)", "slowest kind, p95 (ms)",
                           f"kinds with p95 ≥ {TARGET_MS:g} ms", "target", "verdict"], rows)


def describe(bench: Bench, command: str, quick: bool) -> list[str]:
    """How the run was made: machine, versions, stack, inputs and their page sets, what was timed, interference."""
    monitor, settings, plan = bench.monitor, bench.stack.settings, bench.plan
    share = monitor.total_others / monitor.total_wall if monitor.total_wall else 0.0
    lines = [
        f"Generated {time.strftime('%Y-%m-%d %H:%M %Z')} by `{command}`"
        f"{' (--quick: a development run, not the benchmark)' if quick else ''}.", "",
        f"- machine: {machine()}; load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"{version(['git', '--version'])}; {version([str(VENV_BIN / 'hg'), '--version'])}",
        f"- one stack as the end-to-end tests start it: HAProxy TLS → the web pool ({settings.workers} workers × "
        f"{settings.threads} threads), PostgreSQL, memcached; every repository public, owned by `{OWNER}`; signed "
        f"in with {bench.signed_in_how}",
        f"- warm: one untimed pass over every URL and visitor, then {plan.requests} rounds, each one GET of every "
        f"URL by each visitor in ABBA order, sent by {plan.clients} concurrent clients; each client keeps one "
        "HTTPS connection per visitor open (opened untimed), so a time is a request's, from sending it to the "
        "body's last byte; p50/p95/max are nearest-rank over every request of the kind",
        f"- cold: per page kind, {plan.cold_runs} time(s): a push of one new commit over HTTPS (git push or "
        "hg push through HAProxy), then the kind's first URL, once, anonymously",
        f"- interference: others took {monitor.total_others:.1f} core-s in {monitor.total_wall:.1f} s of timed "
        f"rounds ({share:.0%} of a core); {bench.disturbed} of {bench.rounds} rounds had over 10% of a core "
        "taken and were taken again (up to as many times as there are rounds)",
    ]
    for site in bench.sites:
        shape, built = site.shape, (read_stamp(site.input.twin) or {}).get("seconds")
        lines.append(f"- {site.input.label} (`{site.repo}`): {shape.history:,} commits on main, {shape.files:,} files "
                     f"at its tip, paths up to {shape.depth} deep (generated"
                     + (f" in {built['total']:.0f} s" if isinstance(built, dict) else "")
                     + ("; the hg conversion of the git input" if site.input.vcs == "hg" else "")
                     + f"); ref `{shape.ref}`; file pages: `{SAMPLE}` ({SAMPLE_LINES} lines, pushed with a README); "
                     f"directories {', '.join(f'`{d}`' for d in shape.dirs)}; commits (git ids: the tip, the newest "
                     f"merge, two older ones) {', '.join(c[:12] for c in shape.commits)}")
    return lines


def render(bench: Bench, preamble: Sequence[str]) -> str:
    parts = ["# Repository pages: page time through HAProxy (issue 21)", "", *preamble, ""]
    for site in bench.sites:
        parts += [f"## {site.input.label}", "", site_table(bench, site.input.label), ""]
    parts += [f"## Target: p95 page time < {TARGET_MS:g} ms warm, flask-sized", "", verdicts(bench), ""]
    for title, items in (("Remarks", bench.results.remarks), ("Failures", bench.results.failures)):
        parts += [f"## {title}", "", *(f"- {item}" for item in items), ""] if items else []
    return "\n".join(parts).rstrip() + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.pages_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="development run: 8 rounds, 1 cold view, no git/git")
    parser.add_argument("--requests", type=int, default=None, help="timed rounds, i.e. requests per URL and "
                                                                  "visitor (default 30)")
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (default 2)")
    parser.add_argument("--no-large", action="store_true", help="skip the git/git-sized repository")
    parser.add_argument("--no-hg", action="store_true", help="skip the hg repository")
    parser.add_argument("--inputs", type=Path, default=INPUTS, help="where the generated inputs are cached")
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown report here")
    args = parser.parse_args(list(argv))
    plan = PRESETS["quick" if args.quick else "full"]
    args.plan = replace(plan, requests=args.requests or plan.requests, clients=args.clients or plan.clients,
                        large=plan.large and not args.no_large, hg=not args.no_hg)
    args.argv = list(argv)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = " ".join(["python -m tests.bench.pages_bench", *args.argv])

    def measure(monitor: Monitor, cleanup: contextlib.ExitStack) -> tuple[str, list[str]]:
        given = inputs(args.inputs, hg=args.plan.hg, large=args.plan.large)
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
        cleanup.callback(shutil.rmtree, WORK, True)
        bench = run(args.plan, WORK, given, monitor, cleanup)
        return render(bench, describe(bench, command, args.quick)), bench.results.failures

    return run_in_cgroup("pages_bench", args.output, measure)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
