"""Parse ``haproxy/routes.txt``, the table of which pool each request must reach.

The format is described at the top of ``routes.txt`` itself::

    git-cli-refs   GET /alice/proj.git/info/refs?service=git-upload-pack  -> git
        User-Agent: git/2.39.5

A malformed table raises :class:`RouteTableError` naming the line: a table that
silently drops a case would let a routing rule go untested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

POOLS = ("git", "hg", "web")

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CASE = re.compile(
    rf"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)\s+(?P<method>{_TOKEN})\s+(?P<target>\S+)"
    r"\s+->\s+(?P<pool>\S+)$"
)
_HEADER = re.compile(rf"^\s+(?P<name>{_TOKEN}):[ \t]*(?P<value>.*)$")


class RouteTableError(ValueError):
    """The route table is malformed; the message names the line."""


@dataclass(frozen=True, slots=True)
class RouteCase:
    """One request and the pool it must reach."""

    name: str
    method: str
    target: str
    expected: str
    headers: tuple[tuple[str, str], ...]
    line: int

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


def parse_route_table(text: str) -> list[RouteCase]:
    """Parse the route table text into cases, in file order."""
    blocks: list[tuple[int, re.Match[str], list[tuple[str, str]]]] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line or line.lstrip().startswith("#"):
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
        if case["pool"] not in POOLS:
            raise RouteTableError(f"line {lineno}: pool must be one of {POOLS}: {case['pool']}")
        if case["name"] in seen:
            raise RouteTableError(
                f"line {lineno}: case name {case['name']} already used on line {seen[case['name']]}"
            )
        _check_target(case["target"], lineno)
        seen[case["name"]] = lineno
        blocks.append((lineno, case, []))
    return [
        RouteCase(
            name=case["name"],
            method=case["method"],
            target=case["target"],
            expected=case["pool"],
            headers=tuple(headers),
            line=lineno,
        )
        for lineno, case, headers in blocks
    ]


def load_route_table(path: Path) -> list[RouteCase]:
    """Read and parse a route table file."""
    return parse_route_table(path.read_text(encoding="utf-8"))
