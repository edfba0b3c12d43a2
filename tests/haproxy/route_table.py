"""Parse ``haproxy/routes.txt``, the table of which pool each request must reach.

The format is described at the top of ``routes.txt`` itself::

    @route dana/proj s2
    git-cli-refs   GET /alice/proj.git/info/refs?service=git-upload-pack  -> git
        User-Agent: git/2.39.5
    shard-refs     GET /Dana/proj.git/info/refs?service=git-upload-pack  -> git@s2

A malformed table raises :class:`RouteTableError` naming the line: a table that
silently drops a case would let a routing rule go untested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hostd.names import RepoName, parse_repo_name
from hostd.settings import DEFAULT_SHARD, is_shard_name

POOLS = ("git", "hg", "web")
#: The pools that have a backend per storage shard.
SHARDED_POOLS = ("git", "hg")
#: The shard the table's load balancer is on: its home backends are git, hg, web.
HOME_SHARD = DEFAULT_SHARD

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CASE = re.compile(
    rf"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)\s+(?P<method>{_TOKEN})\s+(?P<target>\S+)"
    r"\s+->\s+(?P<pool>\S+)$"
)
_HEADER = re.compile(rf"^\s+(?P<name>{_TOKEN}):[ \t]*(?P<value>.*)$")
_ROUTE = re.compile(r"^@route\s+(?P<repo>\S+)\s+(?P<shard>\S+)$")


class RouteTableError(ValueError):
    """The route table is malformed; the message names the line."""


@dataclass(frozen=True, slots=True)
class RouteCase:
    """One request and where it must land: ``git``, ``hg``, ``web`` (home) or ``<pool>@<shard>``."""

    name: str
    method: str
    target: str
    expected: str
    headers: tuple[tuple[str, str], ...]
    line: int

    @property
    def pool(self) -> str:
        """The pool expected, whatever its shard."""
        return self.expected.partition("@")[0]

    @property
    def shard(self) -> str:
        """The shard whose backend is expected (the home shard for a plain pool)."""
        return self.expected.partition("@")[2] or HOME_SHARD

    @property
    def authority(self) -> str | None:
        """The host of an absolute-form target, else None."""
        if self.target.startswith("/"):
            return None
        return urlsplit(self.target).netloc

    @property
    def path_and_query(self) -> str:
        """The target in origin form (what HTTP/2 puts in ``:path``)."""
        if self.target.startswith("/"):
            return self.target
        parts = urlsplit(self.target)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def describe(self) -> str:
        """A one-line summary for failure messages."""
        return f"{self.name} (routes.txt line {self.line}): {self.method} {self.target}"


def _check_target(target: str, lineno: int) -> None:
    if target.startswith("/"):
        return
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.path:
        raise RouteTableError(
            f"line {lineno}: target must be /path?query or https://host/path?query: {target}"
        )


@dataclass(frozen=True, slots=True)
class RouteTable:
    """The cases, and the route map (repository -> shard) they run with."""

    cases: tuple[RouteCase, ...]
    routes: tuple[tuple[RepoName, str], ...]

    @property
    def shards(self) -> tuple[str, ...]:
        """The shards other than the home one, which get backends of their own."""
        return tuple(sorted({shard for _, shard in self.routes} - {HOME_SHARD}))


def _parse_route(line: str, lineno: int) -> tuple[RepoName, str]:
    route = _ROUTE.match(line)
    if route is None:
        raise RouteTableError(f"line {lineno}: expected '@route <owner/name> <shard>'")
    repo = parse_repo_name(route["repo"])
    if repo is None or str(repo) != route["repo"]:
        raise RouteTableError(f"line {lineno}: not a canonical (lower-case) owner/name: {route['repo']}")
    if not is_shard_name(route["shard"]):
        raise RouteTableError(f"line {lineno}: not a shard name: {route['shard']}")
    return repo, route["shard"]


def _check_expected(case: re.Match[str], lineno: int) -> None:
    pool, at, shard = case["pool"].partition("@")
    if pool not in POOLS:
        raise RouteTableError(f"line {lineno}: pool must be one of {POOLS}: {case['pool']}")
    if at and pool not in SHARDED_POOLS:
        raise RouteTableError(f"line {lineno}: only {SHARDED_POOLS} have shard backends: {case['pool']}")
    if at and (not is_shard_name(shard) or shard == HOME_SHARD):
        raise RouteTableError(
            f"line {lineno}: {case['pool']}: name another shard than {HOME_SHARD} (the home one is plain {pool})"
        )


def parse_route_table(text: str) -> list[RouteCase]:
    """Parse the route table text into cases, in file order (its @route lines: :func:`parse_table`)."""
    return list(parse_table(text).cases)


def parse_table(text: str) -> RouteTable:
    """Parse the route table text: the cases in file order, and the route map."""
    blocks: list[tuple[int, re.Match[str], list[tuple[str, str]]]] = []
    seen: dict[str, int] = {}
    routes: dict[RepoName, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line or line.lstrip().startswith("#"):
            continue
        if line.startswith("@"):
            repo, shard = _parse_route(line, lineno)
            if repo in routes:
                raise RouteTableError(f"line {lineno}: {repo} is routed twice")
            routes[repo] = shard
            continue
        if line[0].isspace():
            header = _HEADER.match(line)
            if header is None:
                raise RouteTableError(f"line {lineno}: expected 'Header-Name: value': {line}")
            if not blocks:
                raise RouteTableError(f"line {lineno}: header before any case")
            blocks[-1][2].append((header["name"], header["value"]))
            continue
        case = _CASE.match(line)
        if case is None:
            raise RouteTableError(f"line {lineno}: expected '<name> <METHOD> <TARGET> -> <pool>'")
        _check_expected(case, lineno)
        if case["name"] in seen:
            raise RouteTableError(
                f"line {lineno}: case name {case['name']} already used on line {seen[case['name']]}"
            )
        _check_target(case["target"], lineno)
        seen[case["name"]] = lineno
        blocks.append((lineno, case, []))
    cases = tuple(
        RouteCase(
            name=case["name"],
            method=case["method"],
            target=case["target"],
            expected=case["pool"],
            headers=tuple(headers),
            line=lineno,
        )
        for lineno, case, headers in blocks
    )
    for parsed in cases:
        if parsed.shard != HOME_SHARD and parsed.shard not in routes.values():
            raise RouteTableError(f"line {parsed.line}: no @route line names shard {parsed.shard}")
    return RouteTable(cases, tuple(routes.items()))


def load_route_table(path: Path) -> list[RouteCase]:
    """Read and parse a route table file's cases."""
    return parse_route_table(path.read_text(encoding="utf-8"))


def load_table(path: Path) -> RouteTable:
    """Read and parse a route table file: cases and route map."""
    return parse_table(path.read_text(encoding="utf-8"))
