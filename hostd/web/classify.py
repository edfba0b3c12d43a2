"""What a web request asks for (classify) and who may have it (policy).

Repository pages (``/OWNER/NAME`` and everything under it) are reads of
``OWNER/NAME`` when fetched and writes when posted to, decided by the same
repository policy as clones and pushes. The site's own pages name no
repository: the home page, ``/static/...`` and the sign-in pages are for
everyone; ``/settings/...`` is for signed-in users, and changing settings
needs a credential that may write.
"""

from __future__ import annotations

from typing import Any

from hostd.guard.policy import RepositoryPolicy
from singlemalt import Action, Allowed, Decision, Denied, Identity, Malformed, Scope, Target

#: First path segments that are the site's pages, never an owner (hostd.names.RESERVED keeps them out of names).
SITE_SECTIONS = frozenset({"login", "logout", "settings", "static"})
#: Site sections anyone may post to: the sign-in form and sign-out (each checks its CSRF token).
_FORMS = frozenset({"login", "logout"})


def classify_web(environ: dict[str, Any]) -> Target | Malformed:
    """Name the repository and action of a page request; methods other than GET and HEAD are writes."""
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "")
    segments = [s for s in path.split("/") if s]
    action = Action.READ if method in ("GET", "HEAD") else Action.WRITE
    first = segments[0] if segments else ""
    if first in SITE_SECTIONS or len(segments) < 2:
        return Target("", action, f"web:{first or 'home'}")
    return Target("/".join(segments[:2]), action, f"web:{method}")


class WebPolicy:
    """Repository pages follow repository access; the site's own pages are decided here."""

    def __init__(self, repositories: RepositoryPolicy) -> None:
        self.repositories = repositories

    def __call__(self, identity: Identity | None, target: Target) -> Decision:
        if target.repository:
            return self.repositories(identity, target)
        section = target.operation.removeprefix("web:")
        if section == "settings":
            if identity is None:
                return Denied("sign in to continue")
            if target.action is Action.WRITE and identity.scope is not Scope.WRITE:
                return Denied("a read-only credential cannot change settings")
            return Allowed("own settings")
        if target.action is Action.READ or section in _FORMS:
            return Allowed("site page")
        return Denied("no such form")
