"""Tell a git client that asked for a Mercurial repository which client to use, and the reverse.

HAProxy sends each request to the pool that speaks its client's protocol, so
``git clone https://HOST/demo/hello-hg`` reaches the git pool, which serves
no Mercurial repository: singlemalt alone would ask for a password, then say
"not found". Mounted in front of (outside) singlemalt in the git and hg
pools, this layer answers a request that names a *public* repository of the
other kind with a 404 saying what it is and how to clone it::

    WrongVcsHint(SingleMalt(git_app, ...), classify=classify_git,
                 find=policy.public_elsewhere, base_url="https://git.example.com")

The body is one ``text/plain`` line, which git prints as ``remote: ...``, and
the status line's reason phrase says the same, which is what Mercurial
prints (``abort: HTTP Error 404: ...``)::

    remote: demo/hello-hg is a Mercurial repository: hg clone https://git.example.com/demo/hello-hg
    fatal: repository 'https://git.example.com/demo/hello-hg/' not found

Every other request goes on to singlemalt untouched, a private repository of
the other kind included: singlemalt answers that exactly as it answers a
name that does not exist, so a stranger learns nothing from a missing hint.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

import webob.exc

from hostd.responses import text_error
from hostd.settings.clone import clone_command, https_url
from hostd.store.accounts import Repo
from singlemalt import DEFAULT_DRAIN_LIMIT, Classifier, Target
from singlemalt.challenge import reply

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

#: The repository a request's path names, when it is one of the other kind anyone may read.
Finder = Callable[[str], Repo | None]

#: What each kind is called (cloned as :func:`hostd.settings.clone.clone_command` says).
KINDS: Final = {"git": "a git repository", "hg": "a Mercurial repository"}
# The hint is also the status line's reason phrase: printable ASCII only, or
# it could split the header block. Names are [a-z0-9._-]; the URL is checked
# once, at start.
_PRINTABLE: Final = re.compile(r"[\x21-\x7e]+")


def hint(repo: Repo, base_url: str) -> str | None:
    """``demo/hello-hg is a Mercurial repository: hg clone https://HOST/demo/hello-hg``; None for an unknown kind."""
    what = KINDS.get(repo.vcs)
    if what is None:
        return None
    return f"{repo.ref} is {what}: {clone_command(repo.vcs, https_url(base_url, str(repo.ref), repo.vcs))}"


class WrongVcsHint:
    """Answer requests naming a public repository of the other kind with the client to use; pass the rest on.

    ``classify`` is the pool's own classifier (the same singlemalt runs),
    ``find`` says which repository of the other kind a path names
    (:meth:`hostd.guard.policy.RepositoryPolicy.public_elsewhere`),
    ``base_url`` is where users clone from, and ``drain_limit`` bounds how
    much of a request body is read before the answer (see
    :func:`singlemalt.challenge.reply`).
    """

    def __init__(self, app: WSGIApplication, *, classify: Classifier, find: Finder, base_url: str,
                 drain_limit: int = DEFAULT_DRAIN_LIMIT) -> None:
        if not _PRINTABLE.fullmatch(base_url):
            raise ValueError(f"base_url must be printable ASCII without spaces: {base_url!r}")
        self.app = app
        self.classify = classify
        self.find = find
        self.base_url = base_url.rstrip("/")
        self.drain_limit = drain_limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Tell the client which VCS the repository is, or call the app and return its iterable untouched."""
        target = self.classify(environ)
        if isinstance(target, Target):
            repo = self.find(target.repository)
            message = None if repo is None else hint(repo, self.base_url)
            if repo is not None and message is not None:
                log.info("wrong-vcs repository=%r vcs=%s operation=%s", str(repo.ref), repo.vcs, target.operation)
                return reply(environ, start_response, _refusal(message), drain_limit=self.drain_limit)
        return self.app(environ, start_response)


def _refusal(message: str) -> webob.exc.HTTPException:
    """A fresh 404 per request (``reply`` may add ``Connection: close`` to it)."""
    response = text_error(webob.exc.HTTPNotFound, message)
    response.status = f"404 {message}"
    # The repository may be created, renamed or made private at any time.
    response.headers["Cache-Control"] = "no-store"
    return response
