"""What a request wants to do: the value a classifier produces.

A classifier is a pure function of the WSGI environ that names the
repository and whether the request reads or writes, or refuses the request
outright as :class:`Malformed`.  Anything it does not recognise must be
classified as a write: the authorizer then lets only writers through, so an
unknown route can never leak data to a reader::

    def classify(environ):
        path = environ.get("PATH_INFO", "")
        if environ["REQUEST_METHOD"] == "GET":
            return Target(path.strip("/"), Action.READ, "GET")
        return Target(path.strip("/"), Action.WRITE, environ["REQUEST_METHOD"])

:func:`repository_path` is the path hygiene both built-in classifiers share.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment


class Action(enum.Enum):
    """Whether a request only reads a repository or may change it."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Target:
    """The repository a request touches, the action, and a short label for logs.

    ``repository`` is the raw path from the URL without leading or trailing
    slashes (``"alice/demo.git"``); ``operation`` is e.g. ``"git-upload-pack"``.
    """

    repository: str
    action: Action
    operation: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request the classifier refuses outright; answered 400 with ``reason``."""

    reason: str


class Classifier(Protocol):
    """Turns a WSGI environ into a :class:`Target`, or refuses it."""

    def __call__(self, environ: WSGIEnvironment) -> Target | Malformed: ...


# One canonical form of a path; haproxy/haproxy.cfg refuses the same paths,
# in the same order, with the same reasons (one table tests both:
# tests/path_cases.py). A path with two spellings lets a rule that matches
# one spelling be bypassed by the other: "git-upload%2Dpack" is no git
# endpoint to a router that compares the path as sent, but is one once
# decoded; "%2e%2e" becomes ".." after the authorizer looked; "%2F" makes two
# segments of one. The server has already decoded PATH_INFO, where "%2F" and
# "/" look alike, so the rules read the request target as sent when the
# server passes it on (gunicorn: RAW_URI; others: REQUEST_URI), and PATH_INFO
# otherwise and in any case.
# Percent-encodings that only name a character with no plain spelling in a
# path ("%20", "%25", UTF-8) stay legal: browsers and hgweb use them for file
# names. git and hg never encode a repository path.
# After decoding: dot segments could resolve to another repository than the
# one authorized, "//" is normalised differently by different servers,
# backslashes are path separators to some backends, and control characters
# would forge log lines. No legitimate repository path contains any of them.
_BACKSLASH: Final = ("encoded slash or backslash in path", re.compile(r"\\"))
_DOT_SEGMENT: Final = ("dot segment or empty segment in path", re.compile(r"(?:^|/)\.{1,2}(?:/|$)|//"))
_DECODED_RULES: Final = (
    ("control character in path", re.compile(r"[\x00-\x1f\x7f]")),
    _BACKSLASH,
    _DOT_SEGMENT,
)
_RAW_RULES: Final = (
    ("malformed percent-encoding in path", re.compile(r"%(?![0-9A-Fa-f]{2})")),
    ("encoded control character in path", re.compile(r"%(?:[01][0-9A-Fa-f]|7[Ff])")),
    ("encoded slash or backslash in path", re.compile(r"%(?:2[Ff]|5[Cc])")),
    _BACKSLASH,
    # RFC 3986 2.3: a percent-encoded unreserved character (ALPHA, DIGIT, "-",
    # ".", "_", "~") is the character itself; this covers encoded dot segments.
    ("percent-encoded letter, digit or -._~ in path",
     re.compile(r"%(?:2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])")),
    _DOT_SEGMENT,
)
# The path of an absolute-form request target ("https://host/path").
_SCHEME_AUTHORITY: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/]*")


def repository_path(environ: WSGIEnvironment) -> str | Malformed:
    """``PATH_INFO`` without its outer slashes, or :class:`Malformed` if the path is not canonical.

    The request target as sent (``RAW_URI`` or ``REQUEST_URI``) is checked
    when the server provides it, ``PATH_INFO`` always; never raises.
    """
    path_info = environ.get("PATH_INFO", "")
    raw = environ.get("RAW_URI", environ.get("REQUEST_URI"))
    if not isinstance(path_info, str) or not isinstance(raw, str | None):
        return Malformed("unsafe path")
    refused = _broken(_RAW_RULES, _raw_path(raw)) if raw is not None else None
    refused = refused or _broken(_DECODED_RULES, path_info)
    return Malformed(refused) if refused is not None else path_info.strip("/")


def _broken(rules: tuple[tuple[str, re.Pattern[str]], ...], path: str) -> str | None:
    """The reason of the first rule ``path`` breaks, or None."""
    return next((reason for reason, pattern in rules if pattern.search(path)), None)


def _raw_path(target: str) -> str:
    """The path of a request target as sent: no query, no fragment, no scheme and host."""
    path = target.partition("?")[0].partition("#")[0]
    if not path.startswith("/") and (match := _SCHEME_AUTHORITY.match(path)):
        return path[match.end():]
    return path
