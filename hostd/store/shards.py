"""Storage shards: the hosts repositories live on, and which repository is where.

A shard is a repository directory with git and hg pools next to it. The
``shards`` table lists them; each repository's row names its shard
(``repos.shard``). New repositories are placed by weight
(:func:`hostd.store.accounts.place`); ``drain`` stops a shard from taking
new ones. The load balancers route by :meth:`Shards.routes`
(``hostd routes sync``)::

    shards = Shards(db)
    shards.add("s2", weight=2, git=("10.0.0.12:8101",), hg=("10.0.0.12:8102",))
    shards.set_weight("default", 1)
    shards.drain("default")
    for ref, shard in shards.routes(): ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from hostd.names import RepoName, parse_host_port
from hostd.store.accounts import AccountError
from hostd.store.database import Database


@dataclass(frozen=True, slots=True)
class Shard:
    """One row of ``shards``, with how many repositories it holds."""

    name: str
    weight: int
    draining: bool
    #: Where a load balancer reaches the shard's pools (``host:port``).
    git_servers: tuple[str, ...]
    hg_servers: tuple[str, ...]
    repositories: int

    @property
    def state(self) -> str:
        """What ``hostd shard list`` says of it: ``draining`` takes no new repositories."""
        return "draining" if self.draining else "active"


class Shards:
    """The ``shards`` table, and the repository-to-shard routes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[Shard]:
        return self._select("", ())

    def get(self, name: str) -> Shard:
        found = self._select("WHERE s.name = %s", (name,))
        if not found:
            raise AccountError(f"no such shard: {name}")
        return found[0]

    def _select(self, where: str, params: tuple[object, ...]) -> list[Shard]:
        """The shards ``where`` picks, by name, each with its count of repositories."""
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT s.name, s.weight, s.draining, s.git_servers, s.hg_servers, count(r.name) AS repositories"
                f" FROM shards AS s LEFT JOIN repos AS r ON r.shard = s.name {where}"
                " GROUP BY s.name ORDER BY s.name", params
            ).fetchall()
        return [_shard(row) for row in rows]

    def add(self, name: str, *, weight: int = 1, git: tuple[str, ...] = (), hg: tuple[str, ...] = ()) -> Shard:
        """Register a shard; it takes new repositories at once unless its weight is 0."""
        _check_weight(weight)
        _check_servers(git + hg)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM shards WHERE name = %s", (name,)).fetchone():
                raise AccountError(f"shard already exists: {name}")
            try:
                conn.execute(
                    "INSERT INTO shards (name, weight, git_servers, hg_servers, created) VALUES (%s, %s, %s, %s, %s)",
                    (name, weight, list(git), list(hg), time.time()),
                )
            except psycopg.errors.CheckViolation:
                # The table's CHECK is the rule (hostd.settings.is_shard_name says the same).
                raise AccountError(f"invalid shard name: {name!r} (1-32 of a-z, 0-9 and -, starting with a letter)"
                                   ) from None
        return self.get(name)

    def ensure(self, name: str) -> bool:
        """Register ``name`` with weight 1 unless it exists: a host serving a shard
        the database does not know yet (a new installation). Whether it was added."""
        with self.db.transaction() as conn:
            cur = conn.execute("INSERT INTO shards (name, created) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                               (name, time.time()))
            return cur.rowcount == 1

    def set_weight(self, name: str, weight: int) -> Shard:
        """Change how many new repositories the shard gets, relative to the others."""
        _check_weight(weight)
        self._update(name, "weight = %s", weight)
        return self.get(name)

    def drain(self, name: str, *, draining: bool = True) -> Shard:
        """Stop (or, ``draining=False``, resume) placing new repositories on the shard.

        Its repositories stay and are served; ``hostd repo move`` takes them off.
        """
        self._update(name, "draining = %s", draining)
        return self.get(name)

    def set_servers(self, name: str, *, git: tuple[str, ...], hg: tuple[str, ...]) -> Shard:
        """Where load balancers reach the shard's git and hg pools."""
        _check_servers(git + hg)
        self._update(name, "git_servers = %s, hg_servers = %s", list(git), list(hg))
        return self.get(name)

    def routes(self) -> list[tuple[RepoName, str]]:
        """Every repository and its shard, in name order."""
        with self.db.connection() as conn:
            rows = conn.execute("SELECT owner, name, shard FROM repos ORDER BY owner, name").fetchall()
        return [(RepoName(row["owner"], row["name"]), row["shard"]) for row in rows]

    def _update(self, name: str, assignments: str, *values: object) -> None:
        with self.db.transaction() as conn:
            cur = conn.execute(f"UPDATE shards SET {assignments} WHERE name = %s", (*values, name))
            if cur.rowcount == 0:
                raise AccountError(f"no such shard: {name}")


def _check_weight(weight: int) -> None:
    if not 0 <= weight <= 1000:
        raise AccountError(f"weight must be 0-1000, not {weight}")


def _check_servers(servers: tuple[str, ...]) -> None:
    """``host:port`` each: they become HAProxy ``server`` lines, so nothing else may pass."""
    for server in servers:
        if parse_host_port(server) is None:
            raise AccountError(f"server {server!r} is not host:port")


def _shard(row: dict[str, Any]) -> Shard:
    return Shard(row["name"], row["weight"], bool(row["draining"]), tuple(row["git_servers"]),
                 tuple(row["hg_servers"]), row["repositories"])
