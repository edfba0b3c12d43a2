"""The repository pages: their routes, the repository each shows, and what is kept between views.

Routes (``REV/PATH`` is a ref, possibly with slashes, or a full commit id,
then a path; see :func:`hostd.web.repo.model.split_rev`)::

    /OWNER/NAME                     README, files at the default branch, clone box
    /OWNER/NAME/tree/REV/PATH       a directory
    /OWNER/NAME/blob/REV/PATH       a file, highlighted
    /OWNER/NAME/raw/REV/PATH        a file's bytes (hostd.web.repo.raw: they never run here)
    /OWNER/NAME/commits[/REV]       history, ?page=N
    /OWNER/NAME/commit/ID           a commit and its diff
    /OWNER/NAME/branches|tags|bookmarks

The repository is the one singlemalt's decision carries (its policy read
it and allowed this visitor), never looked up again here. A page's body
depends on the repository alone and is kept per ref state
(:mod:`hostd.web.repo.cache`); the rest of the page is rendered per
request. Paths arrive decoded with undecodable bytes as surrogates
(:attr:`hostd.web.visit.Visit.path`) and are turned back into the exact
bytes of the name.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup
from webob import Response, exc

from hostd.guard.policy import decided_repository
from hostd.settings import DEFAULT_SHARD
from hostd.store.accounts import Repo
from hostd.store.storage import Storage, StorageError
from hostd.web.render import PageError, Renderer
from hostd.web.repo.cache import PageCache
from hostd.web.repo.clone import CloneBox, clone_box, clone_url
from hostd.web.repo.git import GitReader
from hostd.web.repo.hg import HgReader
from hostd.web.repo.model import IsADirectory, NotADirectory, NotFound, Reader, Refs, Resolved, is_commit_id, text
from hostd.web.repo.raw import is_text, raw_response
from hostd.web.repo.urls import RepoUrls, quoted
from hostd.web.repo.views import Views, install
from hostd.web.router import Route, route
from hostd.web.visit import Visit

log = logging.getLogger(__name__)

NO_PAGE = "There is no such page, or you do not have access to it."
_REPO = r"/(?P<owner>[^/]+)/(?P<name>[^/]+)"
_REST = r"(?P<rest>(?s:.+))"  # names may hold newlines
#: The deepest page offered (of history, 50 commits a page; of refs, 200 a page).
MAX_PAGE = 100_000


@dataclass(frozen=True, slots=True)
class Shown:
    """The repository a request shows and its pages' URLs."""

    repo: Repo
    urls: RepoUrls


def _bytes(rest: str) -> bytes:
    return rest.encode("utf-8", "surrogateescape")


def open_reader(vcs: str, path: Path, refs: Refs | None = None) -> Reader:
    """A reader of the repository at ``path``; with ``refs``, known refs it need not read again."""
    return GitReader(path, refs) if vcs == "git" else HgReader(path, refs)


class RepositoryPages:
    """Every page of a repository, for git and Mercurial alike.

    ``clone`` gives the clone box's commands (:func:`hostd.web.repo.clone.clone_box`
    over the renderer's base URL unless the composition root passes its own).
    """

    def __init__(self, storage: Storage, renderer: Renderer, *, shard: str = DEFAULT_SHARD,
                 clone: Callable[[Repo], CloneBox] | None = None, cache: PageCache | None = None) -> None:
        self.storage = storage
        self.renderer = renderer
        self.shard = shard
        self.clone = clone or functools.partial(clone_box, base_url=renderer.base_url)
        self.cache = cache or PageCache()
        install(renderer.env)
        self.views = Views(renderer.env)

    def routes(self) -> list[Route]:
        return [
            route("GET", _REPO + r"/?", self.home),
            route("GET", _REPO + r"/tree/" + _REST, self.tree),
            route("GET", _REPO + r"/blob/" + _REST, self.blob),
            route("GET", _REPO + r"/raw/" + _REST, self.raw),
            route("GET", _REPO + r"/commits/?", self.history),
            route("GET", _REPO + r"/commits/" + _REST, self.commits),
            route("GET", _REPO + r"/commit/" + _REST, self.commit),
            route("GET", _REPO + r"/(?P<kind>branches|tags|bookmarks)/?", self.refs),
        ]

    # --- the repository and its body -------------------------------------------

    def _shown(self, visit: Visit) -> Shown:
        repo = decided_repository(visit.request.environ)
        if repo is None:
            raise PageError(404, NO_PAGE)
        return Shown(repo, RepoUrls(repo.owner, repo.name))

    def _local(self, shown: Shown) -> Path:
        repo = shown.repo
        if repo.shard != self.shard:
            # A web host without the repository's shard has only what the database says; it
            # never reaches across to another host's directory for a page.
            raise PageError(404, f"{repo.ref} is stored on storage shard {repo.shard}: its files and history"
                                 " are not shown by this web host.")
        path = self.storage.path(repo.ref, repo.vcs)
        if not path.is_dir():
            log.warning("%s is registered but %s is missing", repo.ref, path)
            raise StorageError(f"{repo.ref}: no repository directory")
        return path

    def _reader(self, vcs: str, path: Path) -> Reader:
        """A reader whose refs are read once per ref state: 20,000 of them take a second to read."""

        def read() -> Refs:
            reader = open_reader(vcs, path)
            try:
                return reader.refs()
            finally:
                reader.close()

        return open_reader(vcs, path, self.cache.value(vcs, path, "refs", read))

    def _body(self, shown: Shown, what: object, compute: Callable[[Reader], str], *, fixed: bool = False) -> Markup:
        """The page body ``compute`` renders, kept per ref state (or for good, ``fixed``)."""
        path = self._local(shown)
        vcs = shown.repo.vcs

        def run() -> bytes:
            reader = self._reader(vcs, path)
            try:
                return compute(reader).encode("utf-8")
            finally:
                reader.close()

        keep = self.cache.fixed if fixed else self.cache.current
        try:
            body = keep(vcs, path, what, run)
        except (NotADirectory, IsADirectory):
            raise
        except NotFound as error:
            raise PageError(404, str(error)) from None
        return Markup(body.decode("utf-8"))  # noqa: S704 - rendered by autoescaping templates (views)

    def _page(self, visit: Visit, shown: Shown, *, title: str, tab: str, body: Markup,
              clone: CloneBox | None = None, tabs: bool = True) -> Response:
        return self.renderer.page(visit, "repo_page.html", title=f"{title} · {shown.repo.ref}" if title else
                                  str(shown.repo.ref), repo=shown.repo, urls=shown.urls, tab=tab, tabs=tabs,
                                  body=body, clone=clone)

    def _redirect(self, visit: Visit, location: str) -> exc.HTTPFound:
        # Absolute, from configuration: WebOb would complete a relative location from the Host header.
        return exc.HTTPFound(location=visit.base_url + location)

    def _fragment(self, template: str, **context: Any) -> Markup:
        return Markup(self.views.env.get_template(template).render(**context))  # noqa: S704 - autoescaped

    # --- pages ----------------------------------------------------------------

    def home(self, visit: Visit, owner: str, name: str) -> Response:
        shown = self._shown(visit)
        repo = shown.repo
        clone = self.clone(repo)
        if repo.shard != self.shard:
            body = self._fragment("repo_elsewhere.html", repo=repo)
            return self._page(visit, shown, title="", tab="code", body=body, clone=clone, tabs=False)

        def compute(reader: Reader) -> str:
            default = reader.refs().default
            if default is None:
                url = clone_url(repo, self.renderer.base_url)
                return self.views.env.get_template("repo_empty.html").render(repo=repo, url=url)
            return self.views.tree(reader, shown.urls, Resolved(default.name, default.target, b""), home=True)

        body = self._body(shown, ("home",), compute)
        return self._page(visit, shown, title="", tab="code", body=body, clone=clone)

    def tree(self, visit: Visit, owner: str, name: str, rest: str) -> Response:
        shown = self._shown(visit)
        wanted = _bytes(rest)
        try:
            body = self._body(shown, ("tree", wanted),
                              lambda reader: self.views.tree(reader, shown.urls, reader.resolve(wanted)))
        except NotADirectory:
            raise self._redirect(visit, f"{shown.urls.home}/blob/{quoted(wanted)}") from None
        return self._page(visit, shown, title=text(wanted), tab="code", body=body)

    def blob(self, visit: Visit, owner: str, name: str, rest: str) -> Response:
        shown = self._shown(visit)
        wanted = _bytes(rest)
        try:
            body = self._body(shown, ("blob", wanted),
                              lambda reader: self.views.blob(reader, shown.urls, reader.resolve(wanted)))
        except IsADirectory:
            raise self._redirect(visit, f"{shown.urls.home}/tree/{quoted(wanted)}") from None
        return self._page(visit, shown, title=text(wanted), tab="code", body=body)

    def raw(self, visit: Visit, owner: str, name: str, rest: str) -> Response:
        shown = self._shown(visit)
        path = self._local(shown)
        wanted = _bytes(rest)

        def run() -> bytes:
            reader = self._reader(shown.repo.vcs, path)
            try:
                resolved = reader.resolve(wanted)
                data = reader.file(resolved.commit, resolved.path).data
            finally:
                reader.close()
            return (b"t" if is_text(data) else b"b") + data

        try:
            kept = self.cache.current(shown.repo.vcs, path, ("raw", wanted), run)
        except IsADirectory:
            raise self._redirect(visit, f"{shown.urls.home}/tree/{quoted(wanted)}") from None
        except NotFound as error:
            raise PageError(404, str(error)) from None
        return raw_response(wanted.rsplit(b"/", 1)[-1], kept[1:], text=kept[:1] == b"t")

    def history(self, visit: Visit, owner: str, name: str) -> Response:
        """``/commits``: the default branch's history."""
        shown = self._shown(visit)

        def compute(reader: Reader) -> str:
            default = reader.refs().default
            if default is None:
                url = clone_url(shown.repo, self.renderer.base_url)
                return self.views.env.get_template("repo_empty.html").render(repo=shown.repo, url=url)
            return self.views.commits(reader, shown.urls, Resolved(default.name, default.target, b""), 1)

        return self._page(visit, shown, title="Commits", tab="commits", body=self._body(shown, ("history",), compute))

    def commits(self, visit: Visit, owner: str, name: str, rest: str) -> Response:
        shown = self._shown(visit)
        wanted = _bytes(rest)
        page = _page_number(visit)

        def compute(reader: Reader) -> str:
            resolved = reader.resolve(wanted)
            if resolved.path:
                raise NotFound("History is shown for a branch, tag or commit, not for a path below it.")
            return self.views.commits(reader, shown.urls, resolved, page)

        body = self._body(shown, ("commits", wanted, page), compute)
        return self._page(visit, shown, title=f"Commits of {text(wanted)}", tab="commits", body=body)

    def commit(self, visit: Visit, owner: str, name: str, rest: str) -> Response:
        shown = self._shown(visit)
        wanted = _bytes(rest)
        if not is_commit_id(wanted):
            # A ref names a commit only for now: send the visitor to the commit's own page.
            def resolve(reader: Reader) -> str:
                resolved = reader.resolve(wanted)
                if resolved.path:
                    raise NotFound(f"No commit named “{text(wanted)}”.")
                return resolved.commit

            commit_id = str(self._body(shown, ("commit-of", wanted), resolve))
            raise self._redirect(visit, shown.urls.commit(commit_id))
        commit_id = wanted.decode()
        body = self._body(shown, ("commit", commit_id),
                          lambda reader: self.views.commit(reader, shown.urls, commit_id), fixed=True)
        return self._page(visit, shown, title=f"Commit {commit_id[:12]}", tab="commits", body=body)

    def refs(self, visit: Visit, owner: str, name: str, kind: str) -> Response:
        shown = self._shown(visit)
        if kind == "bookmarks" and shown.repo.vcs != "hg":
            raise PageError(404, "Bookmarks are Mercurial's: a git repository has branches and tags.")
        page = _page_number(visit)
        body = self._body(shown, ("refs", kind, page), lambda reader: self.views.refs(reader, shown.urls, kind, page))
        return self._page(visit, shown, title=kind.capitalize(), tab=kind, body=body)


def _page_number(visit: Visit) -> int:
    value = visit.request.GET.get("page", "1")
    if not (value.isascii() and value.isdigit() and len(value) <= 6 and 1 <= int(value) <= MAX_PAGE):
        raise PageError(400, f"The page number must be a whole number from 1 to {MAX_PAGE:,}.")
    return int(value)
