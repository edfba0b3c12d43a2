"""The site's own stylesheet and script, served from the package at ``/static/NAME``.

Files are read once per process. Only the names in the directory are served
(no path below it), with a content type by suffix and a week of caching:
they change only with a deployment, and a page's ``<link>`` refetches on reload.
"""

from __future__ import annotations

from pathlib import Path

from webob import Response

from hostd.web.render import PageError, secure
from hostd.web.router import Route, route
from hostd.web.visit import Visit

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".css": "text/css", ".js": "text/javascript"}


class StaticFiles:
    """Answers ``/static/NAME`` from the files beside this module."""

    def __init__(self, directory: Path = STATIC) -> None:
        self.files = {
            path.name: (path.read_bytes(), _TYPES[path.suffix])
            for path in sorted(directory.iterdir()) if path.suffix in _TYPES
        }

    def routes(self) -> list[Route]:
        return [route("GET", r"/static/(?P<name>[^/]+)", self.serve)]

    def serve(self, visit: Visit, name: str) -> Response:
        found = self.files.get(name)
        if found is None:
            raise PageError(404, "No such file.")
        body, content_type = found
        response = Response(body=body, content_type=content_type, charset="utf-8")
        return secure(response, cache="public, max-age=604800")
