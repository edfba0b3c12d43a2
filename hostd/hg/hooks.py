"""The hg pool's push log: Mercurial transaction hooks that record who moved what.

An hg push is one Mercurial transaction, and three in-process hooks follow it:

* ``pretxnopen`` snapshots every branch's heads. The repository lock is
  already held, so no other push can land between the snapshot and ours.
* ``pretxnclose`` (still under the lock; complete but not yet committed)
  compares the heads with the snapshot, and reads the moved bookmarks from
  the transaction's own change record (``tr.changes``).
* ``txnclose`` runs once the transaction is committed and the lock released,
  and only then writes the entries to the :class:`~hostd.store.pushlog.PushLog`.

Usage (what :class:`hostd.hg.app.HgApp` does)::

    install_hooks(ui)                                   # once, on the base ui
    environ[ENVIRON_KEY] = PushRecorder(log, repo, user)  # per request

Per-request state: the hooks are configured once, on the ui every hgweb
instance copies, and keep nothing between calls. What belongs to one push
(repository, user, snapshots) lives in the :class:`PushRecorder` that HgApp
puts into that request's WSGI environ. hgweb hands each request a repository
object no other thread holds (``hgweb._obtainrepo``) and points its
``repo.ui.environ`` at that request's environ, which is how a hook finds its
recorder without any shared registry. An SSH session
(:mod:`hostd.hg.sshserve`) has a ui and a repository of its own, and gives
that ui an environ made by :func:`with_recorder`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Protocol

from mercurial import encoding, error
from mercurial.node import hex as hexnode

from hostd.names import RepoName

log = logging.getLogger(__name__)

ENVIRON_KEY = "hostd.pushrecorder"
# hgweb re-encodes every WSGI environ key to bytes (ISO-8859-1, per PEP 3333).
_RAW_KEY = ENVIRON_KEY.encode("iso-8859-1")
ZERO = "0" * 40
# A name no account can have (names are [a-z0-9._-]): marks a push that
# reached hgweb without an authenticated user, which singlemalt never allows.
UNKNOWN_USER = "(unknown)"

Update = tuple[str, str, str]
Heads = dict[bytes, frozenset[int]]


class PushLogWriter(Protocol):
    """Where pushes are recorded: :class:`hostd.store.pushlog.PushLog` in the pool."""

    def record(self, repo: RepoName, username: str, updates: list[Update]) -> None: ...


@dataclass(slots=True)
class PushRecorder:
    """One request's pushes to one repository, by Mercurial transaction id.

    ``_heads`` holds the snapshot taken when a transaction opened, ``_ready``
    the entries computed before it committed; both are keyed by ``txnid`` so
    that two transactions in one request can never be confused.
    """

    pushlog: PushLogWriter
    repo: RepoName
    username: str
    _heads: dict[bytes, Heads] = field(default_factory=dict)
    _ready: dict[bytes, list[Update]] = field(default_factory=dict)

    def opened(self, txnid: bytes, heads: Heads) -> None:
        """Keep the heads as they were when ``txnid`` opened."""
        self._heads[txnid] = heads

    def snapshot(self, txnid: bytes) -> Heads:
        """The heads when ``txnid`` opened; KeyError if it was never seen."""
        return self._heads[txnid]

    def prepared(self, txnid: bytes, updates: list[Update]) -> None:
        """Hold the entries of ``txnid`` until it has committed."""
        self._heads.pop(txnid, None)
        self._ready[txnid] = updates

    def committed(self, txnid: bytes) -> None:
        """Write what the committed transaction changed; never raises: the
        push has already happened, so a failure here can only be logged."""
        updates = self._ready.pop(txnid, None)
        if updates is None:
            log.error("hg push to %s by %s committed without push-log data", self.repo, self.username)
            return
        try:
            self.pushlog.record(self.repo, self.username, updates)
        except Exception:
            log.exception("hg push to %s by %s not recorded: %r", self.repo, self.username, updates)

    def aborted(self, txnid: bytes) -> None:
        """Drop everything about ``txnid``: rolled back, nothing to record."""
        self._heads.pop(txnid, None)
        self._ready.pop(txnid, None)


def head_moves(
    before: Mapping[bytes, Set[int]],
    after: Mapping[bytes, Set[int]],
    ancestors: Callable[[int, int], Iterable[int]],
) -> list[tuple[bytes, int | None, int | None]]:
    """Pair each branch's replaced heads with the new heads that replaced them.

    ``ancestors(rev, floor)`` yields the proper ancestors of ``rev`` that are
    at least ``floor`` (parents always have lower revision numbers, so the
    walk can stop at the oldest replaced head). A new head that descends from
    no replaced head was added beside the others (``None`` as old: a new
    branch, or a new anonymous head pushed with ``-f``); a merge that joins
    two heads gives two entries. A head that disappears without a descendant
    cannot come from a push, but is reported (``None`` as new) rather than
    lost.
    """
    moves: list[tuple[bytes, int | None, int | None]] = []
    for branch in sorted(before.keys() | after.keys()):
        old = before.get(branch, frozenset())
        new = after.get(branch, frozenset())
        gone = old - new
        floor = min(gone, default=0)
        replaced: set[int] = set()
        for head in sorted(new - old):
            found: set[int] = set()
            if gone:
                for rev in ancestors(head, floor):
                    if rev in gone:
                        found.add(rev)
                        if len(found) == len(gone):
                            break
            replaced |= found
            moves.extend((branch, rev, head) for rev in sorted(found))
            if not found:
                moves.append((branch, None, head))
        moves.extend((branch, rev, None) for rev in sorted(gone - replaced))
    return moves


def _branch_heads(repo: Any) -> Heads:
    """Every branch's heads (closed ones too), as revision numbers.

    The unfiltered repository: what is on disk, whatever a view would hide.
    """
    unfiltered = repo.unfiltered()
    branchmap = unfiltered.branchmap()
    rev = unfiltered.changelog.rev
    return {name: frozenset(rev(n) for n in branchmap.branchheads(name, closed=True)) for name in branchmap}


def _text(name: bytes) -> str:
    """Mercurial keeps names as UTF-8 bytes; never fail on a stray byte."""
    return name.decode("utf-8", "replace")


def compute_updates(repo: Any, before: Heads, changes: Mapping[bytes, Any]) -> list[Update]:
    """The ``(ref, old, new)`` entries of one transaction, from inside it."""
    changelog = repo.unfiltered().changelog

    def ancestors(rev: int, floor: int) -> Iterable[int]:
        return changelog.ancestors([rev], stoprev=floor)  # type: ignore[no-any-return]

    def node(rev: int | None) -> str:
        return ZERO if rev is None else hexnode(changelog.node(rev)).decode("ascii")

    updates = [
        (f"branch:{_text(branch)}", node(old), node(new))
        for branch, old, new in head_moves(before, _branch_heads(repo), ancestors)
    ]
    # Bookmark names are held in the local encoding; fromlocal gives back UTF-8.
    for name, (old_node, new_node) in sorted(changes.get(b"bookmarks", {}).items()):
        old = ZERO if old_node is None else hexnode(old_node).decode("ascii")
        new = ZERO if new_node is None else hexnode(new_node).decode("ascii")
        if old != new:
            updates.append((f"bookmark:{_text(encoding.fromlocal(name))}", old, new))
    return updates


def with_recorder(environ: Mapping[bytes, Any], recorder: PushRecorder) -> dict[bytes, Any]:
    """A copy of ``environ`` that carries ``recorder`` where the hooks look for it.

    For a ui that no hgweb request sets up (an SSH session's): assign the
    result to that session's own ``ui.environ``; ``environ`` is not changed.
    """
    return {**environ, _RAW_KEY: recorder}


def _recorder(repo: Any) -> PushRecorder | None:
    # repo.ui.environ is the current request's environ (set by hgweb per
    # request, or by with_recorder for an SSH session); otherwise it is the
    # process environment.
    found = repo.ui.environ.get(_RAW_KEY)
    return found if isinstance(found, PushRecorder) else None


def _refuse(what: str, recorder: PushRecorder) -> error.Abort:
    """A push the log cannot describe is refused: every accepted push is recorded."""
    log.exception("hg push log: %s failed for %s", what, recorder.repo)
    return error.Abort(b"push refused: the push log is unavailable")


def on_pretxnopen(ui: Any, repo: Any, hooktype: bytes, txnid: bytes, **kwargs: Any) -> bool:
    """Snapshot the branch heads before anything changes (lock held)."""
    recorder = _recorder(repo)
    if recorder is not None:
        try:
            recorder.opened(txnid, _branch_heads(repo))
        except Exception:
            raise _refuse("head snapshot", recorder) from None
    return False


def on_pretxnclose(ui: Any, repo: Any, hooktype: bytes, txnid: bytes, changes: Any = None,
                   **kwargs: Any) -> bool:
    """Work out the entries while the lock still guarantees they are ours alone."""
    recorder = _recorder(repo)
    if recorder is not None:
        try:
            before = recorder.snapshot(txnid)
            recorder.prepared(txnid, compute_updates(repo, before, changes or {}))
        except Exception:
            raise _refuse("head comparison", recorder) from None
    return False


def on_txnclose(ui: Any, repo: Any, hooktype: bytes, txnid: bytes, **kwargs: Any) -> bool:
    """Record the push: the transaction is committed and the lock released."""
    recorder = _recorder(repo)
    if recorder is not None:
        recorder.committed(txnid)
    return False


def on_txnabort(ui: Any, repo: Any, hooktype: bytes, txnid: bytes, **kwargs: Any) -> bool:
    """Forget an aborted transaction: nothing happened, nothing is recorded."""
    recorder = _recorder(repo)
    if recorder is not None:
        recorder.aborted(txnid)
    return False


HOOKS: tuple[tuple[bytes, Callable[..., bool]], ...] = (
    (b"pretxnopen.hostd-pushlog", on_pretxnopen),
    (b"pretxnclose.hostd-pushlog", on_pretxnclose),
    (b"txnclose.hostd-pushlog", on_txnclose),
    (b"txnabort.hostd-pushlog", on_txnabort),
)


def install_hooks(ui: Any) -> None:
    """Configure the hooks on a ui; hgweb copies it into every repository.

    The hooks are Python callables, not ``python:module.func`` strings, so no
    hgrc can replace them; they do nothing for a request without a recorder.
    """
    for name, function in HOOKS:
        ui.setconfig(b"hooks", name, function, b"hostd")
