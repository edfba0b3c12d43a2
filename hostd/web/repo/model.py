"""What the repository pages show, independent of the version control system.

The readers (:mod:`hostd.web.repo.git`, :mod:`hostd.web.repo.hg`) turn a
repository into these frozen values; the pages turn the values into HTML.
Names (refs, paths) stay ``bytes``: neither git nor Mercurial promises that
they are UTF-8, and a page must link to a file whose name is not. They are
decoded for display only (:func:`text`), and percent-encoded byte for byte
in URLs (:mod:`hostd.web.repo.urls`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

RefKind = Literal["branch", "tag", "bookmark"]
EntryKind = Literal["dir", "file", "symlink", "submodule"]
ChangeKind = Literal["added", "deleted", "modified"]
LineKind = Literal[" ", "+", "-"]

#: Commits walked back (along first parents) to find each listed entry's last change; entries
#: changed longer ago than that show no commit, so a listing of a long history stays cheap.
LAST_CHANGE_DEPTH = 1000
_DIGITS = re.compile(rb"(\d+)")


class NotFound(Exception):  # noqa: N818 - it is what the visitor sees: "not found"
    """A ref, commit or path the repository does not have; the message is shown to the visitor."""


class NotADirectory(NotFound):
    """A tree page for a path that is a file: the page of the file is elsewhere."""


class IsADirectory(NotFound):
    """A file page for a path that is a directory."""


def text(name: bytes) -> str:
    """A name as text for display: undecodable bytes become U+FFFD (the page links with the bytes)."""
    return name.decode("utf-8", "replace")


def version_key(name: bytes) -> tuple[tuple[int, int, bytes], ...]:
    """Orders names as versions: ``v1.10`` after ``v1.9`` (digits compared as numbers)."""
    # A run of digits longer than any version is compared as text (int() of 5,000 digits raises).
    return tuple((1, int(part), b"") if part.isdigit() and len(part) < 40 else (0, 0, part)
                 for part in _DIGITS.split(name))


def is_binary(data: bytes) -> bool:
    """git's rule (``buffer_is_binary``): a NUL byte in the first 8000 bytes."""
    return b"\0" in data[:8000]


@dataclass(frozen=True, slots=True)
class Ref:
    """A branch, tag or bookmark and the commit it names."""

    kind: RefKind
    name: bytes
    target: str  # full hex commit id

    @property
    def label(self) -> str:
        return text(self.name)


@dataclass(frozen=True, slots=True)
class Refs:
    """Every ref a page can name, and the one a clone checks out (None in an empty repository).

    Branches and bookmarks are in name order, tags newest version first.
    """

    branches: tuple[Ref, ...]
    tags: tuple[Ref, ...]
    bookmarks: tuple[Ref, ...]
    default: Ref | None

    def in_lookup_order(self, vcs: str) -> tuple[Ref, ...]:
        """The refs in the order a name that is several kinds of ref is taken.

        As the VCS's own commands take it: ``git log NAME`` prefers a tag to
        a branch (gitrevisions); ``hg log -r NAME`` prefers a bookmark, then
        a tag, then a branch.
        """
        if vcs == "git":
            return self.tags + self.branches
        return self.bookmarks + self.tags + self.branches


@dataclass(frozen=True, slots=True)
class Resolved:
    """A ``REF/PATH`` of a URL: the ref as named (None for a commit id), its commit, the path below."""

    ref: bytes | None
    commit: str
    path: bytes

    @property
    def rev(self) -> bytes:
        """What URLs name this revision by: the ref, or the commit id."""
        return self.ref if self.ref is not None else self.commit.encode()


def is_commit_id(name: bytes) -> bool:
    """A full commit id as URLs give it: 40 lower-case hex digits (git's SHA-1 and hg's node alike)."""
    return len(name) == 40 and all(c in b"0123456789abcdef" for c in name)


def split_rev(rest: bytes, lookup: Callable[[bytes], Ref | None]) -> tuple[Ref | None, bytes, bytes]:
    """``REF/PATH`` split at the longest prefix that ``lookup`` finds a ref for, as GitHub does.

    Branch names may contain slashes (``feature/x``), so only the refs can
    say where the ref ends. Returns (ref, its name, path); without a ref,
    (None, the first segment, the rest) for the caller to try as a commit id.
    """
    parts = [part for part in rest.split(b"/") if part]
    for end in range(len(parts), 0, -1):
        candidate = b"/".join(parts[:end])
        found = lookup(candidate)
        if found is not None:
            return found, candidate, b"/".join(parts[end:])
    if not parts:
        raise NotFound("No branch, tag or commit given.")
    return None, parts[0], b"/".join(parts[1:])


@dataclass(frozen=True, slots=True)
class Commit:
    """One commit (git) or changeset (hg), decoded for display."""

    id: str
    parents: tuple[str, ...]
    author: str
    when: int  # seconds since the epoch
    offset: int  # the author's UTC offset, seconds east
    message: str

    @property
    def summary(self) -> str:
        lines = self.message.strip().splitlines()
        return lines[0] if lines else ""

    @property
    def short(self) -> str:
        return self.id[:12]


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a directory listing.

    ``size`` is a file's size in bytes; ``target`` a symlink's target (as
    stored, never followed) or a submodule's commit id.
    """

    name: bytes
    kind: EntryKind
    executable: bool = False
    size: int | None = None
    target: bytes | None = None


@dataclass(frozen=True, slots=True)
class File:
    """A file's content at a commit (a symlink's content is its target)."""

    path: bytes
    kind: EntryKind
    data: bytes
    executable: bool = False


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a hunk: its kind, its numbers in the old and new file, its text (without newline)."""

    kind: LineKind
    old: int | None
    new: int | None
    text: str


@dataclass(frozen=True, slots=True)
class Hunk:
    header: str  # "@@ -1,3 +1,4 @@"
    lines: tuple[Line, ...]


@dataclass(frozen=True, slots=True)
class FileDiff:
    """The change of one file. ``note`` says why no lines are shown (binary, too large, cut short)."""

    old_path: bytes | None
    new_path: bytes | None
    change: ChangeKind
    hunks: tuple[Hunk, ...] = ()
    added: int = 0
    removed: int = 0
    binary: bool = False
    note: str | None = None

    @property
    def path(self) -> bytes:
        return self.new_path if self.new_path is not None else self.old_path or b""


@dataclass(frozen=True, slots=True)
class Diff:
    """A commit's changes against its first parent (None: a root commit, against nothing)."""

    parent: str | None
    files: tuple[FileDiff, ...]
    note: str | None = None  # set when files were left out


class Reader(Protocol):
    """What the pages ask of a repository; :class:`~hostd.web.repo.git.GitReader` and
    :class:`~hostd.web.repo.hg.HgReader` answer. Every method raises :class:`NotFound`
    for what the repository does not have."""

    vcs: str

    def refs(self) -> Refs: ...

    def resolve(self, rest: bytes) -> Resolved: ...

    def commit(self, commit_id: str) -> Commit: ...

    def tree(self, commit_id: str, path: bytes) -> tuple[Entry, ...]: ...

    def file(self, commit_id: str, path: bytes) -> File: ...

    def history(self, commit_id: str, skip: int, limit: int) -> tuple[Commit, ...]: ...

    def last_changes(self, commit_id: str, path: bytes, names: frozenset[bytes]) -> dict[bytes, Commit]: ...

    def diff(self, commit_id: str) -> Diff: ...

    def close(self) -> None: ...
