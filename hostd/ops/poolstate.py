"""The servers of HAProxy's backends as its admin socket reports them, parsed into frozen values.

``show stat`` (traffic, address, last check) and ``show servers state``
(administrative and operational state) each tell half of it; :func:`merge`
joins them into one :class:`Server` per server, which :mod:`hostd.ops.pooladmin`
acts on and ``hostd pool list`` shows::

    servers = merge(haproxy.stat(settings, "-1", haproxy.SERVERS), haproxy.servers_state(settings))
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# srv_admin_state bits (doc/management.txt, "show servers state").
_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20
_DRAIN_BITS = 0x08 | 0x10
# srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping (up, but its
# check asks for no new sessions).
_OP_STOPPING = 3
_OP_UP = frozenset({1, 2, _OP_STOPPING})


class Admin(StrEnum):
    """What an operator asked of a server: its administrative state."""

    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


@dataclass(frozen=True, slots=True)
class Server:
    """One server of a backend as HAProxy's running worker sees it."""

    backend: str
    name: str
    address: str
    #: UP, DOWN, DRAIN or MAINT: whether it takes new sessions, and if not, why.
    state: str
    admin: Admin
    #: The health check's verdict, whatever the administrative state.
    healthy: bool
    #: Sessions in flight now (``scur``) and since HAProxy started (``stot``).
    sessions: int
    total_sessions: int
    #: 0 means no limit.
    maxconn: int
    #: The last health check, e.g. "Layer7 check passed".
    check: str
    #: ``IP:PORT`` the health check goes to when it is not ``address``
    #: (a worker reached over its unix socket is checked on its TCP port).
    check_address: str = ""

    @property
    def key(self) -> str:
        """``backend/server``, as HAProxy's commands spell it."""
        return f"{self.backend}/{self.name}"

    @property
    def serving(self) -> bool:
        """Whether it takes new sessions now: healthy and ready."""
        return self.state == "UP"

    @property
    def worker_address(self) -> str:
        """The ``IP:PORT`` that :func:`hostd.ops.pooladmin.add` was given for this server."""
        return self.check_address if self.address == "unix" else self.address


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def merge(stat: list[dict[str, str]], state: dict[tuple[str, str], dict[str, str]]) -> list[Server]:
    """Join ``show stat`` (traffic, address, check) with ``show servers state``
    (administrative and operational state, which the stat ``status`` text
    conflates: a drained server whose check fails is only "DOWN" there)."""
    servers = []
    for row in stat:
        if row["svname"] in ("FRONTEND", "BACKEND"):
            continue
        raw = state.get((row["pxname"], row["svname"]))
        status = row.get("status", "")
        if raw is not None:
            admin_bits = _int(raw.get("srv_admin_state"))
            op = _int(raw.get("srv_op_state"))
        else:  # added or removed between the two commands: trust the stat text
            admin_bits = 0x01 if status.startswith("MAINT") else 0x08 if status == "DRAIN" else 0
            op = 3 if status == "NOLB" else 2 if status.startswith(("UP", "DRAIN", "no check")) else 0
        healthy = op in _OP_UP
        admin = Admin.MAINT if admin_bits & _MAINT_BITS else Admin.DRAIN if admin_bits & _DRAIN_BITS else Admin.READY
        if admin is Admin.MAINT:
            shown = "MAINT"
        elif not healthy:
            shown = "DOWN"
        elif admin is Admin.DRAIN or op == _OP_STOPPING:
            shown = "DRAIN"
        else:
            shown = "UP"
        servers.append(Server(
            backend=row["pxname"], name=row["svname"], address=row.get("addr", ""), state=shown,
            admin=admin, healthy=healthy, sessions=_int(row.get("scur")),
            total_sessions=_int(row.get("stot")), maxconn=_int(row.get("slim")),
            check=row.get("check_desc") or row.get("check_status", ""),
            check_address=_check_address(raw),
        ))
    return servers


def _check_address(raw: dict[str, str] | None) -> str:
    """``IP:PORT`` of a server's separate health-check address, or ""."""
    host = (raw or {}).get("srv_check_addr", "-")
    port = _int((raw or {}).get("srv_check_port"))
    if host == "-" or port == 0:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
