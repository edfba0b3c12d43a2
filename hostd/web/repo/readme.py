"""A repository's README as safe HTML: Markdown rendered, then sanitized.

A README is written by anyone who can push, and shown in the site's origin
to everyone who can read: it must never run. Markdown is rendered by
markdown-it-py with raw HTML allowed (READMEs use ``<img>``, ``<details>``,
``<p align=center>``), and the result goes through nh3 (ammonia), an
allow-list sanitizer: no ``<script>`` or ``<style>`` (their content
dropped), no event handler or ``style`` attribute, no URL but http, https,
mailto and relative ones. The CSP forbids inline script and style besides.

Relative links are made to point into the repository at the README's
revision (links to the file's page, images to its raw bytes), as they
would resolve in a checkout.
"""

from __future__ import annotations

import html
import posixpath
from collections.abc import Callable
from urllib.parse import unquote_to_bytes, urlsplit

import nh3
from markdown_it import MarkdownIt

from hostd.web.repo.model import Entry

#: README names by preference, compared case-insensitively; the Markdown ones are rendered.
NAMES = ("readme.md", "readme.markdown", "readme", "readme.rst", "readme.txt")
_MARKDOWN = ("readme.md", "readme.markdown")
#: A README larger than this is shown as a link to it, not rendered.
MAX_README_BYTES = 512 * 1024
_SCHEMES = {"http", "https", "mailto"}

_markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def find(entries: tuple[Entry, ...]) -> Entry | None:
    """The README among a directory's entries: a file (never a symlink) with one of :data:`NAMES`."""
    found: dict[str, Entry] = {}
    for entry in entries:
        if entry.kind == "file":
            found.setdefault(entry.name.decode("utf-8", "replace").lower(), entry)
    for name in NAMES:
        if name in found:
            return found[name]
    return None


def render(name: bytes, data: bytes, *, directory: bytes, link: Callable[[bytes, bool], str]) -> str:
    """The README (called ``name``, in ``directory``) as HTML safe to put in a page.

    ``link(path, image)`` is the URL of a path of the repository at the
    README's revision: its raw bytes for an image, else its page.
    """
    source = data.decode("utf-8", "replace")
    if name.decode("utf-8", "replace").lower() not in _MARKDOWN:
        return f'<pre class="plain">{html.escape(source)}</pre>'

    def rewrite(tag: str, attribute: str, value: str) -> str | None:
        # nh3 calls this after its URL-scheme check: what comes back is not checked again,
        # so it is either the value as it was or a path of this site.
        if (tag, attribute) in (("a", "href"), ("img", "src")):
            return _relative(value, directory, lambda path: link(path, tag == "img"))
        return value

    rendered = _markdown.render(source)
    return nh3.clean(
        rendered,
        clean_content_tags={"script", "style"},
        url_schemes=_SCHEMES,
        attribute_filter=rewrite,
        link_rel="nofollow noopener noreferrer",
    )


def _relative(value: str, directory: bytes, link: Callable[[bytes], str]) -> str:
    """A relative URL of the README resolved in the repository; other URLs as they are."""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith(("/", "#", "?")) or not parts.path:
        return value  # absolute (its scheme checked by nh3), rooted, or a fragment of this page
    # Resolved as in a checkout, from the README's directory; never above the top ("/..").
    target = posixpath.normpath(posixpath.join(b"/" + directory, unquote_to_bytes(parts.path)))
    return link(target.lstrip(b"/")) + (f"#{parts.fragment}" if parts.fragment else "")
