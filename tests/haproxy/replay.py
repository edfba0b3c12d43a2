"""Replay route-table cases through a running HAProxy and report where each landed.

The echo backends name their pool in ``X-Echo-Pool`` and echo the request
headers, including the ``X-Hostd-Route`` reason HAProxy attached, so a
mismatch says which rule fired instead of just "wrong pool".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .http_clients import Endpoint, ProtocolError, Response, h1_request, h2_request
from .route_table import RouteCase

TRANSPORTS = ("h1", "h2")


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where one case went over one transport."""

    case: RouteCase
    transport: str
    got: str
    route: str

    @property
    def ok(self) -> bool:
        return self.got == self.case.expected

    def __str__(self) -> str:
        return (
            f"{self.case.describe()} over {self.transport}: "
            f"expected {self.case.expected}, got {self.got} (route {self.route})"
        )


def send_case(endpoint: Endpoint, case: RouteCase, transport: str) -> Response:
    """Send a case's request exactly as the table writes it."""
    if transport == "h1":
        return h1_request(endpoint, case.method, case.target, case.headers, host=case.authority)
    if transport == "h2":
        return h2_request(endpoint, case.method, case.target, case.headers)
    raise ValueError(f"unknown transport {transport!r}")


def _route_seen_by_backend(response: Response) -> str:
    try:
        headers = response.json()["headers"]
    except (ValueError, KeyError, TypeError):
        return "?"
    for name, value in headers:
        if name.lower() == "x-hostd-route":
            return str(value)
    return "none"


def run_case(endpoint: Endpoint, case: RouteCase, transport: str) -> Outcome:
    """Send one case; never raises for a protocol failure, reports it instead."""
    try:
        response = send_case(endpoint, case, transport)
    except (OSError, ProtocolError) as exc:
        return Outcome(case, transport, f"no response ({exc})", "?")
    pool = response.header("x-echo-pool")
    if pool is None:
        return Outcome(case, transport, f"no pool (HTTP {response.status} from HAProxy)", "?")
    if case.method == "HEAD":
        # No body to read the route from; the pool header is what counts.
        return Outcome(case, transport, pool, "?")
    return Outcome(case, transport, pool, _route_seen_by_backend(response))


def replay(endpoint: Endpoint, cases: Iterable[RouteCase]) -> list[Outcome]:
    """Send every case over every transport; return all outcomes."""
    return [run_case(endpoint, case, transport) for case in cases for transport in TRANSPORTS]
