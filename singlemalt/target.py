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
from typing import TYPE_CHECKING, Protocol

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


# Dot segments could resolve to another repository than the one authorized,
# "//" is normalised differently by different servers, backslashes are path
# separators to some backends, and control characters would forge log lines.
# No legitimate repository path contains any of them.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]|//|(?:^|/)\.{1,2}(?:/|$)")


def repository_path(path_info: str) -> str | Malformed:
    """Strip slashes from ``PATH_INFO``, refusing paths that are not plainly a path."""
    if _UNSAFE.search(path_info):
        return Malformed("unsafe path")
    return path_info.strip("/")
