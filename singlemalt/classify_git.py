"""Classify git smart- and dumb-HTTP requests as reads or writes.

Mount it as the ``classify`` of :class:`~singlemalt.middleware.SingleMalt`
in front of a git HTTP backend (dulwich's ``HTTPGitApplication`` or
``git http-backend``)::

    SingleMalt(git_app, classify=classify_git, verifier=..., authorize=...)

The routes are the ones both backends serve, each a suffix of the path; the
repository is everything before the suffix.  Anything else (unknown
services, ``git-upload-archive``, LFS, other methods) is classified as a
write on a best-effort repository, so only writers ever reach a route this
table does not know.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl

from singlemalt.target import Action, Malformed, Target, repository_path

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

UPLOAD_PACK: Final = "git-upload-pack"
RECEIVE_PACK: Final = "git-receive-pack"

_SERVICES: Final = {UPLOAD_PACK: Action.READ, RECEIVE_PACK: Action.WRITE}

# Each route is anchored at the end of the path, as in the backends, and the
# repository (group "repo") is everything in front of it.
_INFO_REFS: Final = re.compile(r"/(?P<repo>.+)/info/refs")
_SERVICE_RPC: Final = re.compile(r"/(?P<repo>.+)/(?P<service>git-upload-pack|git-receive-pack)")
# Dumb-protocol files are static reads of the repository, served by GET only.
# Object names are SHA-1 (40 hex) or SHA-256 (64 hex).
_DUMB_READS: Final = re.compile(
    r"/(?P<repo>.+)/(?:HEAD"
    r"|objects/info/(?:packs|alternates|http-alternates)"
    r"|objects/[0-9a-f]{2}/(?:[0-9a-f]{38}|[0-9a-f]{62})"
    r"|objects/pack/pack-(?:[0-9a-f]{40}|[0-9a-f]{64})\.(?:pack|idx))"
)
# Where the repository most likely ends in a path no route matched: before
# the first segment that names a git route, else after a "*.git" segment.
_BEST_EFFORT_END: Final = re.compile(r"/(?:info|objects|HEAD|git-[^/]*)(?:/|$)|(?<=\.git)/")


def classify_git(environ: WSGIEnvironment) -> Target | Malformed:
    """Classify one git HTTP request; never raises."""
    checked = repository_path(environ)
    if isinstance(checked, Malformed):
        return checked
    path = "/" + checked
    method = environ.get("REQUEST_METHOD")

    if method == "GET":
        if match := _INFO_REFS.fullmatch(path):
            return _info_refs(match["repo"], environ.get("QUERY_STRING", ""))
        if match := _DUMB_READS.fullmatch(path):
            return Target(match["repo"], Action.READ, "git-dumb")
    elif method == "POST" and (match := _SERVICE_RPC.fullmatch(path)):
        return Target(match["repo"], _SERVICES[match["service"]], match["service"])
    return _unknown(path)


def _info_refs(repository: str, query: object) -> Target | Malformed:
    """The ref advertisement: its ``service`` parameter says which RPC follows."""
    if not isinstance(query, str):
        return _unknown(f"/{repository}/info/refs")
    services = [value for name, value in parse_qsl(query, keep_blank_values=True)
                if name == "service"]
    # Backends disagree on which of several "service" values wins (dulwich
    # takes the first, git http-backend the last): refuse the ambiguity.
    if len(services) > 1:
        return Malformed("ambiguous parameter: service")
    if not services:
        return Target(repository, Action.READ, "git-dumb")
    action = _SERVICES.get(services[0])
    if action is None:
        return _unknown(f"/{repository}/info/refs")
    return Target(repository, action, services[0])


def _unknown(path: str) -> Target:
    """Fail closed: an unrecognised request is a write to its likeliest repository."""
    match = _BEST_EFFORT_END.search(path)
    repository = path[: match.start()] if match else path
    return Target(repository.strip("/"), Action.WRITE, "git-unknown")
