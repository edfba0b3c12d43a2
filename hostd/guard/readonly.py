"""Read-only mode: refuse every write with 503 while the ``read_only`` flag is on.

Mounted inside :class:`singlemalt.SingleMalt`, so it runs after the decision
and reads the classified ``singlemalt.target``: writes (git receive-pack, hg
``unbundle``, ``pushkey`` and anything unknown) are refused, reads pass
through untouched, so clones and pulls go on during maintenance::

    SingleMalt(ReadOnlyGate(git_app, flags=flags), classify=classify_git, ...)

The refusal is a ``text/plain`` body, which git prints as ``remote: ...``, and
the same text as the status line's reason phrase, which Mercurial prints
(``abort: HTTP Error 503: ...``). Authentication and authorization come
first: a stranger learns nothing about a repository from the maintenance
message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import webob.exc

from hostd.responses import text_error
from hostd.store.flags import READ_ONLY, Flag, FlagReader
from singlemalt import DEFAULT_DRAIN_LIMIT, Action, Target
from singlemalt.challenge import reply

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

MESSAGE: Final = "repository is read-only for maintenance"
# The message goes into the status line: printable ASCII only, or it could
# split the header block.
_PHRASE: Final = re.compile(r"[\x20-\x7e]{2,200}")


class ReadOnlyGate:
    """Answer writes with 503 while ``flag`` is on; pass reads (and everything while off) through.

    ``retry_after`` (seconds) is sent in ``Retry-After``; ``drain_limit``
    bounds how much of a refused push body is read so the client sees the
    answer (see :func:`singlemalt.challenge.reply`).
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        flags: FlagReader,
        flag: Flag = READ_ONLY,
        message: str = MESSAGE,
        retry_after: int = 300,
        drain_limit: int = DEFAULT_DRAIN_LIMIT,
    ) -> None:
        if not _PHRASE.fullmatch(message) or message != message.strip():
            raise ValueError(f"message must be 2-200 printable ASCII characters: {message!r}")
        if retry_after <= 0:
            raise ValueError("retry_after must be positive")
        self.app = app
        self.flags = flags
        self.flag = flag
        self.message = message
        self.retry_after = retry_after
        self.drain_limit = drain_limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Refuse a write while the flag is on; otherwise call the app and return its iterable untouched."""
        target = environ.get("singlemalt.target")
        # Fails closed: without a classified target (not mounted inside
        # SingleMalt) a request counts as a write.
        if isinstance(target, Target) and target.action is Action.READ:
            return self.app(environ, start_response)
        if not self.flags.enabled(self.flag):
            return self.app(environ, start_response)
        log.info(
            "read-only user=%r repository=%r operation=%s",
            environ.get("REMOTE_USER"),
            target.repository if isinstance(target, Target) else None,
            target.operation if isinstance(target, Target) else None,
        )
        return reply(environ, start_response, self._refusal(), drain_limit=self.drain_limit)

    def _refusal(self) -> webob.exc.HTTPException:
        """A fresh 503 per request (``reply`` may add ``Connection: close`` to it)."""
        response = text_error(webob.exc.HTTPServiceUnavailable, self.message)
        response.status = f"503 {self.message}"
        response.headers["Retry-After"] = str(self.retry_after)
        response.headers["Cache-Control"] = "no-store"
        return response
