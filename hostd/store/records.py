"""What request handling reads from the database, cached in the process and kept true by the change feed.

A warm git clone, hg clone or push asks the same four questions on every
request: the user's record and the token's (:class:`singlemalt.CredentialStore`),
the repository's row and the user's grant on it. :class:`Records` answers
them from memory, so a warm request makes no query at all, and forgets an
answer as soon as :class:`~hostd.store.changes.ChangeFeed` reports a change
to its table: a password change, a deleted user, a revoked token or a
changed grant counts in every worker of every pool at once::

    records = Records(Accounts(db), feed)
    Verifier(records, ...)                 # user(), token()
    RepositoryPolicy(records, vcs="git")   # repo(), level()

The policy, entry by entry:

* Feed connected: an entry younger than ``lifetime`` is served; a miss (or an
  older entry) is read from the database and kept. Negative answers (no such
  user) are kept too, or a stranger guessing names would cost a query each.
* Feed not connected: changes may be going unheard, so nothing is served
  from memory while the database answers: every lookup reads through (and
  refreshes the entry). After it reconnects, every entry is read again once
  before it is served (notifications sent meanwhile were lost).
* The database unreachable (:class:`DatabaseUnavailable`): an entry younger
  than ``lifetime`` is served anyway (stale-if-error); else
  :class:`RecordsUnavailable` is raised, which singlemalt answers with a
  503 (it is a :class:`singlemalt.Unavailable`). This is how clones and
  cached logins outlive a PostgreSQL outage of up to ``lifetime`` seconds.
  Pushes must not: the repository policy refuses writes while the database
  is unreachable, whatever is cached (:mod:`hostd.guard.policy`).

The classic race: a read that started before an invalidation and finishes
after it would store what the database said *before* the change. A
generation counter, bumped by every invalidation, guards it: a result is
kept only if no invalidation happened while it was being read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from hostd.names import RepoName, normalize_name
from hostd.store.accounts import Accounts, Level, Repo, access_level
from hostd.store.database import DatabaseUnavailable
from singlemalt import TokenRecord, Unavailable, UserRecord

log = logging.getLogger(__name__)

#: Seconds an entry may be served: while the feed is connected, the longest
#: a lost notification could go unnoticed; while the database is down, how
#: long cached logins and clones keep working.
LIFETIME: Final = 300.0
#: Entries per kind (users, tokens, repositories, grants); the least recently
#: used go first. 10 000 users' records are a few MB.
MAX_ENTRIES: Final = 10_000

#: Which cached kinds each table's changes invalidate. A token's record is
#: read joined with its owner's row, so a change to users forgets tokens too;
#: deleting a user or a repository deletes its grants.
DEPENDS: Final = {
    "users": ("user", "token", "grant"),
    "tokens": ("token",),
    "repos": ("repo", "grant"),
    "grants": ("grant",),
    # Nothing is cached from it; without an entry it would forget everything.
    "shards": (),
}
KINDS: Final = ("user", "token", "repo", "grant")

UNAVAILABLE: Final = "hostd's database is unavailable; try again shortly"

T = TypeVar("T")


class RecordsUnavailable(DatabaseUnavailable, Unavailable):
    """The database is unreachable and nothing usable is cached: singlemalt answers 503."""


class Freshness(Protocol):
    """Whether changes are being heard now (:class:`~hostd.store.changes.ChangeFeed`)."""

    @property
    def connected(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    value: object
    at: float


class Records:
    """Cached users, tokens, repositories and grants; a :class:`singlemalt.CredentialStore`.

    ``accounts`` is read on a miss; ``feed`` says whether the cache can be
    trusted (subscribe :meth:`invalidate` to it); ``lifetime`` and
    ``max_entries`` as :data:`LIFETIME` and :data:`MAX_ENTRIES`.
    Thread-safe: one instance serves every thread of a worker.
    """

    def __init__(
        self,
        accounts: Accounts,
        feed: Freshness,
        *,
        lifetime: float = LIFETIME,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.accounts = accounts
        self._feed = feed
        self._lifetime = lifetime
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._generation = 0
        # Entries stored before this time are not served fresh (see invalidate(None)).
        self._suspect_before = float("-inf")
        self._tables: dict[str, OrderedDict[Hashable, _Entry]] = {kind: OrderedDict() for kind in KINDS}
        self.hits = 0
        self.reads = 0
        self.stale = 0

    def __repr__(self) -> str:
        return f"<Records lifetime={self._lifetime:g}s>"

    # -- the singlemalt.CredentialStore protocol ------------------------------

    def user(self, username: str) -> UserRecord | None:
        """The user's record (None: no such user), as :meth:`Accounts.user`."""
        name = normalize_name(username)
        if name is None:
            return None
        return self._get("user", name, lambda: self.accounts.user(name), UserRecord)

    def token(self, token_id: str) -> TokenRecord | None:
        """The token's record (None: no such token), as :meth:`Accounts.token`."""
        return self._get("token", token_id, lambda: self.accounts.token(token_id), TokenRecord)

    # -- what the repository policy reads -------------------------------------

    def repo(self, ref: RepoName) -> Repo | None:
        """The repository's row (None: no such repository), as :meth:`Accounts.repo`."""
        return self._get("repo", ref, lambda: self.accounts.repo(ref), Repo)

    def level(self, username: str | None, repo: Repo) -> Level:
        """The access level of a user (None: anonymous) on a repository, as :meth:`Accounts.level`."""
        # What is cached is the grant alone, so a change to the repository's
        # public flag never needs the grants forgotten.
        def granted(name: str) -> Level:
            level = self._get("grant", (name, repo.owner, repo.name),
                              lambda: self.accounts.grant_level(name, repo.ref), Level)
            assert level is not None
            return level

        return access_level(username, repo, granted)

    # -- invalidation ------------------------------------------------------------

    def invalidate(self, table: str | None) -> None:
        """Forget what was read from ``table`` (a table not known here: everything).

        None is what the feed says after a (re)connect: changes may have gone
        unheard, none is known. Every entry is then read again before it is
        served, but kept meanwhile for stale-if-error: right after PostgreSQL
        restarts, the pool may not have a connection yet, and a request that
        was served from the cache during the outage must not get a 503 now.
        (An entry a missed change made wrong could be served that way only if
        the database failed again before it was re-read, and only within its
        ``lifetime``: the same bound as during the outage itself.)
        """
        with self._lock:
            self._generation += 1
            if table is None:
                self._suspect_before = self._clock()
                return
            for kind in DEPENDS.get(table, KINDS):
                self._tables[kind].clear()

    def _get(self, kind: str, key: Hashable, fetch: Callable[[], object], expected: type[T]) -> T | None:
        table = self._tables[kind]
        trusted = self._feed.connected
        with self._lock:
            entry = table.get(key)
            if (entry is not None and trusted and entry.at >= self._suspect_before
                    and self._clock() - entry.at < self._lifetime):
                table.move_to_end(key)
                self.hits += 1
                return _typed(entry.value, expected)
            generation = self._generation
            self.reads += 1
        try:
            value = fetch()
        except DatabaseUnavailable as error:
            with self._lock:
                entry = table.get(key)
                if entry is None or self._clock() - entry.at >= self._lifetime:
                    raise RecordsUnavailable(UNAVAILABLE) from error
                self.stale += 1
            log.debug("database unavailable: serving the cached %s %r", kind, key)
            return _typed(entry.value, expected)
        with self._lock:
            # Security: an invalidation while this read ran means the value
            # may predate a change (a revoked token, a new password); it is
            # returned to this request, which started before the change, but
            # never kept for the next one.
            if generation == self._generation:
                table[key] = _Entry(value, self._clock())
                table.move_to_end(key)
                while len(table) > self._max_entries:
                    table.popitem(last=False)
        return _typed(value, expected)


def _typed(value: object, expected: type[T]) -> T | None:
    if value is None or isinstance(value, expected):
        return value
    raise TypeError(f"cached {type(value).__name__}, expected {expected.__name__}")
