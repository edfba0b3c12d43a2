"""Plain-text error responses, the form git and hg print to their users."""

from __future__ import annotations

from webob import exc


def text_error(status: type[exc.HTTPException], message: str) -> exc.HTTPException:
    """An HTTP error whose body is one line of text (git and hg show it)."""
    return status(
        body=message.rstrip("\n") + "\n", content_type="text/plain", charset="utf-8"
    )
