"""Ref advertisements (``info/refs?service=...``): the refs read once, the answer built once per ref state.

Every push starts with the receive-pack advertisement, and dulwich builds it
by reading every ref twice (``get_refs``, then ``get_symrefs`` to find the
symbolic ones) and checking every name's format on each read: 5 ms for a
repository of 57 loose refs, more than git's receive-pack takes in a fork.
:func:`read_refs` reads each ref once; :class:`hostd.store.refstate.PerRefState`
keeps the finished answer until a ref changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dulwich.objects import ObjectID
from dulwich.protocol import CAPABILITIES_REF, format_ref_line, pkt_line, symref_capabilities
from dulwich.refs import SYMREF, Ref, RefsContainer, SymrefLoop

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]

NO_CACHE = [
    ("Expires", "Fri, 01 Jan 1980 00:00:00 GMT"),
    ("Pragma", "no-cache"),
    ("Cache-Control", "no-cache, max-age=0, must-revalidate"),
]


def read_refs(refs: RefsContainer) -> tuple[dict[Ref, ObjectID], dict[Ref, Ref]]:
    """(every ref that resolves, with its object; every symbolic ref, with its target).

    The same as dulwich's ``get_refs()`` and ``get_symrefs()`` together
    (``HEAD`` included, dangling and looping symbolic refs left out of the
    first), with each ref file read once.
    """
    resolved: dict[Ref, ObjectID] = {}
    symbolic: dict[Ref, Ref] = {}
    for name in refs.allkeys():
        value = refs.read_ref(name)
        if not value:
            continue
        if not value.startswith(SYMREF):
            resolved[name] = ObjectID(value)
            continue
        symbolic[name] = Ref(value[len(SYMREF):])
        try:
            _, sha = refs.follow(name)
        except SymrefLoop:
            continue
        if sha is not None:
            resolved[name] = sha
    return resolved, symbolic


def receive_pack_advertisement(refs: RefsContainer, capabilities: Iterable[bytes], zero: ObjectID) -> bytes:
    """What dulwich's receive-pack advertises, byte for byte (without the ``# service`` header)."""
    resolved, symbolic = read_refs(refs)
    listed = sorted(resolved.items()) or [(Ref(CAPABILITIES_REF), zero)]
    first_name, first_sha = listed[0]
    lines = [format_ref_line(first_name, first_sha, [*capabilities, *symref_capabilities(sorted(symbolic.items()))])]
    lines += [format_ref_line(name, sha) for name, sha in listed[1:]]
    return b"".join(pkt_line(line) for line in lines) + pkt_line(None)


def service_header(service: str) -> bytes:
    """The first pkt-lines of a v0/v1 smart ``info/refs`` answer, as git http-backend sends them."""
    return pkt_line(f"# service={service}\n".encode()) + pkt_line(None)


def respond(environ: WSGIEnviron, start_response: StartResponse, service: str, body: bytes) -> list[bytes]:
    """Send a finished ``info/refs`` answer for ``service``, uncacheable as http-backend's."""
    headers = [("Content-Type", f"application/x-{service}-advertisement"),
               ("Content-Length", str(len(body))), *NO_CACHE]
    start_response("200 OK", headers)
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
