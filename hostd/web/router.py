"""The web pool's route table: a method set, a path pattern, a handler.

A handler is ``handler(visit, **groups) -> Response``: the named groups of
its pattern are its keyword arguments. A path no pattern matches is a 404;
a path whose patterns all want other methods is a 405 with ``Allow``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from webob import Response

Handler = Callable[..., Response]


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of the table."""

    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler


def route(methods: str, pattern: str, handler: Handler) -> Route:
    """``route("GET POST", r"/login", handler)``; GET routes answer HEAD too."""
    names = set(methods.split())
    if "GET" in names:
        names.add("HEAD")
    return Route(frozenset(names), re.compile(pattern + r"\Z"), handler)


@dataclass(frozen=True, slots=True)
class Match:
    """What the table says of a request: the handler and its arguments, or the methods the path allows."""

    handler: Handler | None
    groups: dict[str, Any]
    allowed: frozenset[str]


class Router:
    """First match wins, in the order given."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)

    def match(self, method: str, path: str) -> Match:
        allowed: set[str] = set()
        for entry in self.routes:
            found = entry.pattern.match(path)
            if found is None:
                continue
            if method in entry.methods:
                return Match(entry.handler, found.groupdict(), frozenset(entry.methods))
            allowed |= entry.methods
        return Match(None, {}, frozenset(allowed))
