"""hostd's authorization hook for singlemalt: who may read or write what.

The policy answers for one pool: the git pool only knows git repositories and
the hg pool only hg ones, so a name that is a repository of the other kind is
"not found" there, exactly like a name that does not exist.

The repository row the policy reads to decide travels with its decision
(``Allowed.resource``), and the pool apps take it from there with
:func:`decided_repository`: a request reads its row once.
"""

from __future__ import annotations

from typing import Any

from hostd.names import parse_repo_path
from hostd.store.accounts import Accounts, Level, Repo
from singlemalt import Action, Allowed, Decision, Denied, Identity, Target


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

    def __init__(self, accounts: Accounts, *, vcs: str | None) -> None:
        self.accounts = accounts
        self.vcs = vcs

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

    def __call__(self, identity: Identity | None, target: Target) -> Decision:
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

