"""The web app as the web pool builds it, under WebTest, with singlemalt stood in for (tests/hostd/conftest.py)."""

from __future__ import annotations

from typing import Any

import webtest

from hostd.settings import DEFAULT_SHARD
from hostd.store.sessions import Sessions
from hostd.web.account import account_pages
from hostd.web.app import WebApp
from hostd.web.render import Renderer
from hostd.web.repo.pages import RepositoryPages
from hostd.web.static import StaticFiles
from singlemalt import LoginThrottle, PasswordHasher, Verifier
from tests.hostd.conftest import Site

BASE_URL = "https://example.test"
#: argon2 at its lowest cost: the pages check passwords, and the production cost would slow the tests.
HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def web_app(site: Site, *, shard: str = DEFAULT_SHARD, verifier: Verifier | None = None,
            throttle: LoginThrottle | None = None) -> WebApp:
    """Every route of the web pool, over the site's accounts and storage (sign-ins checked by ``verifier``)."""
    renderer = Renderer("hostd", BASE_URL)
    pages = RepositoryPages(site.storage, renderer, shard=shard)
    verifier = verifier or Verifier(site.accounts, hasher=HASHER)
    account = account_pages(site.accounts, Sessions(site.accounts.db), verifier, throttle, renderer)
    return WebApp([*StaticFiles().routes(), *account.routes(), *pages.routes()], renderer=renderer, base_url=BASE_URL)


def browse(site: Site, user: str | None = None, *, shard: str = DEFAULT_SHARD, **extra: Any) -> webtest.TestApp:
    """The web app behind the stand-in for singlemalt, as ``user`` (REMOTE_USER) or anonymous."""
    environ = {"REMOTE_USER": user, **extra} if user else dict(extra)
    return webtest.TestApp(site.decided(web_app(site, shard=shard), None), extra_environ=environ, lint=True)
