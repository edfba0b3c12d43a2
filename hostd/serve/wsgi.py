"""Composition root of the three pools: settings in, WSGI apps out.

gunicorn calls ``hostd.serve.wsgi:git_app()`` (and ``hg_app()``, ``web_app()``);
this is the only module that turns configuration into objects. Each pool is
``HealthRoutes(SingleMalt(<app>))``: health checks answer without
authentication, everything else is decided by singlemalt first. In the git
and hg pools ``<app>`` is ``ShardGate(ReadOnlyGate(<app>))``: repositories of
another storage shard get 421, and pushes are refused while the ``read_only``
flag is on, and singlemalt is inside ``WrongVcsHint``: a request naming a
public repository of the other kind is told which client to use.

Each process reads accounts, tokens, repositories and grants through one
:class:`~hostd.store.records.Records` cache, kept true by one
:class:`~hostd.store.changes.ChangeFeed` (PostgreSQL ``LISTEN``), shared by
the verifier and the repository policy: a warm request makes no query.
"""

from __future__ import annotations

import functools
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hostd import logsetup
from hostd.git.app import GitApp
from hostd.git.inflight import InFlight
from hostd.git.receive import ReceivePack
from hostd.git.upload import UploadPack
from hostd.guard.health import HealthRoutes, instance_id, storage_problem
from hostd.guard.policy import RepositoryPolicy
from hostd.guard.readonly import ReadOnlyGate
from hostd.guard.shard import ShardGate
from hostd.guard.wrongvcs import WrongVcsHint
from hostd.hg.app import HgApp
from hostd.settings import UNIX_SOCKET, Settings, SettingsError
from hostd.settings.clone import ssh_origin
from hostd.store.accounts import Accounts, login_name
from hostd.store.changes import ChangeFeed
from hostd.store.database import Database
from hostd.store.flags import Flags, FlagStore, SharedFlags
from hostd.store.pushlog import PushLog
from hostd.store.queue import repo_queue
from hostd.store.records import Records
from hostd.store.sessions import Sessions
from hostd.store.spool import Spool
from hostd.store.storage import Storage
from hostd.web.account import account_pages
from hostd.web.app import WebApp
from hostd.web.classify import WebPolicy, classify_web
from hostd.web.refusals import BrowserRefusals
from hostd.web.render import Renderer
from hostd.web.repo.clone import clone_box
from hostd.web.repo.pages import RepositoryPages
from hostd.web.session import SessionAuth, page_refusals
from hostd.web.static import StaticFiles
from singlemalt import (
    DEFAULT_DRAIN_LIMIT,
    Classifier,
    LoginThrottle,
    ProxyTrust,
    SafeMemcache,
    SingleMalt,
    VerificationCache,
    Verifier,
    classify_git,
    classify_hg,
)

REALM = "hostd"
#: What the clone box says to run once while the stack serves its own CA's certificate
#: (on the machine that clones; see ``hostd trust``).
TRUST_COMMAND = "hostd trust --install"
#: The name the web pages' header shows.
SITE_NAME = "hostd"
#: Seconds the change feed must have been connected before a push is let
#: through without asking the database: longer than a request can wait for
#: the pool (2 s) plus the circuit breaker's pause (1 s) after an outage.
SETTLED = 5.0
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    """The collaborators every pool shares, built once per process."""

    settings: Settings
    accounts: Accounts
    records: Records
    feed: ChangeFeed
    storage: Storage
    verifier: Verifier
    throttle: LoginThrottle
    proxy: ProxyTrust
    flags: Flags
    pushlog: PushLog


def build_services(settings: Settings) -> Services:
    """Wire the account database, memcached, the verifier and the flags together."""
    db = Database(settings.database, max_size=settings.threads)
    accounts = Accounts(db)
    # Each push's event goes to the queue of this host's shard, whose queue
    # workers have the repository on disk (hostd/work/tasks.py).
    pushlog = PushLog(db, Spool(settings.pushlog_spool), queue=repo_queue(settings.shard))

    def back_up() -> None:
        db.reset()
        # Entries kept while the database was away need not wait for the next push.
        try:
            pushlog.drain()
        except Exception:
            log.exception("push log: could not write the kept entries")

    # One feed per process; its thread starts on the first request (after fork).
    feed = ChangeFeed(settings.database, on_down=db.mark_down, on_up=back_up)
    records = Records(accounts, feed)
    feed.subscribe(records.invalidate)
    memcache = SafeMemcache(list(settings.memcached))
    secret = settings.secret_file.read_bytes()
    verifier = Verifier(records, cache=VerificationCache(memcache, secret))
    return Services(
        settings=settings,
        accounts=accounts,
        records=records,
        feed=feed,
        storage=Storage(settings.repo_root),
        verifier=verifier,
        throttle=LoginThrottle(memcache, secret=secret, canonical=login_name),
        proxy=proxy_trust(settings),
        flags=Flags(FlagStore(db), SharedFlags(memcache, secret)),
        pushlog=pushlog,
    )


def proxy_trust(settings: Settings) -> ProxyTrust:
    """Whose forwarded client address the pools believe (``HOSTD_TRUSTED_PROXIES``)."""
    networks = [entry for entry in settings.trusted_proxies if entry != UNIX_SOCKET]
    return ProxyTrust(networks, unix_socket=UNIX_SOCKET in settings.trusted_proxies)


def _guard(services: Services, app: Any, classify: Callable[..., Any], authorize: Any, *,
           write_drain_limit: int | None = None, around: Callable[[Any], Any] | None = None,
           trust_remote_user: bool = False) -> Any:
    """``HealthRoutes(around(SingleMalt(app)))``; ``write_drain_limit``: how much of a refused write to read.

    ``around`` wraps singlemalt inside the health routes (the web pool's
    sessions and browser refusals); ``trust_remote_user`` is for it alone.
    """
    guarded = SingleMalt(
        app,
        classify=classify,
        verifier=services.verifier,
        authorize=authorize,
        realm=REALM,
        throttle=services.throttle,
        proxy=services.proxy,
        write_drain_limit=write_drain_limit,
        trust_remote_user=trust_remote_user,
    )
    root = services.settings.repo_root
    db = services.accounts.db
    outer = around(guarded) if around is not None else guarded
    # Read from the data directory the pool serves, not told: /readyz then
    # says which directory that is (hostd.ops.stack refuses another's).
    instance = instance_id(services.settings.instance_file)
    return HealthRoutes(outer, ready=lambda: storage_problem(root) or db.ping(), instance=instance)


def repository_policy(services: Services, vcs: str | None) -> RepositoryPolicy:
    """Repository access decided from the cached records; pushes only while the database answers."""
    feed, db = services.feed, services.accounts.db

    def writable() -> str | None:
        # A feed connected for a while proves the database is up without a
        # query. Otherwise one SELECT 1 on the pool the push log is written
        # with (failing fast while it is known down): just after PostgreSQL
        # is back, that pool may not be, and a push it accepted would land
        # without its push-log entry.
        return None if feed.connected_for(SETTLED) else db.ping()

    return RepositoryPolicy(services.records, vcs=vcs, writable=writable)


def _services(settings: Settings | None) -> Services:
    logsetup.configure()
    return build_services(settings or Settings.from_env())


def _gates(services: Services, app: Any) -> ShardGate:
    """Refuse repositories of other shards (421), and pushes while the read_only flag is on.

    A refusal reads the whole push first (up to the push size limit): hg
    sends its entire bundle before it reads a response, so a reply that
    closes the connection early reaches it as a TLS EOF instead of the
    message saying why.
    """
    limit = services.settings.max_push_bytes
    return ShardGate(ReadOnlyGate(app, flags=services.flags, drain_limit=limit),
                     shard=services.settings.shard, storage=services.storage, drain_limit=limit)


def git_app(settings: Settings | None = None) -> Any:
    """The git pool: dulwich smart HTTP (git's upload-pack and receive-pack) behind singlemalt (and read-only mode)."""
    services = _services(settings)
    policy = repository_policy(services, "git")
    inflight = InFlight.of_run_dir(services.settings.run_dir)
    uploads = upload_pack(services.settings.git_pack, inflight)
    # Pushes go to git's receive-pack wherever fetches go to git's upload-pack.
    receives = ReceivePack(uploads.git, inflight=inflight) if uploads is not None else None
    app = GitApp(services.storage, max_request_bytes=services.settings.max_push_bytes,
                 pushlog=services.pushlog, upload_pack=uploads, receive_pack=receives)
    return _guard(services, _gates(services, app), classify_git, policy,
                  around=_wrong_vcs(services, classify_git, policy))


def _wrong_vcs(services: Services, classify: Classifier, policy: RepositoryPolicy) -> Callable[[Any], Any]:
    """Around singlemalt: a public repository of the other kind is answered with the client to use."""
    return functools.partial(WrongVcsHint, classify=classify, find=policy.public_elsewhere,
                             base_url=services.settings.base_url)


def upload_pack(choice: str, inflight: InFlight | None = None) -> UploadPack | None:
    """git's own upload-pack for clones and fetches, or None for dulwich's (HOSTD_GIT_PACK); pushes follow it."""
    if choice == "dulwich":
        return None
    git = shutil.which("git")
    if git is None:
        if choice == "git":
            raise SettingsError("HOSTD_GIT_PACK=git, but there is no git on PATH")
        log.warning("git is not installed: clones, fetches and pushes are served by dulwich, far slower")
        return None
    return UploadPack(git, inflight=inflight)


def hg_app(settings: Settings | None = None) -> Any:
    """The hg pool: hgweb behind singlemalt (and read-only mode)."""
    services = _services(settings)
    policy = repository_policy(services, "hg")
    hg = HgApp(services.storage, pushlog=services.pushlog, base_url=services.settings.base_url)
    # hg sends a whole push before it reads the answer: a refusal (the 401
    # that makes it ask for a password) must read all of it, up to the push
    # limit, or hg sees a TLS EOF. git needs no such thing: it probes a large
    # push with a tiny request first.
    return _guard(services, _gates(services, hg), classify_hg, policy,
                  write_drain_limit=max(services.settings.max_push_bytes, DEFAULT_DRAIN_LIMIT),
                  around=_wrong_vcs(services, classify_hg, policy))


def web_app(settings: Settings | None = None) -> Any:
    """The web pool: pages behind singlemalt, browsers signed in by a session cookie (:class:`SessionAuth`)."""
    services = _services(settings)
    repositories = repository_policy(services, None)
    base_url = services.settings.base_url
    renderer = Renderer(SITE_NAME, base_url)
    # The clone box: the printed commands' URLs; with the stack's own CA, the step that trusts it.
    trust = None if services.settings.tls_cert is not None else TRUST_COMMAND
    clone = functools.partial(clone_box, base_url=base_url, ssh_origin=ssh_origin(services.settings), trust=trust)
    pages = RepositoryPages(services.storage, renderer, shard=services.settings.shard, clone=clone)
    sessions = Sessions(services.accounts.db)
    account = account_pages(services.accounts, sessions, services.verifier, services.throttle, renderer)
    app = WebApp([*StaticFiles().routes(), *account.routes(), *pages.routes()], renderer=renderer, base_url=base_url)
    secret = services.settings.secret_file.read_bytes()

    def around(guarded: Any) -> Any:
        # Sessions outermost: they set the REMOTE_USER singlemalt trusts here (and only here).
        refusals = BrowserRefusals(guarded, renderer=renderer, base_url=base_url)
        return SessionAuth(refusals, sessions=sessions, secret=secret, base_url=base_url,
                           refuse=page_refusals(renderer, base_url), anonymous_paths=("/static/",))

    return _guard(services, app, classify_web, WebPolicy(repositories), around=around, trust_remote_user=True)
