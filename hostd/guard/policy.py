"""hostd's authorization hook for singlemalt: who may read or write what.

The policy answers for one pool: the git pool only knows git repositories and
the hg pool only hg ones, so a name that is a repository of the other kind is
"not found" there, exactly like a name that does not exist.

The repository row the policy reads to decide travels with its decision
(``Allowed.resource``), and the pool apps take it from there with
:func:`decided_repository`: a request reads its row once. The policy reads
through :class:`hostd.store.records.Records` in the pools, so a warm request
reads nothing from the database at all.

When the database is unreachable, reads are decided from what is cached
(stale-if-error, see :mod:`hostd.store.records`), but a write never is: a
push is only let through while the database can be written to, so that a
push that lands is also recorded, and one that cannot be is refused before
anything changes with a 503 that says so (:class:`singlemalt.Unavailable`),
never a 500 or a hang. The same for a push to a repository in the read-only
window of its move to another shard (``hostd repo move``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, Protocol

from hostd.names import RepoName, parse_repo_path
from hostd.store.accounts import Level, Repo
from hostd.store.database import DatabaseUnavailable
from singlemalt import Action, Allowed, Decision, Denied, Identity, Target, Unavailable

log = logging.getLogger(__name__)

#: What a refused push tells the git or hg user (it is also the 503's reason phrase).
PUSH_UNAVAILABLE: Final = (
    "hostd's database is unavailable; the push was not accepted, nothing changed; try again shortly"
)
READ_UNAVAILABLE: Final = "hostd's database is unavailable; try again shortly"
#: What a push is told during its repository's move to another shard (``{}``: the repository).
MOVING: Final = "{} is read-only for a few seconds while it moves to another storage shard; push again shortly"
#: Seconds a client is told to wait (``Retry-After``).
RETRY_AFTER: Final = 5


class RepositoryRecords(Protocol):
    """Where the policy reads repositories and grants: :class:`~hostd.store.records.Records`
    (cached) in the pools, or :class:`~hostd.store.accounts.Accounts`."""

    def repo(self, ref: RepoName) -> Repo | None: ...

    def level(self, username: str | None, repo: Repo) -> Level: ...


#: Asked before a write is allowed: None when the database can take it now, else why not.
WriteCheck = Callable[[], str | None]


def decided_repository(environ: dict[str, Any]) -> Repo | None:
    """The repository singlemalt's decision allowed this request on, or None.

    None (the apps answer "not found") when no allowed decision carries a
    repository: an app mounted without singlemalt in front serves nothing.
    """
    decision = environ.get("singlemalt.decision")
    if isinstance(decision, Allowed) and isinstance(decision.resource, Repo):
        return decision.resource
    return None


class RepositoryPolicy:
    """Decide access to repositories from owners, grants and the public flag."""

    def __init__(self, accounts: RepositoryRecords, *, vcs: str | None,
                 writable: WriteCheck | None = None) -> None:
        self.accounts = accounts
        self.vcs = vcs
        self.writable = writable

    def resolve(self, path: str) -> Repo | None:
        """The repository a URL path names in this pool, or None."""
        parsed = parse_repo_path(path)
        if parsed is None:
            return None
        ref, git_suffix = parsed
        if git_suffix and self.vcs not in (None, "git"):
            return None
        repo = self.accounts.repo(ref)
        if repo is None or (self.vcs is not None and repo.vcs != self.vcs):
            return None
        if git_suffix and repo.vcs != "git":
            return None
        return repo

    def public_elsewhere(self, path: str) -> Repo | None:
        """The repository of the other kind that ``path`` names, when anyone may read it; else None.

        What :class:`hostd.guard.wrongvcs.WrongVcsHint` tells a git client
        that asked for a Mercurial repository (and the reverse). Never a
        private one: a stranger must not learn that it exists. None as well
        when this pool serves the name, and when the database cannot say.
        """
        parsed = parse_repo_path(path)
        if parsed is None or self.vcs is None:
            return None
        ref, git_suffix = parsed
        try:
            repo = self.accounts.repo(ref)
            if repo is None or (repo.vcs == self.vcs and not (git_suffix and repo.vcs != "git")):
                return None
            return repo if self.accounts.level(None, repo) >= Level.READ else None
        except DatabaseUnavailable:
            return None  # the policy answers (503), as for any other request

    def __call__(self, identity: Identity | None, target: Target) -> Decision:
        write = target.action is Action.WRITE
        try:
            decision = self._decide(identity, target)
        except DatabaseUnavailable:
            raise Unavailable(PUSH_UNAVAILABLE if write else READ_UNAVAILABLE, retry_after=RETRY_AFTER) from None
        if write and isinstance(decision, Allowed) and isinstance(decision.resource, Repo) \
                and decision.resource.moving_to is not None:
            # Told only to someone allowed to push: a stranger learns nothing.
            raise Unavailable(MOVING.format(decision.resource.ref), retry_after=RETRY_AFTER)
        if write and isinstance(decision, Allowed) and self.writable is not None:
            problem = self.writable()
            if problem is not None:
                # The cache may still say yes; the database must take the
                # push (and its push-log entry) now, or it is not accepted.
                log.warning("write to %s refused: %s", target.repository, problem)
                raise Unavailable(PUSH_UNAVAILABLE, retry_after=RETRY_AFTER)
        return decision

    def _decide(self, identity: Identity | None, target: Target) -> Decision:
        repo = self.resolve(target.repository)
        if repo is None:
            return Denied(f"no repository {target.repository!r} in this pool")
        level = self.accounts.level(identity.username if identity else None, repo)
        needed = Level.WRITE if target.action is Action.WRITE else Level.READ
        if level >= needed:
            return Allowed(f"{level.name.lower()} access to {repo.ref}", resource=repo)
        if level >= Level.READ:
            return Denied(f"You have read-only access to {repo.ref}; pushing needs write access.", reveal=True)
        return Denied(f"no access to {repo.ref}")

    def deploy_key(self, repo: RepoName) -> RepositoryPolicy:
        """The policy of a deploy key of ``repo``: that repository only, whoever owns it.

        Whether the key may push is its identity's scope (singlemalt refuses
        a read-only one: "deploy key is read-only"); the checks of a write
        (a moving repository, the database) are this policy's own.
        """
        return _DeployKeyPolicy(self.accounts, vcs=self.vcs, writable=self.writable, repo=repo)


class _DeployKeyPolicy(RepositoryPolicy):
    def __init__(self, accounts: RepositoryRecords, *, vcs: str | None, writable: WriteCheck | None,
                 repo: RepoName) -> None:
        super().__init__(accounts, vcs=vcs, writable=writable)
        self.repo = repo

    def _decide(self, identity: Identity | None, target: Target) -> Decision:
        repo = self.resolve(target.repository)
        if repo is None or repo.ref != self.repo:
            return Denied(f"a deploy key of {self.repo} does not reach {target.repository!r}")
        return Allowed(f"deploy key of {repo.ref}", resource=repo)
