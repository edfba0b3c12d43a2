"""Reading a bare git repository for the pages, in-process through dulwich.

Never through the git pool and never by running git: a page is a handful of
object reads, and the web tier stays off the clone and push path. Nothing
here follows a symlink on disk: a symlink in a tree is a blob whose content
is its target, shown as text.
"""

from __future__ import annotations

import itertools
import stat
from pathlib import Path

from dulwich.diff_tree import tree_changes
from dulwich.object_store import peel_sha
from dulwich.objects import S_ISGITLINK, Blob, Commit, ObjectID, Tree, TreeEntry
from dulwich.refs import Ref as DulwichRef
from dulwich.refs import check_ref_format
from dulwich.repo import Repo

from hostd.web.repo import model
from hostd.web.repo.diff import MAX_FILES, Budget, file_diff
from hostd.web.repo.model import LAST_CHANGE_DEPTH, Entry, NotFound, Ref, Refs, Resolved, text

#: The branch names tried, in order, when HEAD names a branch that does not exist.
_FALLBACK_BRANCHES = (b"main", b"master")

_HEADS = b"refs/heads/"
_TAGS = b"refs/tags/"


class GitReader:
    """One bare repository, open for one computation (``with GitReader(path) as reader: ...``)."""

    vcs = "git"

    def __init__(self, path: Path, refs: Refs | None = None) -> None:
        """``refs``, when given, is what :meth:`refs` answers (read earlier under the same ref state)."""
        self._repo = Repo(str(path), bare=True)
        self._store = self._repo.object_store
        self._known = refs

    def __enter__(self) -> GitReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._repo.close()

    # --- refs -----------------------------------------------------------------

    def refs(self) -> Refs:
        """Branches and tags (peeled to commits; a tag of a tree or blob is left out) and HEAD's branch."""
        if self._known is not None:
            return self._known
        branches: list[Ref] = []
        tags: list[Ref] = []
        for name, sha in sorted(self._repo.refs.as_dict(DulwichRef(_HEADS)).items()):
            branches.append(Ref("branch", name, sha.decode()))
        for name, sha in self._repo.refs.as_dict(DulwichRef(_TAGS)).items():
            target = self._peel(self._repo.refs.get_peeled(DulwichRef(_TAGS + name)) or sha)
            if target is not None:
                tags.append(Ref("tag", name, target))
        tags.sort(key=lambda tag: model.version_key(tag.name), reverse=True)
        return Refs(tuple(branches), tuple(tags), (), self._default(branches))

    def _default(self, branches: list[Ref]) -> Ref | None:
        """What a clone checks out: HEAD's branch; if that does not exist (yet), main, master or the first."""
        if not branches:
            return None
        by_name = {ref.name: ref for ref in branches}
        head = self._repo.refs.read_ref(DulwichRef(b"HEAD")) or b""
        if head.startswith(b"ref: " + _HEADS) and head[len(b"ref: " + _HEADS):].strip() in by_name:
            return by_name[head[len(b"ref: " + _HEADS):].strip()]
        for name in _FALLBACK_BRANCHES:
            if name in by_name:
                return by_name[name]
        return branches[0]

    def _ref(self, full: bytes, kind: model.RefKind, name: bytes) -> Ref | None:
        refs = self._repo.refs
        # check_ref_format refuses "..", control characters and the rest git refuses, so a
        # name taken from a URL never reaches the file system as anything but a ref.
        if not check_ref_format(DulwichRef(full)):
            return None
        try:
            sha = refs.get_peeled(DulwichRef(full)) or refs[DulwichRef(full)]
        except KeyError:
            return None
        target = self._peel(sha)
        return Ref(kind, name, target) if target is not None else None

    def _peel(self, sha: ObjectID) -> str | None:
        """The commit a ref names, through annotated tags; None for a tree, a blob or a missing object."""
        try:
            _, peeled = peel_sha(self._store, sha)
        except KeyError:
            return None
        return peeled.id.decode() if isinstance(peeled, Commit) else None

    def _lookup(self, name: bytes) -> Ref | None:
        # gitrevisions' order: a tag before a branch of the same name.
        return self._ref(_TAGS + name, "tag", name) or self._ref(_HEADS + name, "branch", name)

    def resolve(self, rest: bytes) -> Resolved:
        """``REF/PATH``: the longest prefix that is a tag or branch, or else a full commit id."""
        found, name, path = model.split_rev(rest, self._lookup)
        if found is not None:
            return Resolved(name, found.target, path)
        if model.is_commit_id(name):
            self._commit(name.decode())
            return Resolved(None, name.decode(), path)
        raise NotFound(f"No branch, tag or commit named “{text(name)}”.")

    # --- objects --------------------------------------------------------------

    def _commit(self, commit_id: str) -> Commit:
        try:
            obj = self._store[ObjectID(commit_id.encode())]
        except (KeyError, ValueError):
            raise NotFound(f"No commit {commit_id}.") from None
        if not isinstance(obj, Commit):
            raise NotFound(f"No commit {commit_id}.")
        return obj

    def commit(self, commit_id: str) -> model.Commit:
        return _commit(self._commit(commit_id))

    def _find(self, commit: Commit, path: bytes) -> tuple[int, ObjectID] | None:
        """The mode and object of ``path`` in ``commit`` (the top directory for ``b""``), None if absent."""
        mode, sha = stat.S_IFDIR, commit.tree
        for part in path.split(b"/"):
            if not part:
                continue
            tree = self._store[sha] if stat.S_ISDIR(mode) else None
            if not isinstance(tree, Tree) or part not in tree:
                return None
            mode, sha = tree[part]
        return mode, sha

    def _tree_at(self, commit: Commit, path: bytes) -> Tree | None:
        """The tree at ``path`` of ``commit``, None if there is none."""
        found = self._find(commit, path)
        tree = self._store[found[1]] if found is not None and stat.S_ISDIR(found[0]) else None
        return tree if isinstance(tree, Tree) else None

    def _lookup_path(self, commit: Commit, path: bytes) -> tuple[int, ObjectID]:
        found = self._find(commit, path)
        if found is None:
            raise NotFound(f"No file or directory “{text(path)}” in {commit.id.decode()[:12]}.")
        return found

    def tree(self, commit_id: str, path: bytes) -> tuple[Entry, ...]:
        """A directory's entries, directories (and submodules) first, then files, each by name."""
        commit = self._commit(commit_id)
        if path:
            mode, _ = self._lookup_path(commit, path)
            if not stat.S_ISDIR(mode):
                raise model.NotADirectory(f"“{text(path)}” is not a directory.")
        tree = self._tree_at(commit, path)
        if tree is None:
            raise NotFound(f"No directory “{text(path)}”.")
        entries = [self._entry(name, mode, sha) for name, mode, sha in tree.iteritems()]
        return tuple(sorted(entries, key=lambda e: (e.kind not in ("dir", "submodule"), e.name)))

    def _entry(self, name: bytes, mode: int, sha: ObjectID) -> Entry:
        if S_ISGITLINK(mode):
            return Entry(name, "submodule", target=sha)
        if stat.S_ISDIR(mode):
            return Entry(name, "dir")
        blob = self._store[sha]
        data = blob.as_raw_string() if isinstance(blob, Blob) else b""
        if stat.S_ISLNK(mode):
            return Entry(name, "symlink", size=len(data), target=data)
        return Entry(name, "file", executable=bool(mode & 0o111), size=len(data))

    def file(self, commit_id: str, path: bytes) -> model.File:
        commit = self._commit(commit_id)
        if not path:
            raise model.IsADirectory("The top directory is not a file.")
        mode, sha = self._lookup_path(commit, path)
        if stat.S_ISDIR(mode):
            raise model.IsADirectory(f"“{text(path)}” is a directory.")
        if S_ISGITLINK(mode):
            raise NotFound(f"“{text(path)}” is a submodule at {sha.decode()}.")
        blob = self._store[sha]
        data = blob.as_raw_string() if isinstance(blob, Blob) else b""
        kind: model.EntryKind = "symlink" if stat.S_ISLNK(mode) else "file"
        return model.File(path, kind, data, executable=bool(mode & 0o111) and kind == "file")

    # --- history --------------------------------------------------------------

    def history(self, commit_id: str, skip: int, limit: int) -> tuple[model.Commit, ...]:
        """Commits reachable from ``commit_id``, newest first (git log's default order), one page of them."""
        commit = self._commit(commit_id)
        walker = self._repo.get_walker(include=[commit.id], max_entries=skip + limit)
        return tuple(_commit(entry.commit) for entry in itertools.islice(walker, skip, skip + limit))

    def last_changes(self, commit_id: str, path: bytes, names: frozenset[bytes]) -> dict[bytes, model.Commit]:
        """The last commit that changed each of ``names`` in directory ``path``, along first parents.

        At most :data:`LAST_CHANGE_DEPTH` commits are read; a name changed
        before that is left out.
        """
        found: dict[bytes, model.Commit] = {}
        remaining = set(names)
        commit = self._commit(commit_id)
        tree = self._tree_at(commit, path)
        for _ in range(LAST_CHANGE_DEPTH):
            if not remaining or tree is None:
                break
            parent = self._commit(commit.parents[0].decode()) if commit.parents else None
            before = self._tree_at(parent, path) if parent is not None else None
            if before is None or before.id != tree.id:
                old = {name: (mode, sha) for name, mode, sha in before.iteritems()} if before is not None else {}
                for name, mode, sha in tree.iteritems():
                    if name in remaining and old.get(name) != (mode, sha):
                        found[name] = _commit(commit)
                        remaining.discard(name)
            if parent is None:
                break
            commit, tree = parent, before
        return found

    def diff(self, commit_id: str) -> model.Diff:
        """The commit's changes against its first parent (a merge's too), within the page's limits."""
        commit = self._commit(commit_id)
        parent = self._commit(commit.parents[0].decode()) if commit.parents else None
        changes = sorted(
            ((_side(change.old), _side(change.new)) for change in
             tree_changes(self._store, parent.tree if parent else None, commit.tree, change_type_same=True)),
            key=lambda pair: pair[1][0] or pair[0][0] or b"",
        )
        budget = Budget()
        files: list[model.FileDiff] = []
        for old, new in changes[:MAX_FILES]:
            files.append(self._file_diff(*old, *new, budget))
        note = f"{len(changes) - MAX_FILES:,} more files changed, not shown." if len(changes) > MAX_FILES else None
        return model.Diff(parent.id.decode() if parent else None, tuple(files), note)

    def _file_diff(self, old_path: bytes | None, old_mode: int | None, old_sha: ObjectID | None,
                   new_path: bytes | None, new_mode: int | None, new_sha: ObjectID | None,
                   budget: Budget) -> model.FileDiff:
        if (old_mode is not None and S_ISGITLINK(old_mode)) or (new_mode is not None and S_ISGITLINK(new_mode)):
            change: model.ChangeKind = "added" if old_sha is None else "deleted" if new_sha is None else "modified"
            before = old_sha.decode()[:12] if old_sha else "none"
            after = new_sha.decode()[:12] if new_sha else "none"
            return model.FileDiff(old_path if old_sha else None, new_path if new_sha else None, change,
                                  note=f"Submodule: {before} → {after}.")
        old = self._data(old_sha)
        new = self._data(new_sha)
        return file_diff(old_path if old is not None else None, new_path if new is not None else None,
                         old, new, budget)

    def _data(self, sha: ObjectID | None) -> bytes | None:
        if sha is None:
            return None
        blob = self._store[sha]
        return blob.as_raw_string() if isinstance(blob, Blob) else b""


def _side(entry: TreeEntry | None) -> tuple[bytes | None, int | None, ObjectID | None]:
    """One side of a tree change: (path, mode, object), all None where the file does not exist."""
    if entry is None:
        return None, None, None
    return entry.path, entry.mode, entry.sha


def _commit(commit: Commit) -> model.Commit:
    return model.Commit(
        id=commit.id.decode(),
        parents=tuple(parent.decode() for parent in commit.parents),
        author=text(commit.author),
        when=commit.author_time,
        offset=commit.author_timezone,
        message=text(commit.message),
    )
