"""What a phase of ``make attack`` (:mod:`tests.chaos.attack`) measured, and
the report it prints: the legitimate clients' success and latency, where
their requests' time went according to HAProxy's log, which clients held the
pool threads, the attackers' outcomes, and PASS or MISS per target."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.chaos.attackers import Attack, Outcome, Plan, who

SUCCESS_TARGET = 1.0
P99_RATIO_TARGET = 2.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One legitimate operation: what, whether it worked, how long it took."""

    op: str
    ok: bool
    seconds: float


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    seconds: float
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    attack: Attack | None = None
    stalled_open: int = 0  # stalled connections open when the legitimate load started
    haproxy_conns: str = ""  # HAProxy's connection count and limit then
    took: float = 0.0  # the whole phase: ramp, load, the last operations, stopping the attack
    haproxy_log: list[str] = field(default_factory=list)
    pool_downs: list[str] = field(default_factory=list)

    @property
    def success(self) -> float:
        return sum(s.ok for s in self.samples) / len(self.samples) if self.samples else 0.0

    def latencies(self, op: str | None = None) -> list[float]:
        return sorted(s.seconds for s in self.samples if op is None or s.op == op)

    @property
    def outcomes(self) -> Counter[tuple[str, Outcome]]:
        return self.attack.outcomes if self.attack is not None else Counter()

    def served(self) -> int:
        return sum(n for (_, outcome), n in self.outcomes.items() if outcome is Outcome.SERVED)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (NaN for none)."""
    if not values:
        return math.nan
    return values[max(math.ceil(p / 100 * len(values)) - 1, 0)]


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.0f}ms"


def _legit_rows(phases: list[Phase]) -> Iterable[str]:
    ops = sorted({s.op for p in phases for s in p.samples})
    header = f"{'operation':<10}" + "".join(f" | {p.name:^30}" for p in phases)
    yield header
    yield f"{'':<10}" + "".join(f" | {'n':>5} {'ok':>7} {'p50':>7} {'p99':>8}" for _ in phases)
    for op in [*ops, None]:
        cells = []
        for p in phases:
            chosen = [s for s in p.samples if op is None or s.op == op]
            ok = sum(s.ok for s in chosen) / len(chosen) if chosen else 0.0
            lat = p.latencies(op)
            cells.append(f" | {len(chosen):>5} {ok:>7.1%} {_ms(percentile(lat, 50)):>7} {_ms(percentile(lat, 99)):>8}")
        yield f"{op or 'all':<10}" + "".join(cells)


def _attacker_rows(attack: Attack, seconds: float) -> Iterable[str]:
    names = sorted({name for name, _ in attack.outcomes})
    columns = list(Outcome)
    yield f"{'attacker':<38}{'per s':>6}" + "".join(f"{o.value:>10}" for o in columns) + "  answer p50  statuses"
    for name in names:
        rate = sum(n for (whose, _), n in attack.outcomes.items() if whose == name) / max(seconds, 1.0)
        answered = sorted(attack.answered.get(name, []))
        statuses = ", ".join(f"{status} x{n}" for (whose, status), n in
                             sorted(attack.statuses.items(), key=lambda item: -item[1]) if whose == name)
        yield (f"{name:<38}{rate:>6.1f}" + "".join(f"{attack.outcomes[name, o]:>10}" for o in columns)
               + f"  {_ms(percentile(answered, 50)):>10}  {statuses}")
    yield f"{'all':<44}" + "".join(f"{sum(n for (_, x), n in attack.outcomes.items() if x is o):>10}" for o in columns)


# The https frontend's log-format: "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST ..."
_TIMERS = re.compile(r"^127\.0\.0\.1:\d+ \[[^\]]+\] \S+ (\w+)/\S+ (-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/(-?\d+) ")


def _haproxy_rows(phases: list[Phase]) -> Iterable[str]:
    """Where the legitimate requests' time went, by backend, from HAProxy's timers:
    TR receiving the request, Tw queued for a pool thread, Tr the pool's response
    headers, Ta the whole request."""
    yield f"{'backend':<10}" + "".join(f" | {p.name:^44}" for p in phases)
    yield f"{'':<10}" + "".join(f" | {'requests':>8} {'TR p99':>8} {'Tw p99':>8} {'Tr p99':>8} {'Ta p99':>8}"
                                for _ in phases)
    timers = [[m for m in map(_TIMERS.match, p.haproxy_log) if m] for p in phases]
    for backend in sorted({m[1] for matches in timers for m in matches}):
        cells = []
        for matches in timers:
            mine = [m for m in matches if m[1] == backend]

            def timer(index: int, mine: list[re.Match[str]] = mine) -> list[float]:
                return sorted(int(m[index]) / 1000 for m in mine if int(m[index]) >= 0)

            cells.append(f" | {len(mine):>8} {_ms(percentile(timer(2), 99)):>8} {_ms(percentile(timer(3), 99)):>8} "
                         f"{_ms(percentile(timer(5), 99)):>8} {_ms(percentile(timer(6), 99)):>8}")
        yield f"{backend:<10}" + "".join(cells)


_SERVED_BY = re.compile(r"^(\S+):\d+ \[[^\]]+\] \S+ (\w+)/(\S+) (-?\d+)/(-?\d+)/-?\d+/-?\d+/(-?\d+) ")


def pool_seconds(phase: Phase) -> dict[str, dict[str, float]]:
    """Seconds of pool threads each kind of client held (Ta - TR - Tw of each
    request a server took, from HAProxy's log), by backend: who kept the pools busy."""
    held: dict[str, dict[str, float]] = {}
    for match in map(_SERVED_BY.match, phase.haproxy_log):
        if match is None or match[3].startswith("<"):
            continue
        received, queued, total = int(match[4]), int(match[5]), int(match[6])
        if min(received, queued, total) >= 0:
            pool, client = held.setdefault(match[2], {}), who(match[1])
            pool[client] = pool.get(client, 0.0) + (total - received - queued) / 1000
    return held


def verdict(phases: list[Phase]) -> tuple[bool, list[str]]:
    """Whether the targets are met, and one line per target."""
    attacked = phases[-1]
    lines, met = [], True
    for phase in phases:
        ok = phase.success >= SUCCESS_TARGET and bool(phase.samples)
        met &= ok
        lines.append(f"{phase.name}: legitimate success {phase.success:.1%} (target 100%): {'PASS' if ok else 'MISS'}")
    if len(phases) == 2:
        base, under = percentile(phases[0].latencies(), 99), percentile(attacked.latencies(), 99)
        ratio = under / base if base > 0 else math.inf
        ok = ratio <= P99_RATIO_TARGET
        met &= ok
        lines.append(f"p99 under attack / baseline: {_ms(under)} / {_ms(base)} = {ratio:.2f}x "
                     f"(target <= {P99_RATIO_TARGET:g}x): {'PASS' if ok else 'MISS'}")
    served = attacked.served()
    met &= served == 0
    lines.append(f"attacker attempts SERVED: {served} (target 0): {'PASS' if served == 0 else 'MISS'}")
    return met, lines


def report(phases: list[Phase], plan: Plan, clients: int) -> str:
    """The whole printed report."""
    attacked = phases[-1]
    took = ", ".join(f"{p.name} {p.took:.0f} s" for p in phases)
    out = [f"== make attack: {clients} legitimate clients, {attacked.seconds:g} s per phase ({took}) ==",
           f"attack: {plan.one_address_connections} connections from one address "
           f"({plan.one_address_h1} stalled bodies, {plan.one_address_trickle} trickled headers, "
           f"{plan.one_address_h2} HTTP/2 x {plan.h2_streams} stalled streams), "
           f"{plan.many_addresses} addresses x {plan.per_address} stalled, "
           f"password guessing at {plan.guess_rate:g}/s from {plan.guess_addresses} addresses, "
           f"gzip bombs of {plan.bomb_inflated >> 20} MiB from {plan.bomb_addresses}",
           f"stalled connections open when the legitimate load started: {attacked.stalled_open} "
           f"(HAProxy connections: {attacked.haproxy_conns})",
           "", "legitimate clients:", *_legit_rows(phases),
           "", "their requests in HAProxy's log (TR: receiving the request, Tw: queued, Tr: the pool's response "
           "headers, Ta: all of it):",
           *_haproxy_rows(phases)]
    if attacked.attack is not None:
        out += ["", "attackers: attempts by outcome (held: still open and unanswered when the attack stopped; "
                "answer: from the attacker's last byte to the answer or the close)",
                *_attacker_rows(attacked.attack, attacked.took)]
        if attacked.attack.errors:
            out.append("attacker-side errors: "
                       + ", ".join(f"{k} x{v}" for k, v in attacked.attack.errors.most_common()))
    for phase in phases:
        for backend, held in sorted(pool_seconds(phase).items()):
            out.append(f"{phase.name}: {backend} pool threads held (s): "
                       + ", ".join(f"{name} {seconds:.0f}" for name, seconds in
                                   sorted(held.items(), key=lambda item: -item[1])))
    for phase in phases:
        if phase.pool_downs:
            out.append(f"{phase.name}: HAProxy marked a pool server DOWN {len(phase.pool_downs)} times, first: "
                       f"{phase.pool_downs[0][:160]}")
        if phase.errors:
            distinct = Counter(e.split(": ", 1)[-1] for e in phase.errors)
            out.append(f"{phase.name}: {len(phase.errors)} legitimate errors; most common: "
                       + "; ".join(f"{k[:140]} x{v}" for k, v in distinct.most_common(4)))
    met, lines = verdict(phases)
    out += ["", *lines, f"RESULT: {'PASS' if met else 'MISS'}"]
    return "\n".join(out)
