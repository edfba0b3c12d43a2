"""Classify Mercurial HTTP requests (wire protocol and hgweb) as reads or writes.

Mount it as the ``classify`` of :class:`~singlemalt.middleware.SingleMalt`
in front of ``hgweb``/``hgwebdir``::

    SingleMalt(hg_app, classify=classify_hg, verifier=..., authorize=...)

The permission of a wire command is read from Mercurial's own command table
(``wireprotov1server.commands[cmd].permission``) every time, never from a
hand-kept copy, so a Mercurial upgrade that adds or changes a command is
classified the way Mercurial itself checks it.  Query strings and wire
arguments are parsed the way hgweb parses them (bytes, latin-1 environ
values), but strictly: a repeated parameter is refused, because hgweb and
its wire-protocol layer do not agree on which copy wins.

The repository is ``PATH_INFO`` without slashes; for hgweb browsing URLs it
includes the page path (``alice/demo/log/tip``), so an authorizer must map it
to a repository by prefix as hgwebdir does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl

from singlemalt.target import Action, Malformed, Target, repository_path

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

_PERMISSIONS: Final = {b"pull": Action.READ, b"push": Action.WRITE}
_MAX_LABEL: Final = 40


class _Refused(Exception):
    """Internal: the request is malformed; carries the reason."""


def classify_hg(environ: WSGIEnvironment) -> Target | Malformed:
    """Classify one Mercurial HTTP request; never raises."""
    repository = repository_path(environ)
    if isinstance(repository, Malformed):
        return repository
    # Mercurial is imported on first use, not with singlemalt: it takes
    # ~0.4 s, which a git-only application (and every hostd command) should
    # not pay.  Later imports are a dictionary lookup.
    from mercurial import wireprotov1server
    from mercurial.hgweb import webcommands

    try:
        query = _params(_latin1(environ.get("QUERY_STRING", "")))
        cmd = query.get(b"cmd")
        if cmd is None:
            # hgweb pages: every web command needs only read permission.
            return Target(repository, Action.READ, "hgweb")
        if cmd in wireprotov1server.commands:
            # hgweb dispatches a known wire command before any web command.
            if cmd == b"batch":
                return Target(repository, _batch(environ, query), "hg:batch")
            return Target(repository, wire_action(cmd), "hg:" + _label(cmd))
        if cmd.decode("latin-1") in webcommands.__all__:
            return Target(repository, Action.READ, "hgweb:" + _label(cmd))
        return Target(repository, Action.WRITE, "hg-unknown:" + _label(cmd))
    except _Refused as refused:
        return Malformed(str(refused))


def wire_action(cmd: bytes) -> Action:
    """The action Mercurial's own table requires for a wire command; unknown is WRITE.

    hgweb's ``checkperm`` treats anything but ``pull`` as needing push
    rights, and so does this.
    """
    from mercurial import wireprotov1server

    command = wireprotov1server.commands.get(cmd)
    if command is None:
        return Action.WRITE
    return _PERMISSIONS.get(command.permission, Action.WRITE)


def _batch(environ: WSGIEnvironment, query: dict[bytes, bytes]) -> Action:
    """A batch is a write if any of its commands is, or if they cannot be seen."""
    post = environ.get("HTTP_X_HGARGS_POST")
    if post is not None and str(post).strip() != "0":
        # With httppostargs the commands travel in the request body, which
        # must stay unread for the app: assume the worst.
        return Action.WRITE
    args = dict(query)
    for name, value in _params(_header_args(environ)).items():
        if name in args:
            raise _Refused("ambiguous parameter: " + _label(name))
        args[name] = value
    cmds = args.get(b"cmds")
    if not cmds:
        return Action.WRITE
    actions = set()
    for pair in cmds.split(b";"):
        op = pair.partition(b" ")[0]
        if op == b"batch":
            raise _Refused("nested batch")
        actions.add(wire_action(op))
    return Action.WRITE if Action.WRITE in actions else Action.READ


def _header_args(environ: WSGIEnvironment) -> bytes:
    """Reassemble ``X-HgArg-1..N`` exactly as Mercurial does: stop at the first gap."""
    chunks = []
    index = 1
    while (value := environ.get(f"HTTP_X_HGARG_{index}")) is not None:
        chunks.append(_latin1(value))
        index += 1
    return b"".join(chunks)


def _params(query: bytes) -> dict[bytes, bytes]:
    """Parse a query string as hgweb does, refusing repeated names and what hgweb cannot parse."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True)
    except UnicodeError:
        # hgweb parses bytes with the ascii codec and fails on these.
        raise _Refused("undecodable query string") from None
    params: dict[bytes, bytes] = {}
    for name, value in pairs:
        if name in params:
            raise _Refused("ambiguous parameter: " + _label(name))
        params[name] = value
    return params


def _latin1(value: object) -> bytes:
    """A WSGI native string as the bytes the server received (PEP 3333)."""
    try:
        return str(value).encode("latin-1")
    except UnicodeError:
        raise _Refused("not a WSGI native string") from None


def _label(name: bytes) -> str:
    """A log-safe rendering of a client-chosen command name."""
    return repr(name[:_MAX_LABEL])[2:-1]
