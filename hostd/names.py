"""Validation of user and repository names, and of repository URL paths.

Case rule: names are case-insensitive and stored in lower case. A request for
``/Alice/Demo.git`` reaches ``alice/demo``; two repositories can never differ
only by case, so no file system (case-folding or not) sees two spellings.

A name is 1-100 characters of ``[a-z0-9._-]``, starting with a letter or digit
(no leading dot: no ``..``, no hidden directories, no ``.hg``/``.git``
lookalikes; no leading dash: never read as an option by a command line tool).
Repository names may not end in ``.git`` (that suffix belongs to the URL of a
git repository) and no name is one of the reserved words below, which the
web tier and the health checks use as the first path segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}\Z")
RESERVED = frozenset({"healthz", "readyz", "static", "login", "logout", "api", "metrics", "stats"})


@dataclass(frozen=True, slots=True)
class RepoName:
    """A valid ``OWNER/NAME`` pair, already lower-cased."""

    owner: str
    name: str

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"


def normalize_name(text: str) -> str | None:
    """Return the canonical (lower-case) form of a user or repository name, or None."""
    lowered = text.lower()
    if not _NAME.match(lowered) or lowered in RESERVED or ".." in lowered:
        return None
    return lowered


def parse_repo_name(text: str) -> RepoName | None:
    """Parse ``OWNER/NAME`` as typed on the command line; None when invalid."""
    parts = text.split("/")
    if len(parts) != 2:
        return None
    owner, name = (normalize_name(part) for part in parts)
    if owner is None or name is None or name.endswith(".git"):
        return None
    return RepoName(owner, name)


def parse_repo_path(path: str) -> tuple[RepoName, bool] | None:
    """Parse a repository path from a URL (``alice/demo.git`` or ``alice/demo``).

    Returns the name and whether the URL used the ``.git`` suffix, or None when
    the path is not exactly two valid segments.
    """
    stripped = path.strip("/")
    git_suffix = stripped.lower().endswith(".git")
    if git_suffix:
        stripped = stripped[: -len(".git")]
    repo = parse_repo_name(stripped)
    return None if repo is None else (repo, git_suffix)
