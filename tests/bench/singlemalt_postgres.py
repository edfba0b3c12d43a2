"""Part A, on hostd's own store: warm authentication when the records live in PostgreSQL (issue 17).

Part A proper (:mod:`tests.bench.singlemalt_inprocess`) times singlemalt
over a dict-backed credential store, which says what the middleware costs
but not what hostd's store adds.  Here the collaborators are the ones a pool
builds, :func:`hostd.serve.wsgi.build_services` itself (the verifier over
hostd's credential store on a real :class:`~hostd.store.database.Database`,
the login throttle, the shared memcached), with the git pool's repository
policy (:func:`hostd.serve.wsgi.repository_policy`) deciding, around the same
trivial app; whatever hostd puts between the verifier and the database (a
record cache, say) is therefore measured too.  The database is a fresh one
on the tests' PostgreSQL (:mod:`tests.pg`: a throwaway cluster, or the
server ``HOSTD_DATABASE_URL`` names), with ``pg_stat_statements`` counting
the statements each request makes.

Two callers: the repository's owner (the policy needs the user and the
repository) and a collaborator with a read grant (and the grant); and, as a
counterfactual, both again with the verifier and the policy reading the
database on every request (:func:`uncached`), which is what the record cache
saves.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostd.guard.policy import RepositoryPolicy
from hostd.names import RepoName
from hostd.serve.wsgi import REALM, Services, build_services, repository_policy
from hostd.settings import Settings
from hostd.store.accounts import Level
from singlemalt import ProxyTrust, SafeMemcache, SingleMalt, VerificationCache, Verifier, classify_git
from tests import pg
from tests.bench import pgstats
from tests.bench.common import Memcached, Stats, markdown_table
from tests.bench.singlemalt_inprocess import (
    PASSWORD,
    USER,
    WARMUP,
    Limits,
    call,
    fresh,
    hello,
    measure,
    production_logging,
    request,
)

COLLABORATOR = "bob"
REPOSITORY = RepoName(USER, "private")
OWNER_CASE = "Basic auth, warm cache, hostd's store on PostgreSQL (owner)"
UNCACHED_CASE = "  same, owner, without the record cache"


@dataclass(frozen=True, slots=True)
class Result:
    """One measured case: latency, slow verifications and database statements per request."""

    case: str
    stats: Stats
    slow_per_request: float
    #: None when pg_stat_statements cannot count on this server.
    queries_per_request: float | None
    statements: tuple[pgstats.Statement, ...]
    note: str = ""


@contextlib.contextmanager
def hostd_services(memcached: Memcached) -> Iterator[Services]:
    """A pool's services over a fresh, migrated database: the owner, a collaborator, one private repository."""
    with tempfile.TemporaryDirectory(prefix="singlemalt-bench-pg-") as root:
        settings = Settings(data_dir=Path(root), database_url=pg.new_database(),
                            memcached_nodes=(memcached.address,))
        settings.secret_file.write_bytes(os.urandom(32))
        services = build_services(settings)
        try:
            accounts = services.accounts
            accounts.add_user(USER, PASSWORD)
            accounts.add_user(COLLABORATOR, PASSWORD)
            accounts.add_repo(REPOSITORY, "git", public=False)
            accounts.grant(COLLABORATOR, REPOSITORY, Level.READ)
            # A pool's feed starts on its first request; waiting here keeps
            # the warm-up from racing it (an unconnected feed caches nothing).
            services.feed.wait_connected(10.0)
            yield services
        finally:
            services.feed.close()
            services.accounts.db.close()


def guarded(services: Services) -> tuple[SingleMalt, Verifier]:
    """``SingleMalt`` around the trivial app, wired as ``hostd.serve.wsgi`` wires the git pool's."""
    return SingleMalt(hello, classify=classify_git, verifier=services.verifier,
                      authorize=repository_policy(services, "git"), realm=REALM,
                      throttle=services.throttle, proxy=ProxyTrust(["127.0.0.1", "::1"])), services.verifier


def uncached(services: Services) -> tuple[SingleMalt, Verifier]:
    """The counterfactual: the same, but the verifier and the policy read hostd's database on every request.

    What issue 17's record cache saves: the verifier and the repository
    policy over :class:`~hostd.store.accounts.Accounts` itself (a query per
    record), as the pools were wired before it.
    """
    settings = services.settings
    verifier = Verifier(services.accounts, cache=VerificationCache(SafeMemcache(list(settings.memcached)),
                                                                   settings.secret_file.read_bytes()))
    return SingleMalt(hello, classify=classify_git, verifier=verifier,
                      authorize=RepositoryPolicy(services.accounts, vcs="git"), realm=REALM,
                      throttle=services.throttle, proxy=ProxyTrust(["127.0.0.1", "::1"])), verifier


def case(name: str, wired: tuple[SingleMalt, Verifier], template: dict[str, Any],
         counted: Callable[[], list[pgstats.Statement]] | None, limits: Limits, note: str) -> Result:
    """Warm up, then measure one case and the statements it made."""
    app, verifier = wired
    for _ in range(min(WARMUP, limits.requests)):
        call(app, fresh(template))
    slow = verifier.slow_verifications
    before = counted() if counted is not None else []
    samples = measure(app, template, count=limits.requests, seconds=limits.seconds)
    after = counted() if counted is not None else []
    statements = difference(after, before)
    n = len(samples)
    return Result(name, Stats.of(samples), (verifier.slow_verifications - slow) / n,
                  None if counted is None else pgstats.calls(statements) / n, tuple(statements), note)


def difference(after: Sequence[pgstats.Statement], before: Sequence[pgstats.Statement]) -> list[pgstats.Statement]:
    """The calls of each statement between two readings."""
    earlier = {s.query: s.calls for s in before}
    return [pgstats.Statement(s.query, s.calls - earlier.get(s.query, 0)) for s in after
            if s.calls > earlier.get(s.query, 0)]


def run(limits: Limits | None = None) -> tuple[list[Result], str | None]:
    """Both callers' cases, and why statements could not be counted (None when they were)."""
    limits = limits or Limits()
    with production_logging(), Memcached() as memcached, hostd_services(memcached) as services:
        stats = pgstats.StatementStats(services.accounts.db.url)
        problem = stats.prepare()
        counted = stats.read if problem is None else None
        path = f"/{REPOSITORY.owner}/{REPOSITORY.name}.git/info/refs"
        owner, collaborator = request(path, password=PASSWORD), request(path, password=PASSWORD, user=COLLABORATOR)
        results = [
            case(OWNER_CASE, guarded(services), owner, counted, limits,
                 "hostd's build_services and the git pool's repository policy: the user and the repository"),
            case("  same, a collaborator with a read grant", guarded(services), collaborator, counted, limits,
                 "the user, the repository and the grant"),
            case(UNCACHED_CASE, uncached(services), owner, counted, limits,
                 "counterfactual: Accounts read on every request, as before the record cache"),
            case("  same, a collaborator with a read grant, no record cache", uncached(services), collaborator,
                 counted, limits, "counterfactual"),
        ]
    return results, problem


def counterfactual(result: Result) -> bool:
    """Whether a row shows what the record cache saves (not hostd as it is wired)."""
    return result.note.startswith("counterfactual")


def table(results: Sequence[Result], baseline_us: float) -> str:
    """Markdown rows: latency, overhead over part A's bare app, slow hashes and queries per request."""
    rows = [[r.case.replace("  ", "↳ "), r.stats.count, r.stats.median_us, r.stats.p95_us, r.stats.max_us,
             r.stats.median_us - baseline_us, f"{r.slow_per_request:.2f}",
             "—" if r.queries_per_request is None else f"{r.queries_per_request:.2f}",
             pgstats.describe(r.statements, width=60), r.note] for r in results]
    return markdown_table(["case", "requests", "median µs", "p95 µs", "max µs", "overhead µs (median − bare)",
                           "slow hashes / req", "DB queries / req", "statements (all requests)", "note"], rows)
