"""The expensive parts of repository pages, kept in memory per repository state.

A page's body (a listing, a rendered README, a highlighted file, a diff)
depends only on the repository's content at the revision it names, never on
who looks: it is computed once and kept in a bounded LRU (by bytes) under
the repository's ref state (:mod:`hostd.store.refstate`), so a push makes
the next view fresh and an unchanged repository is served from memory. The
header of a page (the signed-in user, the CSRF token) is rendered per
request and never kept here.

A git page named by a full commit id is the same forever: it is kept
without the ref state. Not so in Mercurial, where a changeset can become
secret or hidden and must then stop being shown: hg pages are always kept
under the ref state, whose fingerprint covers phases and obsolescence.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hostd.store.memorycache import MemoryCache
from hostd.store.refstate import HgRefState, PerRefState, RefState

T = TypeVar("T")

#: Bytes kept per worker process, and the largest single body kept.
BUDGET = 64 << 20
LARGEST = 8 << 20


class PageCache:
    """Page bodies per (repository, ref state, page); one per process, shared by its threads."""

    def __init__(self, memory: MemoryCache | None = None) -> None:
        self.memory = memory or MemoryCache(budget=BUDGET, largest=LARGEST)
        self._states = {"git": PerRefState(self.memory, RefState()), "hg": PerRefState(self.memory, HgRefState())}

    def current(self, vcs: str, path: Path, what: object, compute: Callable[[], bytes]) -> bytes:
        """``compute()``'s answer for the repository's current ref state."""
        return self._states[vcs].get(path, ("page", what), compute)

    def fixed(self, vcs: str, path: Path, what: object, compute: Callable[[], bytes]) -> bytes:
        """An answer that depends on a full commit id alone: kept regardless of refs in git (see above)."""
        if vcs != "git":
            return self.current(vcs, path, what, compute)
        key = ("fixed", str(path), what)
        found = self.memory.get(key)
        if found is None:
            found = compute()
            self.memory.put(key, found)
        return found

    def value(self, vcs: str, path: Path, what: object, compute: Callable[[], T]) -> T:
        """A Python value (the refs, say) kept like :meth:`current`, pickled: only this process reads it back."""
        data = self.current(vcs, path, ("value", what), lambda: pickle.dumps(compute()))
        result: T = pickle.loads(data)  # noqa: S301 - written by this process, never by a client
        return result
