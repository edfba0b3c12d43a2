"""How the queue workers run, deliver webhooks and decide on maintenance.

Part of :mod:`hostd.settings` (``Settings.background``): every
``HOSTD_QUEUE_*``, ``HOSTD_HOOK_*`` and ``HOSTD_MAINTAIN_*`` variable,
parsed once.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from hostd.settings.errors import SettingsError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Background:
    """The queue pool's settings (hostd/work)."""

    #: Worker processes of the queue pool (``HOSTD_QUEUE_WORKERS``).
    workers: int = 2
    #: Jobs one worker process runs at a time (``HOSTD_QUEUE_CONCURRENCY``).
    concurrency: int = 4
    #: Seconds between a worker's heartbeats, and between its looks for jobs
    #: whose time has come (a retry's; new jobs are notified) (``HOSTD_QUEUE_HEARTBEAT``).
    heartbeat: float = 5.0
    #: Seconds without a heartbeat after which a worker counts as dead and its
    #: jobs run again elsewhere (``HOSTD_QUEUE_STALLED_AFTER``; at least three heartbeats).
    stalled_after: float = 20.0
    #: A job waiting longer than this many seconds is logged as a warning at
    #: every check until the queue catches up (``HOSTD_QUEUE_WARN_AGE``).
    warn_age: float = 120.0
    #: Addresses hook URLs may reach although they are not global
    #: (``HOSTD_HOOK_ALLOW_NETS``, comma-separated networks; default none:
    #: loopback, link-local and private addresses are refused).
    hook_allow_nets: tuple[Network, ...] = ()
    #: Seconds one delivery attempt may take, from connect to the last byte read (``HOSTD_HOOK_TIMEOUT``).
    hook_timeout: float = 10.0
    #: The first retry's delay in seconds; each later one doubles, with
    #: jitter, up to :attr:`hook_retry_max` (``HOSTD_HOOK_RETRY_BASE``, ``HOSTD_HOOK_RETRY_MAX``).
    hook_retry_base: float = 10.0
    hook_retry_max: float = 86400.0
    #: Attempts of one delivery before it is given up (``HOSTD_HOOK_ATTEMPTS``):
    #: with the defaults, about eight days of retries.
    hook_attempts: int = 20
    #: Failed attempts in a row (any of its deliveries) that disable a hook
    #: until its owner enables it again (``HOSTD_HOOK_DISABLE_AFTER``).
    hook_disable_after: int = 20
    #: A repository is maintained in the background after this many pushes...
    maintain_pushes: int = 100
    #: ...or when a push finds about this many loose objects in it (git).
    maintain_loose_objects: int = 2000

    def environ(self) -> dict[str, str]:
        """The variables that give these settings back (what the stack exports to the queue pool)."""
        return {variable: _text(getattr(self, name)) for name, variable in VARIABLES.items()}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Background:
        defaults = cls()
        made = cls(**{name: _parse(env, variable, getattr(defaults, name)) for name, variable in VARIABLES.items()})
        if made.stalled_after < 3 * made.heartbeat:
            raise SettingsError(f"HOSTD_QUEUE_STALLED_AFTER={made.stalled_after:g} must be at least three heartbeats"
                                f" ({3 * made.heartbeat:g} s): a busy worker must not be taken for dead")
        return made


#: The variable of each setting; its default's type says how it is read:
#: a whole number, seconds, or networks.
VARIABLES: Final = {
    "workers": "HOSTD_QUEUE_WORKERS", "concurrency": "HOSTD_QUEUE_CONCURRENCY",
    "heartbeat": "HOSTD_QUEUE_HEARTBEAT", "stalled_after": "HOSTD_QUEUE_STALLED_AFTER",
    "warn_age": "HOSTD_QUEUE_WARN_AGE", "hook_allow_nets": "HOSTD_HOOK_ALLOW_NETS",
    "hook_timeout": "HOSTD_HOOK_TIMEOUT", "hook_retry_base": "HOSTD_HOOK_RETRY_BASE",
    "hook_retry_max": "HOSTD_HOOK_RETRY_MAX", "hook_attempts": "HOSTD_HOOK_ATTEMPTS",
    "hook_disable_after": "HOSTD_HOOK_DISABLE_AFTER", "maintain_pushes": "HOSTD_MAINTAIN_PUSHES",
    "maintain_loose_objects": "HOSTD_MAINTAIN_LOOSE_OBJECTS",
}


def _parse(env: Mapping[str, str], name: str, default: Any) -> Any:
    if isinstance(default, tuple):
        return _networks(env, name)
    if isinstance(default, float):
        return _seconds(env, name, default)
    return _count(env, name, default)


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(net) for net in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise SettingsError(f"{name}={raw!r} is not a positive whole number")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    nets = []
    for item in env.get(name, "").split(","):
        if item.strip():
            try:
                nets.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise SettingsError(f"{name}: {item.strip()!r} is not a network (like 10.0.0.0/8)") from None
    return tuple(nets)
