"""The URLs of a repository's pages, built from names as bytes.

Every ref and path goes into a URL percent-encoded byte for byte, ``/``
kept (a ref such as ``feature/x`` and a path below it are found again by
the longest ref prefix, :func:`hostd.web.repo.model.split_rev`): a name
holding ``?``, ``#``, ``%``, a space, markup or bytes that are not UTF-8
links to itself and nothing else. The result is plain ASCII with no quote
or angle bracket, and templates escape it anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


def quoted(name: bytes) -> str:
    """``name`` percent-encoded for a URL path, its ``/`` kept."""
    return quote(name, safe="/")


def join(*parts: bytes) -> bytes:
    """Path segments joined by one ``/``, empty ones left out: ``join(b"a/", b"", b"b") == b"a/b"``."""
    return b"/".join(part.strip(b"/") for part in parts if part.strip(b"/"))


@dataclass(frozen=True, slots=True)
class RepoUrls:
    """The pages of one repository (``owner`` and ``name`` as hostd stores them: validated, lower case)."""

    owner: str
    name: str

    @property
    def home(self) -> str:
        return f"/{quote(self.owner)}/{quote(self.name)}"

    def tree(self, rev: bytes, path: bytes = b"") -> str:
        return f"{self.home}/tree/{quoted(join(rev, path))}"

    def blob(self, rev: bytes, path: bytes) -> str:
        return f"{self.home}/blob/{quoted(join(rev, path))}"

    def raw(self, rev: bytes, path: bytes) -> str:
        return f"{self.home}/raw/{quoted(join(rev, path))}"

    def commits(self, rev: bytes) -> str:
        return f"{self.home}/commits/{quoted(rev)}"

    def commit(self, commit_id: str) -> str:
        return f"{self.home}/commit/{quote(commit_id)}"

    @property
    def branches(self) -> str:
        return f"{self.home}/branches"

    @property
    def tags(self) -> str:
        return f"{self.home}/tags"

    @property
    def bookmarks(self) -> str:
        return f"{self.home}/bookmarks"

    def crumbs(self, rev: bytes, path: bytes) -> list[tuple[bytes, str]]:
        """Each directory above ``path`` (and the top, named by the repository) with its tree URL."""
        crumbs = [(self.name.encode(), self.tree(rev))]
        parts = [part for part in path.split(b"/") if part]
        for end in range(1, len(parts)):
            crumbs.append((parts[end - 1], self.tree(rev, b"/".join(parts[:end]))))
        return crumbs
