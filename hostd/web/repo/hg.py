"""Reading a Mercurial repository for the pages, in-process through Mercurial's API.

The repository is read through the ``served`` filter, as hgweb and the hg
pool serve it: secret and hidden (obsolete) changesets are never shown, not
even by their full id. Names (branches, tags, bookmarks, users, messages)
come back from Mercurial in the local encoding; :func:`_utf8` returns them
to the UTF-8 it keeps internally. File paths are bytes as committed.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from mercurial import encoding, error, hg, initialization
from mercurial import ui as uimod
from mercurial.node import bin, nullrev

from hostd.web.repo import model
from hostd.web.repo.diff import MAX_FILES, Budget, file_diff
from hostd.web.repo.model import LAST_CHANGE_DEPTH, Entry, NotFound, Ref, Refs, Resolved, text

# Mercurial's registrations (template keywords, revsets, ...) made in the order its own commands
# make them: opening a repository first registers namespace keywords that a later import of
# templatekw (hgweb's, in a process that serves both) refuses as duplicates. Idempotent.
initialization.init()

_MISSING = (error.RepoLookupError, error.FilteredRepoLookupError, error.LookupError, LookupError, ValueError)


def _utf8(name: bytes) -> bytes:
    try:
        return bytes(encoding.fromlocal(name))
    except error.Abort:
        return bytes(name)


class HgReader:
    """One repository, open for one computation (``with HgReader(path) as reader: ...``)."""

    vcs = "hg"

    def __init__(self, path: Path, refs: Refs | None = None) -> None:
        """``refs``, when given, is what :meth:`refs` answers (read earlier under the same ref state)."""
        ui = uimod.ui()
        ui.setconfig(b"ui", b"report_untrusted", b"false", b"hostd")
        ui.setconfig(b"ui", b"quiet", b"true", b"hostd")
        self._repo: Any = hg.repository(ui, os.fsencode(path)).filtered(b"served")
        self._refs = refs

    def __enter__(self) -> HgReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._repo.close()

    # --- refs -----------------------------------------------------------------

    def refs(self) -> Refs:
        """Bookmarks, open named branches (at their tip, as ``hg update BRANCH`` takes it) and tags.

        The default is what ``hg clone`` checks out: the ``@`` bookmark,
        else the ``default`` branch, else the branch of the tip.
        """
        if self._refs is not None:
            return self._refs
        repo = self._repo
        bookmarks = sorted(
            (Ref("bookmark", _utf8(name), repo[node].hex().decode())
             for name, node in repo._bookmarks.items() if node in repo),
            key=lambda ref: ref.name,
        )
        branchmap = repo.branchmap()
        branches = sorted(
            (Ref("branch", _utf8(name), repo[branchmap.branchtip(name)].hex().decode())
             for name in branchmap if branchmap.branchheads(name)),
            key=lambda ref: ref.name,
        )
        tags = sorted(
            (Ref("tag", _utf8(name), repo[node].hex().decode())
             for name, node in repo.tagslist() if name != b"tip" and node in repo),
            key=lambda ref: model.version_key(ref.name), reverse=True,
        )
        default: Ref | None = None
        by_name = {(ref.kind, ref.name): ref for ref in bookmarks + branches}
        if len(repo):
            tip_branch = _utf8(repo[b"tip"].branch())
            default = (by_name.get(("bookmark", b"@")) or by_name.get(("branch", b"default"))
                       or by_name.get(("branch", tip_branch)))
        self._refs = Refs(tuple(branches), tuple(tags), tuple(bookmarks), default)
        return self._refs

    def resolve(self, rest: bytes) -> Resolved:
        """``REF/PATH``: the longest prefix that is a bookmark, tag or branch, or else a full changeset id."""
        names: dict[bytes, Ref] = {}
        for ref in reversed(self.refs().in_lookup_order("hg")):
            names[ref.name] = ref
        found, name, path = model.split_rev(rest, names.get)
        if found is not None:
            return Resolved(name, found.target, path)
        if model.is_commit_id(name):
            self._ctx(name.decode())
            return Resolved(None, name.decode(), path)
        raise NotFound(f"No bookmark, tag, branch or changeset named “{text(name)}”.")

    # --- changesets -----------------------------------------------------------

    def _ctx(self, commit_id: str) -> Any:
        try:
            ctx = self._repo[bin(commit_id)]
        except _MISSING:
            ctx = None
        if ctx is None or ctx.rev() == nullrev:  # the null revision is no changeset of this repository
            raise NotFound(f"No changeset {commit_id}.")
        return ctx

    def commit(self, commit_id: str) -> model.Commit:
        return _commit(self._ctx(commit_id))

    def _files(self, ctx: Any, path: bytes) -> tuple[Any, list[bytes]]:
        """The manifest and the paths in it below directory ``path``."""
        manifest = ctx.manifest()
        prefix = path + b"/" if path else b""
        return manifest, [name for name in manifest if name.startswith(prefix)]

    def tree(self, commit_id: str, path: bytes) -> tuple[Entry, ...]:
        """A directory's entries, directories first, then files, each by name (from the manifest)."""
        ctx = self._ctx(commit_id)
        path = path.strip(b"/")
        manifest, below = self._files(ctx, path)
        if path and path in manifest:
            raise model.NotADirectory(f"“{text(path)}” is not a directory.")
        if path and not below:
            raise NotFound(f"No directory “{text(path)}” in {ctx.hex().decode()[:12]}.")
        start = len(path) + 1 if path else 0
        dirs: set[bytes] = set()
        files: list[Entry] = []
        for name in below:
            head, slash, _ = name[start:].partition(b"/")
            if slash:
                dirs.add(head)
                continue
            flags = manifest.flags(name)
            fctx = ctx[name]
            if b"l" in flags:
                target = fctx.data()
                files.append(Entry(head, "symlink", size=len(target), target=target))
            else:
                files.append(Entry(head, "file", executable=b"x" in flags, size=fctx.size()))
        listed = [Entry(name, "dir") for name in sorted(dirs)]
        return tuple(listed + sorted(files, key=lambda entry: entry.name))

    def file(self, commit_id: str, path: bytes) -> model.File:
        ctx = self._ctx(commit_id)
        path = path.strip(b"/")
        manifest, below = self._files(ctx, path)
        if not path or (path not in manifest and below):
            raise model.IsADirectory(f"“{text(path)}” is a directory.")
        if path not in manifest:
            raise NotFound(f"No file “{text(path)}” in {ctx.hex().decode()[:12]}.")
        flags = manifest.flags(path)
        kind: model.EntryKind = "symlink" if b"l" in flags else "file"
        return model.File(path, kind, ctx[path].data(), executable=b"x" in flags)

    # --- history --------------------------------------------------------------

    def history(self, commit_id: str, skip: int, limit: int) -> tuple[model.Commit, ...]:
        """Ancestors of the changeset, newest first (by revision number, as ``hg log -r 'reverse(::X)'``)."""
        ctx = self._ctx(commit_id)
        revs = self._repo.changelog.ancestors([ctx.rev()], inclusive=True)
        return tuple(_commit(self._repo[rev]) for rev in itertools.islice(revs, skip, skip + limit))

    def last_changes(self, commit_id: str, path: bytes, names: frozenset[bytes]) -> dict[bytes, model.Commit]:
        """The last changeset that touched each of ``names`` in directory ``path``, along first parents.

        A changeset's list of touched files is in the changelog, so each step
        costs no manifest read, but a merge's list leaves out what it took
        unchanged from its second parent: a merge's changes are its manifest's
        differences from the first parent's. At most :data:`LAST_CHANGE_DEPTH`
        changesets are read.
        """
        found: dict[bytes, model.Commit] = {}
        remaining = set(names)
        prefix = path.strip(b"/") + b"/" if path.strip(b"/") else b""
        ctx = self._ctx(commit_id)
        for _ in range(LAST_CHANGE_DEPTH):
            if not remaining or ctx.rev() == nullrev:
                break
            touched = ctx.p1().manifest().diff(ctx.manifest()) if ctx.p2().rev() != nullrev else ctx.files()
            for name in touched:
                if name.startswith(prefix):
                    head = name[len(prefix):].partition(b"/")[0]
                    if head in remaining:
                        found[head] = _commit(ctx)
                        remaining.discard(head)
            ctx = ctx.p1()
        return found

    def diff(self, commit_id: str) -> model.Diff:
        """The changeset's changes against its first parent (a merge's too), within the page's limits."""
        ctx = self._ctx(commit_id)
        parent = ctx.p1()
        status = self._repo.status(parent.node(), ctx.node())
        changed = sorted(set(status.modified) | set(status.added) | set(status.removed))
        budget = Budget()
        files: list[model.FileDiff] = []
        for name in changed[:MAX_FILES]:
            old = parent[name].data() if name in parent else None
            new = ctx[name].data() if name in ctx else None
            files.append(file_diff(name if old is not None else None, name if new is not None else None,
                                   old, new, budget))
        note = f"{len(changed) - MAX_FILES:,} more files changed, not shown." if len(changed) > MAX_FILES else None
        return model.Diff(parent.hex().decode() if parent.rev() != nullrev else None, tuple(files), note)


def _commit(ctx: Any) -> model.Commit:
    when, offset = ctx.date()
    return model.Commit(
        id=ctx.hex().decode(),
        parents=tuple(p.hex().decode() for p in ctx.parents() if p.rev() != nullrev),
        author=text(_utf8(ctx.user())),
        when=int(when),
        offset=-int(offset),  # Mercurial keeps seconds west of UTC
        message=text(_utf8(ctx.description())),
    )
