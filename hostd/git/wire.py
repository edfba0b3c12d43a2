"""What an upload-pack request says, read without trusting it: protocol, pkt-lines, wants, cacheability.

Pure functions over bytes a client sent (and git's own advertisement); a
malformed input is never an exception that escapes, only an answer of
"not cacheable" or "protocol v0".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# The Git-Protocol header goes into git's environment, as http-backend does;
# git reads only ``key[=value]`` items from it, so only their characters pass.
_PROTOCOL = re.compile(rb"\A[A-Za-z0-9=:._-]{1,256}\Z")
_HEX4 = re.compile(rb"\A[0-9a-f]{4}\Z")
_OBJECT_ID = re.compile(rb"\A(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")

#: What :func:`cache_kind` says of a cacheable request: kept in memory, or on disk.
LS_REFS, FULL_PACK = "ls-refs", "full pack"


def git_protocol(environ: Mapping[str, Any]) -> str:
    """The client's ``Git-Protocol`` header if well-formed, else "" (protocol v0)."""
    return valid_protocol(environ.get("HTTP_GIT_PROTOCOL", ""))


def valid_protocol(value: str) -> str:
    """A ``Git-Protocol`` header or SSH client's ``GIT_PROTOCOL`` if well-formed, else "" (protocol v0)."""
    return value if _PROTOCOL.match(value.encode("latin-1", "replace")) else ""


def is_v2(protocol: str) -> bool:
    """Whether a ``Git-Protocol`` value asks for protocol version 2."""
    return "version=2" in protocol.split(":")


def pkt_lines(data: bytes) -> Iterator[bytes | None]:
    """The pkt-lines of ``data``; None for flush/delim/response-end. ValueError if malformed."""
    position = 0
    while position < len(data):
        header = data[position:position + 4]
        if not _HEX4.match(header):
            raise ValueError(f"bad pkt-line length {header!r}")
        size = int(header, 16)
        if size < 4:
            position += 4
            yield None
            continue
        if position + size > len(data):
            raise ValueError("truncated pkt-line")
        yield data[position + 4:position + size]
        position += size


def cache_kind(body: bytes) -> str | None:
    """Whether the answer to this upload-pack request is worth caching, and as what.

    A v2 ``ls-refs`` (every no-op fetch sends one; a small answer, kept in
    memory), and a request without ``have`` lines (a full clone: every
    client of one ref state asks the same; a pack, kept on disk).  Requests
    with haves are particular to one client's history: None. (Whether a
    full pack's wants are tips, see :func:`wants`, is for the caller to check.)
    """
    try:
        lines = [line for line in pkt_lines(body) if line is not None]
    except ValueError:
        return None
    if not lines:
        return None
    if lines[0].rstrip(b"\n") == b"command=ls-refs":
        return LS_REFS
    if lines[0].startswith(b"command=") and not lines[0].startswith(b"command=fetch"):
        return None
    wanted = any(line.startswith(b"want ") for line in lines)
    return FULL_PACK if wanted and not any(line.startswith(b"have ") for line in lines) else None


def wants(body: bytes) -> frozenset[bytes]:
    """The object ids of a request's ``want`` lines (v0 and v2 alike); empty if it is malformed."""
    found: set[bytes] = set()
    try:
        for line in pkt_lines(body):
            if line is not None and line.startswith(b"want "):
                found.add(line[5:].split(b" ", 1)[0].rstrip(b"\n"))
    except ValueError:
        return frozenset()
    return frozenset(found)


def advertised_ids(advertisement: bytes) -> frozenset[bytes]:
    """The object ids a v0 ref advertisement names: every tip, and every peeled tag."""
    found: set[bytes] = set()
    try:
        for line in pkt_lines(advertisement):
            if line is not None and _OBJECT_ID.match(oid := line.split(b" ", 1)[0]):
                found.add(oid)
    except ValueError:
        return frozenset()
    return frozenset(found)
