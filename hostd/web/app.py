"""The web pool's application: route table in, pages out.

It stands for the main web app of the hosting service, behind the same
singlemalt as the VCS pools, never on the path of a clone or push. The
pages themselves live in their modules (``hostd.web.repo.pages``, the
repository pages; ``hostd.web.account``, sign-in, home and settings), each
giving its routes; this module builds the :class:`~hostd.web.visit.Visit`,
dispatches, and renders every refusal as the site's error page in one
place. While the database is unreachable, a page that needs it is a 503
saying so, not a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from webob import Request, Response, exc

from hostd.store.database import DatabaseUnavailable
from hostd.store.storage import StorageError
from hostd.web.render import PageError, Renderer
from hostd.web.router import Route, Router
from hostd.web.visit import Visit

log = logging.getLogger(__name__)

UNAVAILABLE = "hostd's database is unavailable; try again shortly."


class WebApp:
    """Dispatch a page request to its route; render refusals and outages as pages."""

    def __init__(self, routes: Sequence[Route], *, renderer: Renderer, base_url: str) -> None:
        self.router = Router(routes)
        self.renderer = renderer
        self.base_url = base_url

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        visit = Visit(request, environ.get("REMOTE_USER"), str(environ.get("hostd.csrf", "")), self.base_url)
        try:
            response = self._dispatch(visit)
        except PageError as error:
            response = self.renderer.error(visit, error.status, error.message, error.headers)
        except exc.HTTPRedirection as redirect:
            response = redirect
        except exc.HTTPException as error:
            response = self.renderer.error(visit, error.code or 500, error.detail or error.title)
        except DatabaseUnavailable as error:
            log.warning("page %s not served: database unavailable: %s", request.path_info, error)
            response = self.renderer.error(visit, 503, UNAVAILABLE, {"Retry-After": "5"})
        except StorageError as error:
            # A symlink in the tree, or a registered repository without its directory.
            log.warning("page %s not served: %s", request.path_info, error)
            response = self.renderer.error(visit, 404, "There is no such page, or you do not have access to it.")
        return response(environ, start_response)  # type: ignore[no-any-return]

    def _dispatch(self, visit: Visit) -> Response:
        match = self.router.match(visit.request.method, visit.path)
        if match.handler is None:
            if match.allowed:
                raise PageError(405, "This page does not take that method.",
                                headers={"Allow": ", ".join(sorted(match.allowed))})
            raise PageError(404, "There is no such page, or you do not have access to it.")
        return match.handler(visit, **match.groups)
