"""What the page tests share: the web app with the repository pages, a story installed as a served
repository, and the check that a page carries nothing that can run."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from typing import Any

import webtest

from hostd.names import RepoName
from hostd.settings import DEFAULT_SHARD
from hostd.web.app import WebApp
from hostd.web.render import Renderer
from hostd.web.repo.cache import PageCache
from hostd.web.repo.pages import RepositoryPages
from hostd.web.static import StaticFiles
from tests.hostd.conftest import Site, age
from tests.hostd.web.repo.conftest import Story

BASE_URL = "https://example.test"


def pages_app(site: Site, *, shard: str = DEFAULT_SHARD, cache: PageCache | None = None,
              user: str | None = None) -> webtest.TestApp:
    """The web app with the repository pages, behind the stand-in for singlemalt, as ``user`` or anonymous."""
    renderer = Renderer("hostd", BASE_URL)
    pages = RepositoryPages(site.storage, renderer, shard=shard, cache=cache or PageCache())
    app = WebApp([*StaticFiles().routes(), *pages.routes()], renderer=renderer, base_url=BASE_URL)
    environ = {"REMOTE_USER": user} if user else {}
    return webtest.TestApp(site.decided(app, None), extra_environ=environ, lint=True)


def install(site: Site, story: Story, owner: str = "alice", name: str = "proj", *, public: bool = True,
            shard: str | None = None) -> RepoName:
    """A copy of the story's repository served as ``owner/name``, aged out of the racy window."""
    ref = RepoName(owner, name)
    if site.accounts.user(owner) is None:
        site.accounts.add_user(owner, "password-" + owner)
    site.accounts.add_repo(ref, story.vcs, public, shard=shard)
    target = site.storage.path(ref, story.vcs)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(story.path, target, symlinks=True)
    age(target)
    return ref


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_inert(page: str) -> None:
    """No element of ``page`` can run script: no ``<script>`` but the site's own file, no event
    handler or style attribute, no ``javascript:`` URL, no frame, object or embed.

    Markup in names and messages is checked as the browser would parse it,
    so an escaped ``&lt;img onerror=...&gt;`` shown as text passes.
    """
    parser = _Tags()
    parser.feed(page)
    parser.close()
    assert parser.tags, "not HTML"
    for tag, attrs in parser.tags:
        values: dict[str, Any] = dict(attrs)
        if tag == "script":
            assert values == {"src": "/static/site.js", "defer": None}, attrs
        assert tag not in ("iframe", "object", "embed", "frame", "svg", "math", "base", "meta") or (
            tag == "meta" and set(values) <= {"charset", "name", "content"}), tag
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            assert name != "style", (tag, name)
            if value is not None and name in ("href", "src", "action", "formaction", "srcset"):
                assert not value.strip().lower().startswith(("javascript:", "data:", "vbscript:")), (tag, value)


def links(page: str) -> list[str]:
    """Every ``href`` of ``page``, in order."""
    parser = _Tags()
    parser.feed(page)
    return [value for tag, attrs in parser.tags if tag == "a" for name, value in attrs if name == "href" and value]
