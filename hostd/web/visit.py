"""What a page handler knows of the request it answers: one frozen value per request."""

from __future__ import annotations

from dataclasses import dataclass

from webob import Request


@dataclass(frozen=True, slots=True)
class Visit:
    """One page request.

    ``user`` is the signed-in account (set by singlemalt from a session or
    Basic credentials), None for an anonymous visitor. ``csrf`` is the token
    every form of the page carries in its hidden ``csrf`` field (checked by
    :class:`hostd.web.session.SessionAuth` on every unsafe request).
    """

    request: Request
    user: str | None
    csrf: str
    base_url: str

    @property
    def path(self) -> str:
        """The page's path, decoded from UTF-8; bytes that are not UTF-8 kept as surrogates.

        File and ref names need not be UTF-8: ``path.encode("utf-8", "surrogateescape")``
        gives back the exact bytes the client sent (after percent-decoding). Text shown
        on a page must go through :func:`display` first.
        """
        raw = self.request.environ.get("PATH_INFO", "")
        return str(raw).encode("latin-1", "replace").decode("utf-8", "surrogateescape")


def display(text: str) -> str:
    """``text`` safe to encode as UTF-8: undecodable bytes (surrogates) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
