"""Pools serve only the repositories of their own storage shard (the rest get 421), and fence pushes.

The load balancers send each repository's traffic to its shard (the route
map, ``hostd routes sync``). This is the second line of defence for when a
map is out of date: a request that reaches the pools of a shard that does
not hold its repository (just moved, placed a moment ago on another shard,
or a load balancer that missed an update) is refused with
``421 Misdirected Request`` instead of being served from a copy that is not
the repository's, or, for a push, written where nobody will read it::

    SingleMalt(ShardGate(app, shard=settings.shard), classify=classify_git, ...)

Mounted inside :class:`singlemalt.SingleMalt` and reading the repository
from its decision (:func:`~hostd.guard.policy.decided_repository`): the
refusal goes only to someone allowed to use the repository, so it tells a
stranger nothing about a private one. The body is one line, which git
prints as ``remote: ...``, and the status line's reason says the same for hg.

A write (a push, or a Mercurial ``pushkey``) also holds the repository's
push fence (:class:`hostd.store.fence.PushFence`) until its response is
closed, so that ``hostd repo move`` can wait for it and keep every later
one out; a push whose repository moved away while it waited is answered 503,
to be retried (and then routed to the new shard). So is a read that arrives
after the move took the directory but before this process heard of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final

import webob.exc

from hostd.guard.policy import decided_repository
from hostd.responses import text_error
from hostd.store.accounts import Repo
from hostd.store.fence import Fenced, PushFence
from hostd.store.storage import Storage, StorageError
from singlemalt import DEFAULT_DRAIN_LIMIT, Action, Target
from singlemalt.challenge import reply

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

#: Seconds a client is told to wait: about how long a route-map update takes to reach every load balancer.
RETRY_AFTER: Final = 5


class ShardGate:
    """Pass requests on repositories of ``shard`` through (writes inside the push fence); 421 for the others.

    ``storage`` is where the fences are (the pool's repository root);
    ``drain_limit`` bounds how much of a refused push body is read so the
    client sees the answer (see :func:`singlemalt.challenge.reply`).
    """

    def __init__(self, app: WSGIApplication, *, shard: str, storage: Storage,
                 drain_limit: int = DEFAULT_DRAIN_LIMIT) -> None:
        self.app = app
        self.shard = shard
        self.storage = storage
        self.drain_limit = drain_limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Refuse a repository held by another shard; otherwise return the app's iterable, fenced for a write."""
        repo = decided_repository(environ)
        if repo is None:
            return self.app(environ, start_response)
        if repo.shard != self.shard:
            log.warning("misdirected: %s is on shard %s, this pool serves %s (route map out of date?)",
                        repo.ref, repo.shard, self.shard)
            return reply(environ, start_response, _misdirected(repo), drain_limit=self.drain_limit)
        target = environ.get("singlemalt.target")
        # Fails closed: without a classified target (not mounted inside
        # SingleMalt) a request counts as a write.
        if isinstance(target, Target) and target.action is Action.READ:
            if not self._present(repo):
                # The row still names this shard, but a move has just taken the directory
                # (this process's cache has not heard yet): come back, as a push would be told.
                log.warning("%s is not on disk here: moved just now?", repo.ref)
                return reply(environ, start_response, _gone(repo), drain_limit=self.drain_limit)
            return self.app(environ, start_response)
        try:
            fence = PushFence.enter(self.storage.path(repo.ref, repo.vcs), repo.vcs)
        except Fenced as error:
            log.warning("push to %s fenced off: %s", repo.ref, error)
            return reply(environ, start_response, _moved(repo), drain_limit=self.drain_limit)
        try:
            body = self.app(environ, start_response)
        except BaseException:
            fence.release()
            raise
        return _Fenced(body, fence)


    def _present(self, repo: Repo) -> bool:
        try:
            return self.storage.path(repo.ref, repo.vcs).is_dir()
        except StorageError:
            return True  # the app answers a refused path itself


class _Fenced:
    """The app's iterable, passed through untouched; the fence is released when the server closes it."""

    def __init__(self, body: Iterable[bytes], fence: PushFence) -> None:
        self._body = body
        self._fence = fence

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._fence.release()


def _moved(repo: Repo) -> webob.exc.HTTPException:
    return _refusal(webob.exc.HTTPServiceUnavailable, 503,
                    f"{repo.ref} was just moved to another storage shard; nothing changed, push again")


def _gone(repo: Repo) -> webob.exc.HTTPException:
    return _refusal(webob.exc.HTTPServiceUnavailable, 503,
                    f"{repo.ref} was just moved to another storage shard; try again")


def _misdirected(repo: Repo) -> webob.exc.HTTPException:
    # webob has no class for 421 (RFC 9110 15.5.20, Misdirected Request): a
    # client error whose status line is set here.
    return _refusal(webob.exc.HTTPClientError, 421,
                    f"{repo.ref} is served by another storage shard ({repo.shard}); try again shortly")


def _refusal(kind: type[webob.exc.HTTPException], status: int, message: str) -> webob.exc.HTTPException:
    """One line of text, also the status line's reason (hg prints that). Names are
    [a-z0-9._-] and shards [a-z0-9-]: safe in a status line."""
    response = text_error(kind, message)
    response.status = f"{status} {message}"
    response.headers["Retry-After"] = str(RETRY_AFTER)
    response.headers["Cache-Control"] = "no-store"
    return response
