"""One SSH session, decided like an HTTPS request and served on the client's own descriptors.

In order (each refusal is one ``hostd: ...`` line on the client's stderr,
exit status 1, and one log line):

1. the key sshd accepted is looked up again: a key removed since sshd asked
   no longer works, not even on a connection already open (and a relayed
   session's key is looked up once more on the shard);
2. the throttle: a (client address, account) pair that keeps sending
   refused commands is locked out like one that keeps failing logins;
3. ``SSH_ORIGINAL_COMMAND`` is parsed (:mod:`hostd.ssh.command`), never run;
4. singlemalt's :func:`~singlemalt.judge` asks the same repository policy
   as the HTTPS pools: the same answers, the same reasons ("You have
   read-only access to ..."), the same "not found" for a repository the
   key's owner may not know about; a deploy key reaches its one
   repository, read-only unless it was added with ``--write``;
5. the repository's shard: another shard's repository is relayed there
   (:mod:`hostd.ssh.relay`) when this host is not its shard;
6. a push also needs the read-only flag off, and holds the repository's
   push fence (a move waits for it) for as long as it runs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Protocol

from hostd.git.receive import push_recorder
from hostd.guard.policy import READ_UNAVAILABLE, RepositoryPolicy
from hostd.guard.readonly import MESSAGE as READ_ONLY_MESSAGE
from hostd.hg import hooks as hgpushlog
from hostd.names import RepoName
from hostd.ssh import command
from hostd.ssh.gitserve import GitOverSsh
from hostd.ssh.wire import client_address
from hostd.store.accounts import Repo
from hostd.store.database import DatabaseUnavailable
from hostd.store.fence import Fenced, PushFence
from hostd.store.flags import READ_ONLY, FlagReader
from hostd.store.keys import KeyGrant
from hostd.store.pushlog import PushLog
from hostd.store.storage import Storage, StorageError
from singlemalt import Action, Authorizer, Identity, LoginThrottle, Outcome, Scope, Target, judge

log = logging.getLogger(__name__)

#: ``Identity.method`` of a user's SSH key, and of a deploy key (its username is ``deploy key N``);
#: an SSH identity's ``token_id`` is its key's fingerprint.
SSH_KEY: Final = "ssh-key"
DEPLOY_KEY: Final = "deploy-key"
REFUSED: Final = 1


class KeyLookup(Protocol):
    def lookup(self, fingerprint: str) -> KeyGrant | None: ...


class HgServe(Protocol):
    """:func:`hostd.hg.sshserve.serve_stdio` with its base ui bound."""

    def __call__(self, repo_dir: Path, fin: BinaryIO, fout: BinaryIO, ferr: BinaryIO, *,
                 recorder: hgpushlog.PushRecorder, may_write: Callable[[], str | None]) -> int: ...


class Relay(Protocol):
    """Serves a session on the shard that holds its repository (:class:`hostd.ssh.relay.Relay`)."""

    def __call__(self, repo: Repo, identity: Identity, deploy: RepoName | None, cmd: command.SshCommand,
                 protocol: str, address: str, fds: Descriptors) -> int: ...


@dataclass(frozen=True, slots=True)
class Descriptors:
    """The session's stdin, stdout and stderr, as sshd gave them (the gateway closes them)."""

    stdin: int
    stdout: int
    stderr: int


@dataclass(frozen=True, slots=True)
class _Request:
    """What the log line of a session says."""

    address: str
    user: str | None = None
    cmd: command.SshCommand | None = None


class Refusal(Exception):
    """A session refused with ``message``; ``counted``: a failed attempt for the throttle."""

    def __init__(self, message: str, *, counted: bool = False, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.counted = counted
        self.reason = reason or message


class Sessions:
    """The gateway's session handler (:data:`hostd.ssh.gateway.SessionHandler`).

    ``shard`` is the shard whose repositories this host stores and serves
    itself; None on a host without the storage role (a load balancer), which
    relays every session.
    """

    def __init__(self, *, keys: KeyLookup, policies: dict[str, RepositoryPolicy], storage: Storage,
                 shard: str | None, flags: FlagReader, pushlog: PushLog, git: GitOverSsh, hg: HgServe,
                 throttle: LoginThrottle | None = None, relay: Relay | None = None) -> None:
        self.keys = keys
        self.policies = policies
        self.storage = storage
        self.shard = shard
        self.flags = flags
        self.pushlog = pushlog
        self.git = git
        self.hg = hg
        self.throttle = throttle
        self.relay = relay

    def __call__(self, fields: tuple[str, ...], stdin: int, stdout: int, stderr: int) -> int:
        fingerprint, text, protocol, connection = fields
        request = _Request(client_address(connection))
        started = time.monotonic()
        try:
            identity, grant = self._identify(fingerprint)
            request = _Request(request.address, identity.username)
            if self.throttle is not None and self.throttle.blocked(request.address, identity.username):
                raise Refusal(f"too many refused requests from your address; try again in "
                              f"{max(1, self.throttle.lockout // 60)} minutes", reason="throttled")
            try:
                cmd = command.parse(text)
            except command.Refused as error:
                raise Refusal(str(error), counted=bool(text)) from None
            request = _Request(request.address, identity.username, cmd)
            status = self._run(identity, grant.repo, cmd, protocol, request.address,
                               Descriptors(stdin, stdout, stderr), relayed=False)
        except Refusal as refusal:
            return self._refused(request, refusal, stderr, started)
        _log(request, "served", "", status, started)
        return status

    def serve_relayed(self, identity: Identity, deploy: RepoName | None, cmd: command.SshCommand,
                      protocol: str, address: str, fds: Descriptors) -> int:
        """A session another host's gateway decided and handed over: decided again here, and served."""
        request = _Request(address, identity.username, cmd)
        started = time.monotonic()
        try:
            still, _ = self._identify(identity.token_id or "")
            if (still.username, still.method, still.scope) != (identity.username, identity.method, identity.scope):
                raise Refusal("this key is no longer registered", reason="the key changed since it was relayed")
            status = self._run(identity, deploy, cmd, protocol, address, fds, relayed=True)
        except Refusal as refusal:
            return self._refused(request, refusal, fds.stderr, started)
        _log(request, "served", "relayed", status, started)
        return status

    def _run(self, identity: Identity, deploy: RepoName | None, cmd: command.SshCommand, protocol: str,
             address: str, fds: Descriptors, *, relayed: bool) -> int:
        policy = self.policies[cmd.vcs] if deploy is None else self.policies[cmd.vcs].deploy_key(deploy)
        repo = self._decide(identity, policy, cmd)
        if self.shard is not None and repo.shard == self.shard:
            return self._serve_local(repo, identity, policy, cmd, protocol, fds)
        if self.relay is None or relayed:
            raise Refusal(f"{repo.ref} is served by another storage shard ({repo.shard}); try again shortly",
                          reason=f"on shard {repo.shard}, not {self.shard}")
        return self.relay(repo, identity, deploy, cmd, protocol, address, fds)

    def _refused(self, request: _Request, refusal: Refusal, stderr: int, started: float) -> int:
        if refusal.counted and self.throttle is not None and request.user is not None:
            self.throttle.record_failure(request.address, request.user)
        _log(request, "refused", refusal.reason, REFUSED, started)
        _say(stderr, refusal.message)
        return REFUSED

    def _identify(self, fingerprint: str) -> tuple[Identity, KeyGrant]:
        try:
            grant = self.keys.lookup(fingerprint)
        except DatabaseUnavailable:
            raise Refusal(READ_UNAVAILABLE, reason="database unavailable, key not remembered") from None
        if grant is None:
            raise Refusal("this key is no longer registered", reason=f"unknown key {fingerprint}")
        if grant.username is not None:
            return Identity(grant.username, SSH_KEY, Scope.WRITE, token_id=fingerprint), grant
        scope = Scope.WRITE if grant.can_write else Scope.READ
        return Identity(f"deploy key {grant.key_id}", DEPLOY_KEY, scope, token_id=fingerprint), grant

    def _decide(self, identity: Identity, policy: Authorizer, cmd: command.SshCommand) -> Repo:
        target = Target(cmd.path, cmd.action, cmd.service)
        verdict = judge(policy, identity, target)
        if not verdict.allowed:
            counted = verdict.outcome is not Outcome.UNAVAILABLE
            message = f"repository {cmd.path!r} not found" if verdict.outcome in (
                Outcome.NOT_FOUND, Outcome.CHALLENGE) else verdict.message
            raise Refusal(message, counted=counted, reason=verdict.reason)
        assert verdict.decision is not None
        repo = verdict.decision.resource
        if not isinstance(repo, Repo):
            raise Refusal(f"repository {cmd.path!r} not found", reason="the policy named no repository")
        return repo

    def _serve_local(self, repo: Repo, identity: Identity, policy: Authorizer, cmd: command.SshCommand,
                     protocol: str, fds: Descriptors) -> int:
        """Serve a decided session on this host's copy of ``repo``."""
        try:
            repo_dir = self.storage.path(repo.ref, repo.vcs)
        except StorageError:
            raise Refusal(f"repository {cmd.path!r} not found", reason="no directory on this shard") from None
        if cmd.service == "git-upload-pack":
            return self.git.upload_pack(repo_dir, protocol, fds.stdin, fds.stdout, fds.stderr)
        if cmd.action is Action.WRITE and self.flags.enabled(READ_ONLY):
            raise Refusal(READ_ONLY_MESSAGE)
        try:
            fence = PushFence.enter(repo_dir, repo.vcs)
        except Fenced:
            raise Refusal(f"{repo.ref} was just moved to another storage shard; nothing changed, push again",
                          reason="fenced") from None
        try:
            with open(fds.stdin, "rb", buffering=0, closefd=False) as fin, \
                    open(fds.stdout, "wb", closefd=False) as fout, \
                    open(fds.stderr, "wb", buffering=0, closefd=False) as ferr:
                if cmd.service == "git-receive-pack":
                    return self.git.receive_pack(repo_dir, fin, fout, ferr,
                                                 push_recorder(self.pushlog, repo.ref, identity.username))
                recorder = hgpushlog.PushRecorder(self.pushlog, repo.ref, identity.username)
                return self.hg(repo_dir, fin, fout, ferr, recorder=recorder,
                               may_write=lambda: self._may_write(identity, policy, cmd))
        finally:
            fence.release()

    def _may_write(self, identity: Identity, policy: Authorizer, cmd: command.SshCommand) -> str | None:
        """Asked by each hg write of a session, as it happens: None, or why not."""
        if self.flags.enabled(READ_ONLY):
            return READ_ONLY_MESSAGE
        verdict = judge(policy, identity, Target(cmd.path, Action.WRITE, "hg-push"))
        return None if verdict.allowed else verdict.message


def _say(stderr: int, message: str) -> None:
    try:
        os.write(stderr, f"hostd: {message}\n".encode())
    except OSError:
        pass  # the client is gone


def _log(request: _Request, outcome: str, reason: str, status: int, started: float) -> None:
    cmd = request.cmd
    log.info("ssh %s user=%r client=%s repository=%r service=%s status=%d seconds=%.3f reason=%r",
             outcome, request.user, request.address, cmd.path if cmd else None, cmd.service if cmd else None,
             status, time.monotonic() - started, reason)
