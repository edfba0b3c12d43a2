"""First-run set-up of a data directory.

Creates, once: the directory tree, the server secret (HMAC key for the
credential cache), the local CA and server certificate (and, every time,
HAProxy's file from the operator's, :func:`hostd.ops.tls.build_served_pem`), the stack's own
PostgreSQL cluster (unless ``HOSTD_DATABASE_URL`` names one), and a demo
user with one git and one hg repository. The demo password is generated,
stored 0600 in ``demo-password`` and shown once.

Every time: the schema is migrated to the newest revision (``hostd db
upgrade``), the SQLite database of an older release, if one is there,
is imported and set aside (:mod:`hostd.store.legacy`), this host's shard
(``HOSTD_SHARD``) is registered if the database does not know it, and the
route files HAProxy reads at start are written from the database
(:mod:`hostd.ops.routesync`).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

from hostd.guard.health import ensure_instance
from hostd.names import RepoName
from hostd.ops import postgres, routesync, trust
from hostd.ops.tls import build_served_pem, ensure_certificates
from hostd.settings import Settings
from hostd.settings.clone import clone_help, trust_step
from hostd.store import legacy, schema
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.shards import Shards
from hostd.store.storage import Storage

DEMO_USER = "demo"
DEMO_GIT = RepoName(DEMO_USER, "hello")
DEMO_HG = RepoName(DEMO_USER, "hello-hg")


@dataclass(frozen=True, slots=True)
class Demo:
    """The demo account created on first run (the password only that once)."""

    username: str
    password: str = field(repr=False)


def _write_private(path: os.PathLike[str], data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def initialize(settings: Settings, *, demo: bool = True) -> Demo | None:
    """Make ``settings.data_dir`` ready to serve; returns the demo account if new."""
    data = settings.data_dir
    for directory in (data, settings.repo_root, settings.run_dir, settings.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    # Private repositories and logs stay private even to a user that may
    # pass through the data directory (run as root: the cluster's user).
    os.chmod(settings.repo_root, 0o700)
    os.chmod(settings.log_dir, 0o700)
    # The pools' unix sockets live here: their directory's permissions are
    # what keeps other local users from speaking to a pool as HAProxy.
    os.chmod(settings.run_dir, 0o700)
    ensure_instance(settings.instance_file)  # what this data directory's pools name in /readyz
    ensure_certificates(settings.tls_dir, _tls_hosts(settings))
    build_served_pem(settings)
    if settings.managed_database:
        postgres.ensure_cluster(settings)
        with postgres.temporary_server(settings):
            created = _prepare_database(settings, demo=demo)
    else:
        created = _prepare_database(settings, demo=demo)
    # Last: the secret is what makes a directory an installation for the
    # command line (hostd.cli.installation), so it exists only once all else does.
    if not settings.secret_file.exists():
        _write_private(settings.secret_file, secrets.token_bytes(32))
    return created


def _prepare_database(settings: Settings, *, demo: bool) -> Demo | None:
    """Migrate the schema, import an older release's SQLite file once, and create the demo on a new database."""
    fresh = schema.current(settings.database) is None
    schema.upgrade(settings.database)
    db = Database(settings.database, max_size=1)
    try:
        shards = Shards(db)
        shards.ensure(settings.shard)
        created = None
        if settings.legacy_database.exists():
            legacy.import_once(settings.legacy_database, db)
        elif fresh and demo and settings.runs("git"):
            # Only where repositories are stored: the demo's live here.
            created = _create_demo(settings, db)
        # What HAProxy reads at start: where each repository is.
        routesync.sync(settings, shards, push=False)
        return created
    finally:
        db.close()


def _create_demo(settings: Settings, db: Database) -> Demo:
    data = settings.data_dir
    accounts = Accounts(db)
    storage = Storage(settings.repo_root)
    password = secrets.token_urlsafe(15)
    accounts.add_user(DEMO_USER, password)
    _write_private(data / "demo-password", (password + "\n").encode())
    for ref, vcs in ((DEMO_GIT, "git"), (DEMO_HG, "hg")):
        accounts.add_repo(ref, vcs, public=True, shard=settings.shard)
        storage.create(ref, vcs, readme=f"# {ref}\n\nA demo {vcs} repository served by hostd.\n")
    return Demo(DEMO_USER, password)


def _tls_hosts(settings: Settings) -> tuple[str, ...]:
    hosts = ["localhost", "127.0.0.1", "::1"]
    if settings.public_host not in hosts:
        hosts.insert(0, settings.public_host)
    return tuple(hosts)


#: The demo repositories and their kinds, in the order the clone commands are printed.
DEMOS = ((DEMO_GIT, "git"), (DEMO_HG, "hg"))


def clone_commands(settings: Settings) -> list[str]:
    """The demo repositories' HTTPS clone commands: plain ``git clone URL`` and ``hg clone URL``.

    They work, and so do later pulls and pushes, once clients trust the stack's
    certificate; :func:`demo_clone_lines` puts the step that makes them (``hostd
    trust --install``) first while they do not.
    """
    return [clone_help(settings, str(ref), vcs).https for ref, vcs in DEMOS]


def demo_clone_lines(settings: Settings) -> list[str]:
    """What ``make run`` prints for cloning the demos: the trust step if one is needed, then the commands."""
    command = trust.hint(settings)
    first = [] if command is None else [trust_step(command)]
    return [*first, "Clone the demo repositories:", *(f"  {line}" for line in clone_commands(settings))]


def ssh_clone_commands(settings: Settings) -> list[str]:
    """The same clones over SSH (after ``hostd key add demo < ~/.ssh/id_ed25519.pub``)."""
    return [clone_help(settings, str(ref), vcs).ssh for ref, vcs in DEMOS]
