"""Validation of user and repository names, of repository URL paths, of ``host:port`` addresses,
and of the names HAProxy knows a server by.

Case rule: names are case-insensitive and stored in lower case. A request for
``/Alice/Demo.git`` reaches ``alice/demo``; two repositories can never differ
only by case, so no file system (case-folding or not) sees two spellings.

A name is 1-100 characters of ``[a-z0-9._-]``, starting with a letter or digit
(no leading dot: no ``..``, no hidden directories, no ``.hg``/``.git``
lookalikes; no leading dash: never read as an option by a command line tool).
Repository names may not end in ``.git`` (that suffix belongs to the URL of a
git repository) and no name is one of the reserved words below, which the
web tier and the health checks use as the first path segment.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}\Z")
# A host written into HAProxy's configuration (a shard's servers): nothing it
# would read as a quote, a variable, a comment or a second argument. A name
# or IPv4 address of letters, digits, dots and dashes, neither at either end
# (up to 253 characters, DNS's limit), or an IPv6 address in brackets.
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]{2,45}\]\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
# A server or backend name sent to HAProxy's admin socket and written into its
# configuration: no ";" (the socket's command separator), no space, quote or
# newline (a second argument, a second command, a second line).
_SERVER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
RESERVED = frozenset({"healthz", "readyz", "static", "login", "logout", "settings", "api", "metrics", "stats"})


@dataclass(frozen=True, slots=True)
class RepoName:
    """A valid ``OWNER/NAME`` pair, already lower-cased."""

    owner: str
    name: str

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"


def normalize_name(text: str) -> str | None:
    """Return the canonical (lower-case) form of a user or repository name, or None."""
    lowered = text.lower()
    if not _NAME.match(lowered) or lowered in RESERVED or ".." in lowered:
        return None
    return lowered


def parse_repo_name(text: str) -> RepoName | None:
    """Parse ``OWNER/NAME`` as typed on the command line; None when invalid."""
    parts = text.split("/")
    if len(parts) != 2:
        return None
    owner, name = (normalize_name(part) for part in parts)
    if owner is None or name is None or name.endswith(".git"):
        return None
    return RepoName(owner, name)


def parse_repo_path(path: str) -> tuple[RepoName, bool] | None:
    """Parse a repository path from a URL (``alice/demo.git`` or ``alice/demo``).

    Returns the name and whether the URL used the ``.git`` suffix, or None when
    the path is not exactly two valid segments.
    """
    stripped = path.strip("/")
    git_suffix = stripped.lower().endswith(".git")
    if git_suffix:
        stripped = stripped[: -len(".git")]
    repo = parse_repo_name(stripped)
    return None if repo is None else (repo, git_suffix)


def parse_host_port(text: str) -> tuple[str, int] | None:
    """``host:port`` as (host, port), an IPv6 host without its brackets; None when invalid."""
    host, sep, port = text.rpartition(":")
    if not sep or not _PORT.match(port) or not 0 < int(port) < 65536:
        return None
    if _HOSTNAME.match(host):
        return host, int(port)
    if _IPV6.match(host):
        return host[1:-1], int(port)
    return None


def parse_ip_port(text: str) -> str | None:
    """``IP:PORT`` (IPv6 in brackets) in HAProxy's spelling; None otherwise, a host name included.

    A server HAProxy 2.6 adds at run time is never resolved (``init-addr
    none``), so a name there would be accepted and never work.
    """
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([0-9.]+):(\d{1,5})", text)
    if match is None:
        return None
    host, port = (match[1], match[2]) if match[1] else (match[3], match[4])
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not 0 < int(port) < 65536:
        return None
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def is_server_name(text: str) -> bool:
    """Whether ``text`` may name an HAProxy server or backend (``git2``, ``git-s2``):
    1-64 of letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit."""
    return _SERVER.match(text) is not None
