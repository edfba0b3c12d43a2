"""Storage shards: the hosts repositories live on, and which repository is where.

A shard is a repository directory with git and hg pools next to it. The
``shards`` table lists them; each repository's row names its shard
(``repos.shard``). New repositories are placed by weight
(:func:`hostd.store.accounts.place`); ``drain`` stops a shard from taking
new ones. The load balancers route by :meth:`Shards.routes`
(``hostd routes sync``)::

    shards = Shards(db)
    shards.add("s2", weight=2, git=("10.0.0.12:8101",), hg=("10.0.0.12:8102",))
    shards.add_server("s2", "git", "git2", "10.0.0.13:8101")     # hostd pool add git-s2 git2 ...
    shards.remove_server("s2", "git", "git1")                      # hostd pool remove git-s2 git1
    shards.set_weight("default", 1)
    shards.drain("default")
    for ref, shard in shards.routes(): ...

Each server of a shard's git or hg pool has a name, the one HAProxy knows it
by in every load balancer (backend ``git-s2``, server ``git2``): stored
beside its address (``git_names``, ``hg_names``, migration 0005), so it
never changes while the server is listed. Naming rule: the operator names a
server added alone (:meth:`Shards.add_server`); a server listed by address
(:meth:`Shards.add`, :meth:`Shards.set_servers`) keeps the name it has if its
address was listed already, else it is named ``<pool>N``, N one above every
number the pool's names use now, so a name just given up is not handed to
another address while load balancers may still be draining the old one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from hostd.names import RepoName, is_server_name, parse_host_port
from hostd.store.accounts import AccountError
from hostd.store.database import Database

#: The pools of a shard that load balancers reach: each has a list of servers.
POOLS: Final = ("git", "hg")
#: What :func:`_shard` reads of a row of ``shards AS s`` (with a ``repositories`` count).
_COLUMNS: Final = "s.name, s.weight, s.draining, s.git_servers, s.hg_servers, s.git_names, s.hg_names"


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
    #: The name of each server, in the same order (``git1``, ``git2``...).
    git_names: tuple[str, ...] = ()
    hg_names: tuple[str, ...] = ()

    def servers(self, pool: str) -> tuple[tuple[str, str], ...]:
        """``(name, address)`` of each server of the shard's ``git`` or ``hg`` pool, in order."""
        if pool == "git":
            return tuple(zip(self.git_names, self.git_servers, strict=True))
        if pool == "hg":
            return tuple(zip(self.hg_names, self.hg_servers, strict=True))
        raise ValueError(f"{pool!r} is not a shard pool (git, hg)")

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
                f"SELECT {_COLUMNS}, count(r.name) AS repositories"
                f" FROM shards AS s LEFT JOIN repos AS r ON r.shard = s.name {where}"
                " GROUP BY s.name ORDER BY s.name", params
            ).fetchall()
        return [_shard(row) for row in rows]

    def add(self, name: str, *, weight: int = 1, git: tuple[str, ...] = (), hg: tuple[str, ...] = ()) -> Shard:
        """Register a shard; it takes new repositories at once unless its weight is 0."""
        _check_weight(weight)
        _check_servers(git + hg)
        named = {pool: _named(pool, (), servers) for pool, servers in (("git", git), ("hg", hg))}
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM shards WHERE name = %s", (name,)).fetchone():
                raise AccountError(f"shard already exists: {name}")
            try:
                conn.execute(
                    "INSERT INTO shards (name, weight, git_names, git_servers, hg_names, hg_servers, created)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (name, weight, *_columns(named["git"]), *_columns(named["hg"]), time.time()),
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
        """Where load balancers reach the shard's git and hg pools: the whole list of each.

        An address listed already keeps its server's name; a new one is
        named by the rule in the module's docstring. Every load balancer's
        route follower adds the new servers and drains and deletes the ones
        left out (:mod:`hostd.ops.shardpools`).
        """
        _check_servers(git + hg)
        with self.db.transaction() as conn:
            current = _locked(conn, name)
            named = {pool: _named(pool, current.servers(pool), servers) for pool, servers in (("git", git), ("hg", hg))}
            conn.execute("UPDATE shards SET git_names = %s, git_servers = %s, hg_names = %s, hg_servers = %s"
                         " WHERE name = %s", (*_columns(named["git"]), *_columns(named["hg"]), name))
        return self.get(name)

    def add_server(self, shard: str, pool: str, name: str, address: str) -> Shard:
        """Add server ``name`` at ``address`` (``host:port``) to the shard's ``git`` or ``hg`` pool.

        AccountError when the pool has a server by that name or at that
        address already, or on an invalid name or address.
        """
        _check_pool(pool)
        if not is_server_name(name):
            raise AccountError(f"invalid server name {name!r}: 1-64 of letters, digits, '.', '_', '-'")
        _check_servers((address,))
        with self.db.transaction() as conn:
            servers = _locked(conn, shard).servers(pool)
            for known, at in servers:
                if known == name or at == address:
                    raise AccountError(f"shard {shard}'s {pool} pool has {known} at {at} already")
            self._set_pool(conn, shard, pool, (*servers, (name, address)))
        return self.get(shard)

    def remove_server(self, shard: str, pool: str, name: str) -> Shard:
        """Take server ``name`` out of the shard's ``git`` or ``hg`` pool.

        AccountError when there is no such server, or when it is the pool's
        last: every request for the shard's repositories would get a 503
        (``hostd shard servers`` empties a pool on purpose).
        """
        _check_pool(pool)
        with self.db.transaction() as conn:
            servers = _locked(conn, shard).servers(pool)
            kept = tuple((known, at) for known, at in servers if known != name)
            if len(kept) == len(servers):
                raise AccountError(f"shard {shard}'s {pool} pool has no server {name}")
            if not kept:
                raise AccountError(f"refusing to remove {name}: it is the last server of shard {shard}'s {pool} "
                                   f"pool (`hostd shard servers {shard}` empties it on purpose)")
            self._set_pool(conn, shard, pool, kept)
        return self.get(shard)

    @staticmethod
    def _set_pool(conn: psycopg.Connection[Any], shard: str, pool: str,
                  servers: tuple[tuple[str, str], ...]) -> None:
        # The column names come from POOLS (_check_pool), never from the caller's text.
        conn.execute(f"UPDATE shards SET {pool}_names = %s, {pool}_servers = %s WHERE name = %s",
                     (*_columns(servers), shard))

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


def _check_pool(pool: str) -> None:
    if pool not in POOLS:
        raise AccountError(f"{pool!r} is not a shard pool ({', '.join(POOLS)})")


def _locked(conn: psycopg.Connection[Any], name: str) -> Shard:
    """The shard's row, locked until the transaction ends (its repository count is not read: 0)."""
    row = conn.execute(f"SELECT {_COLUMNS}, 0 AS repositories FROM shards AS s WHERE s.name = %s FOR UPDATE",
                       (name,)).fetchone()
    if row is None:
        raise AccountError(f"no such shard: {name}")
    return _shard(row)


def _named(pool: str, current: tuple[tuple[str, str], ...], addresses: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``addresses`` as the pool's new ``(name, address)`` list, by the naming rule of the module's docstring."""
    if len(set(addresses)) != len(addresses):
        raise AccountError(f"a {pool} server is listed twice: {', '.join(addresses)}")
    names = {address: name for name, address in current}
    numbered = (re.fullmatch(re.escape(pool) + r"([0-9]{1,9})", name) for name, _ in current)
    top = max((int(match[1]) for match in numbered if match), default=0)
    named = []
    for address in addresses:
        if address not in names:
            top += 1
            names[address] = f"{pool}{top}"
        named.append((names[address], address))
    return tuple(named)


def _columns(servers: tuple[tuple[str, str], ...]) -> tuple[list[str], list[str]]:
    """The names and the addresses of ``(name, address)`` pairs: a pool's two array columns."""
    return [name for name, _ in servers], [address for _, address in servers]


def _check_servers(servers: tuple[str, ...]) -> None:
    """``host:port`` each: they become HAProxy ``server`` lines, so nothing else may pass."""
    for server in servers:
        if parse_host_port(server) is None:
            raise AccountError(f"server {server!r} is not host:port")


def _shard(row: dict[str, Any]) -> Shard:
    return Shard(row["name"], row["weight"], bool(row["draining"]), tuple(row["git_servers"]),
                 tuple(row["hg_servers"]), row["repositories"], tuple(row["git_names"]), tuple(row["hg_names"]))
