"""The web pool's application: the pages people read in a browser.

It stands for the main web app of the hosting service. It is behind the same
singlemalt as the VCS pools but is never on the path of a clone or push.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

from webob import Request, Response, exc

from hostd.accounts import Accounts
from hostd.policy import RepositoryPolicy
from hostd.responses import text_error
from singlemalt import Action, Allowed, Decision, Identity, Malformed, Target


def classify_web(environ: dict[str, Any]) -> Target | Malformed:
    """Pages are reads of the repository named by the first two path segments.

    The site root (and any one-segment page) names no repository. Methods
    other than GET and HEAD change something, so they are writes.
    """
    method = environ.get("REQUEST_METHOD", "GET")
    segments = [s for s in environ.get("PATH_INFO", "").split("/") if s]
    repository = "/".join(segments[:2]) if len(segments) >= 2 else ""
    action = Action.READ if method in ("GET", "HEAD") else Action.WRITE
    return Target(repository, action, f"web:{method}")


class WebPolicy:
    """Repository pages follow repository access; the site's own pages are public."""

    def __init__(self, repositories: RepositoryPolicy) -> None:
        self.repositories = repositories

    def __call__(self, identity: Identity | None, target: Target) -> Decision:
        if target.repository == "" and target.action is Action.READ:
            return Allowed("site page")
        return self.repositories(identity, target)


class WebApp:
    """The public repository list and a page per repository."""

    def __init__(self, accounts: Accounts, base_url: str) -> None:
        self.accounts = accounts
        self.base_url = base_url

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._page(request)
        except exc.HTTPException as error:
            response = error
        return response(environ, start_response)  # type: ignore[no-any-return]

    def _page(self, request: Request) -> Response:
        if request.path_info in ("", "/"):
            return self._index()
        raise text_error(exc.HTTPNotFound, "No such page.")

    def _index(self) -> Response:
        rows = []
        for repo in self.accounts.repos(public_only=True):
            suffix = ".git" if repo.vcs == "git" else ""
            url = f"{self.base_url}/{repo.owner}/{repo.name}{suffix}"
            rows.append(
                f"<li><strong>{html.escape(str(repo.ref))}</strong> ({repo.vcs})"
                f" <code>{html.escape(url)}</code></li>"
            )
        body = (
            "<!doctype html><html><head><meta charset=utf-8><title>Repositories</title></head>"
            "<body><h1>Public repositories</h1><ul>" + "".join(rows) + "</ul></body></html>"
        )
        return Response(body=body, content_type="text/html", charset="utf-8")
