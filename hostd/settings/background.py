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
        return {
            "HOSTD_QUEUE_WORKERS": str(self.workers), "HOSTD_QUEUE_CONCURRENCY": str(self.concurrency),
            "HOSTD_QUEUE_HEARTBEAT": f"{self.heartbeat:g}", "HOSTD_QUEUE_STALLED_AFTER": f"{self.stalled_after:g}",
            "HOSTD_QUEUE_WARN_AGE": f"{self.warn_age:g}",
            "HOSTD_HOOK_ALLOW_NETS": ",".join(str(net) for net in self.hook_allow_nets),
            "HOSTD_HOOK_TIMEOUT": f"{self.hook_timeout:g}", "HOSTD_HOOK_RETRY_BASE": f"{self.hook_retry_base:g}",
            "HOSTD_HOOK_RETRY_MAX": f"{self.hook_retry_max:g}", "HOSTD_HOOK_ATTEMPTS": str(self.hook_attempts),
            "HOSTD_HOOK_DISABLE_AFTER": str(self.hook_disable_after),
            "HOSTD_MAINTAIN_PUSHES": str(self.maintain_pushes),
            "HOSTD_MAINTAIN_LOOSE_OBJECTS": str(self.maintain_loose_objects),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Background:
        d = cls()  # the defaults
        heartbeat = _seconds(env, "HOSTD_QUEUE_HEARTBEAT", d.heartbeat)
        stalled_after = _seconds(env, "HOSTD_QUEUE_STALLED_AFTER", d.stalled_after)
        if stalled_after < 3 * heartbeat:
            raise SettingsError(f"HOSTD_QUEUE_STALLED_AFTER={stalled_after:g} must be at least three heartbeats"
                                f" ({3 * heartbeat:g} s): a busy worker must not be taken for dead")
        return cls(
            workers=_count(env, "HOSTD_QUEUE_WORKERS", d.workers),
            concurrency=_count(env, "HOSTD_QUEUE_CONCURRENCY", d.concurrency),
            heartbeat=heartbeat,
            stalled_after=stalled_after,
            warn_age=_seconds(env, "HOSTD_QUEUE_WARN_AGE", d.warn_age),
            hook_allow_nets=_networks(env, "HOSTD_HOOK_ALLOW_NETS"),
            hook_timeout=_seconds(env, "HOSTD_HOOK_TIMEOUT", d.hook_timeout),
            hook_retry_base=_seconds(env, "HOSTD_HOOK_RETRY_BASE", d.hook_retry_base),
            hook_retry_max=_seconds(env, "HOSTD_HOOK_RETRY_MAX", d.hook_retry_max),
            hook_attempts=_count(env, "HOSTD_HOOK_ATTEMPTS", d.hook_attempts),
            hook_disable_after=_count(env, "HOSTD_HOOK_DISABLE_AFTER", d.hook_disable_after),
            maintain_pushes=_count(env, "HOSTD_MAINTAIN_PUSHES", d.maintain_pushes),
            maintain_loose_objects=_count(env, "HOSTD_MAINTAIN_LOOSE_OBJECTS", d.maintain_loose_objects),
        )


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
