"""The web pool's application: the pages people read in a browser.

It stands for the main web app of the hosting service. It is behind the same
singlemalt as the VCS pools but is never on the path of a clone or push.
Pages: ``/`` (public repositories, and the signed-in user's own),
``/login`` (asks the browser for credentials), ``/OWNER/NAME`` (clone URL,
refs and recent commits). Private repositories are 404 to everyone without
read access, exactly like repositories that do not exist. While the
database is unreachable, a page that needs it is a 503 saying so, not a 500.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from webob import Request, Response, exc

from hostd.guard.policy import RepositoryPolicy, decided_repository
from hostd.responses import text_error
from hostd.settings import DEFAULT_SHARD
from hostd.store.accounts import Accounts, Repo
from hostd.store.database import DatabaseUnavailable
from hostd.store.storage import Storage, StorageError
from hostd.web.browse import Summary, git_summary, hg_summary
from singlemalt import Action, Allowed, Decision, Denied, Identity, Malformed, Target

log = logging.getLogger(__name__)

UNAVAILABLE = "hostd's database is unavailable; try again shortly."


def classify_web(environ: dict[str, Any]) -> Target | Malformed:
    """Pages are reads of the repository named by the first two path segments.

    The site root (and any one-segment page) names no repository. Methods
    other than GET and HEAD change something, so they are writes.
    """
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "")
    segments = [s for s in path.split("/") if s]
    repository = "/".join(segments[:2]) if len(segments) >= 2 else ""
    action = Action.READ if method in ("GET", "HEAD") else Action.WRITE
    operation = "web:login" if path == "/login" else f"web:{method}"
    return Target(repository, action, operation)


class WebPolicy:
    """Repository pages follow repository access; the site's own pages are public."""

    def __init__(self, repositories: RepositoryPolicy) -> None:
        self.repositories = repositories

    def __call__(self, identity: Identity | None, target: Target) -> Decision:
        if target.operation == "web:login":
            return Allowed("signed in") if identity else Denied("sign in to continue")
        if target.repository == "" and target.action is Action.READ:
            return Allowed("site page")
        return self.repositories(identity, target)


def _page(title: str, body: str) -> Response:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )
    return Response(body=document, content_type="text/html", charset="utf-8")


class WebApp:
    """The repository list and a page per repository."""

    def __init__(self, accounts: Accounts, storage: Storage, base_url: str, shard: str = DEFAULT_SHARD) -> None:
        self.accounts = accounts
        self.storage = storage
        self.base_url = base_url
        #: The storage shard whose repository directory ``storage`` is (``HOSTD_SHARD``).
        self.shard = shard

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._route(request)
        except exc.HTTPException as error:
            response = error
        except DatabaseUnavailable as error:
            log.warning("page %s not served: database unavailable: %s", request.path_info, error)
            response = text_error(exc.HTTPServiceUnavailable, UNAVAILABLE)
            response.headers["Retry-After"] = "5"
        return response(environ, start_response)  # type: ignore[no-any-return]

    def _route(self, request: Request) -> Response:
        try:
            path = request.path_info
        except UnicodeDecodeError:  # e.g. GET /%80: a path that is not UTF-8 names no page
            raise text_error(exc.HTTPNotFound, "No such page.") from None
        user = request.environ.get("REMOTE_USER")
        if path in ("", "/"):
            return self._index(user)
        if path == "/login":
            # Absolute, from configuration: WebOb would complete a relative
            # location from the request's Host header, which the client chose.
            raise exc.HTTPSeeOther(location=self.base_url + "/")
        # The repository WebPolicy allowed; a page below it (/OWNER/NAME/...) is none of ours yet.
        repo = decided_repository(request.environ)
        if repo is not None and path.strip("/").count("/") == 1:
            try:
                return self._repository(repo)
            except StorageError:
                pass  # a symlink in the tree, or no directory: answered like an unknown repository
        raise text_error(exc.HTTPNotFound, "No such page.")

    def clone_url(self, repo: Repo) -> str:
        suffix = ".git" if repo.vcs == "git" else ""
        return f"{self.base_url}/{repo.owner}/{repo.name}{suffix}"

    def _index(self, user: str | None) -> Response:
        def listing(repos: list[Repo]) -> str:
            items = "".join(
                f'<li><a href="/{html.escape(str(r.ref))}">{html.escape(str(r.ref))}</a> ({r.vcs})'
                f" <code>{html.escape(self.clone_url(r))}</code></li>"
                for r in repos
            )
            return f"<ul>{items}</ul>" if items else "<p>None yet.</p>"

        body = "<h1>Public repositories</h1>" + listing(self.accounts.repos(public_only=True))
        if user:
            own = [r for r in self.accounts.repos() if r.owner == user]
            body = f"<p>Signed in as {html.escape(user)}.</p><h1>Your repositories</h1>{listing(own)}" + body
        else:
            body = '<p><a href="/login">Sign in</a></p>' + body
        return _page("Repositories", body)

    def _repository(self, repo: Repo) -> Response:
        clone = f"git clone {self.clone_url(repo)}" if repo.vcs == "git" else f"hg clone {self.clone_url(repo)}"
        parts = [f"<h1>{html.escape(str(repo.ref))}</h1>",
                 f"<p>{repo.vcs}, {'public' if repo.public else 'private'}</p>",
                 f"<pre>{html.escape(clone)}</pre>"]
        if repo.shard != self.shard:
            # A web host without the repository's shard (a host of its own)
            # has only what the database says; it never reaches across to
            # another host's directory for a page.
            parts.append(f"<p>Stored on storage shard {html.escape(repo.shard)}: its branches and history are"
                         " not shown by this web host.</p>")
            return _page(str(repo.ref), "".join(parts))
        path = self.storage.path(repo.ref, repo.vcs)
        if not path.is_dir():
            log.warning("%s is registered but %s is missing", repo.ref, path)
            raise StorageError(f"{repo.ref}: no repository directory")
        summary: Summary = git_summary(path) if repo.vcs == "git" else hg_summary(path)
        for kind, names in summary.refs.items():
            items = "".join(f"<li>{html.escape(n)}</li>" for n in names) or "<li>none</li>"
            parts.append(f"<h2>{kind.capitalize()}</h2><ul>{items}</ul>")
        rows = "".join(
            f"<tr><td><code>{c.node[:12]}</code></td><td>{html.escape(c.summary)}</td>"
            f"<td>{html.escape(c.author)}</td>"
            f"<td>{time.strftime('%Y-%m-%d %H:%M', time.gmtime(c.when))}</td></tr>"
            for c in summary.commits
        )
        parts.append("<h2>Recent commits</h2>" + (f"<table>{rows}</table>" if rows else "<p>No commits yet.</p>"))
        return _page(str(repo.ref), "".join(parts))
