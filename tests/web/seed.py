"""Repositories with a history, made with the real git and hg and put straight into a stack's storage.

The browser tests need more than an empty repository: commits, a README.md,
a subdirectory, a source file, branches and tags (and hg bookmarks). Each
history is built in a work directory with the real client (as the stack's
test clients are configured), then pushed to the repository's directory on
disk, as ``Stack.seed_git`` does: no server in the way, nothing to wait for.

``raw_commit`` writes a git commit as given (``git hash-object --literally``):
git's own ``commit`` strips ``<`` and ``>`` from an author's name, a pushed
commit object need not.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.e2e.stackfixture import Stack

Files = Mapping[str, bytes]


def write_files(work: Path, files: Files) -> None:
    """Write ``files`` (paths relative to ``work``, directories made as needed)."""
    for name, content in files.items():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


class GitHistory:
    """A git work tree whose commits, branches and tags go to a repository of the stack."""

    def __init__(self, stack: Stack, work: Path) -> None:
        self.stack = stack
        self.work = work
        self.git("init", "-q", "-b", "main", str(work), cwd=None)

    def git(self, *args: str, cwd: Path | None | str = "work") -> str:
        where = self.work if cwd == "work" else cwd
        return self.stack.clients.git(*args, cwd=where).stdout.strip()

    def commit(self, message: str, files: Files, *, remove: tuple[str, ...] = ()) -> str:
        """Commit ``files`` (and the removal of ``remove``); the new commit's id."""
        write_files(self.work, files)
        for name in remove:
            self.git("rm", "-q", "--", name)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def raw_commit(self, message: str, author: str) -> str:
        """A commit of the current tree on top of HEAD with ``author`` written as is; HEAD moves to it."""
        tree = self.git("rev-parse", "HEAD^{tree}")
        parent = self.git("rev-parse", "HEAD")
        ident = f"{author} 1700000000 +0000"
        text = f"tree {tree}\nparent {parent}\nauthor {ident}\ncommitter {ident}\n\n{message}\n"
        path = self.work.parent / f"{self.work.name}.commit"
        path.write_text(text)
        commit = self.git("hash-object", "--literally", "-t", "commit", "-w", str(path))
        self.git("update-ref", "HEAD", commit)
        self.git("reset", "-q", "--hard", commit)
        return commit

    def push(self, repo: str) -> None:
        """Push every branch and tag into ``repo`` (OWNER/NAME) on the stack's disk."""
        target = self.stack.settings.repo_root / f"{repo}.git"
        self.git("push", "-q", "--force", str(target), "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*")


class HgHistory:
    """An hg work tree whose changesets, branches, bookmarks and tags go to a repository of the stack."""

    def __init__(self, stack: Stack, work: Path) -> None:
        self.stack = stack
        self.work = work
        stack.clients.hg("init", str(work))

    def hg(self, *args: str) -> str:
        return self.stack.clients.hg(*args, cwd=self.work).stdout.strip()

    def commit(self, message: str, files: Files, *, user: str = "Test User <test@example.com>") -> str:
        """Commit ``files`` as ``user``; the new changeset's node."""
        write_files(self.work, files)
        self.hg("commit", "-A", "-u", user, "-m", message)
        return self.hg("log", "-r", ".", "-T", "{node}")

    def push(self, repo: str) -> None:
        """Push every changeset, branch and bookmark into ``repo`` (OWNER/NAME) on the stack's disk."""
        target = self.stack.settings.repo_root / repo
        self.stack.clients.hg("push", "--new-branch", "-f", str(target), cwd=self.work)
        bookmarks = [name for name in self.hg("bookmarks", "-T", "{bookmark}\n").splitlines() if name]
        if bookmarks:
            # Bookmarks go separately: "push -B" pushes only the bookmarks' ancestors.
            marks = [arg for name in bookmarks for arg in ("-B", name)]
            result = self.stack.clients.hg("push", *marks, str(target), cwd=self.work, check=False)
            assert result.returncode in (0, 1), result.stderr  # 1: no new changesets, bookmarks exported
