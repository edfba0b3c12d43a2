"""Credentials through the real stack: no old password comes back, locks hold every spelling, offices keep working.

Every client here is 127.0.0.1, so each test starts and ends with
:meth:`Stack.forget_failed_logins` (singlemalt's counters in memcached and
HAProxy's per-address table).

The stack is the session's: a test that stops memcached leaves it with new
git workers (:func:`renewed_git_workers`), or the tests after it could meet
workers still bypassing memcached, whose throttle counts nothing.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hostd.store.accounts import login_name
from singlemalt import LoginThrottle, SafeMemcache
from tests.e2e.stackfixture import Stack
from tests.polling import wait_until

#: What singlemalt's throttle is built with in hostd (``LoginThrottle`` defaults).
LIMIT = 10
ADDRESS_LIMIT = 100


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture
def clean_counters(stack: Stack) -> Iterator[None]:
    stack.forget_failed_logins()
    yield
    stack.forget_failed_logins()


@pytest.fixture
def renewed_git_workers(stack: Stack) -> Iterator[None]:
    """After the test, new git workers.

    A worker that failed to reach memcached leaves it alone for the
    ``retry_interval`` of :class:`SafeMemcache` (10 s) after its last
    failure, however soon memcached is back, and meanwhile its throttle fails
    open, as designed: it counts no failed login and reads no lock. The
    next tests here count failed logins and may start sooner than that.
    """
    yield
    stack.renew_workers("git")


def pools_throttle(stack: Stack) -> LoginThrottle:
    """A throttle built as the pools build theirs, on the stack's memcached: it reads and counts what they do."""
    return LoginThrottle(SafeMemcache(list(stack.settings.memcached)),
                         secret=stack.settings.secret_file.read_bytes(), canonical=login_name)


@pytest.fixture
def private_repo(stack: Stack, tmp_path: Path) -> str:
    """A private git repository with one commit, owned by a user of its own."""
    owner = unique("owner")
    stack.add_user(owner, "owner password")
    repo = f"{owner}/private"
    stack.seed_git(repo, tmp_path / "seed", {"README": b"lifecycle\n"})
    return repo


def refs(repo: str) -> str:
    return f"/{repo}.git/info/refs?service=git-upload-pack"


def clone(stack: Stack, repo: str, user: str, password: str, into: Path) -> subprocess.CompletedProcess[str]:
    return stack.clients.git("clone", "-q", stack.url(f"{repo}.git", user, password), str(into), check=False)


def supervisorctl(stack: Stack, *args: str) -> None:
    stack.supervisorctl(*args, check=True)


def memcached_answers(stack: Stack) -> bool:
    try:
        with socket.create_connection(stack.settings.memcached_server, timeout=1) as conn:
            conn.sendall(b"version\r\n")
            return conn.recv(64).startswith(b"VERSION")
    except OSError:
        return False


def recreate(stack: Stack, user: str, password: str, repo: str) -> None:
    stack.hostd("user", "del", user)
    stack.add_user(user, password)
    stack.hostd("grant", user, repo, "read")


# -- a deleted and re-created user ----------------------------------------------------------------


def test_a_re_created_user_never_accepts_the_old_password(
    stack: Stack, clean_counters: None, private_repo: str, tmp_path: Path
) -> None:
    """On the old code the old password still cloned after ``user del`` and ``user add`` (200, not 401)."""
    user = unique("carol")
    stack.add_user(user, "old password 1")
    stack.hostd("grant", user, private_repo, "read")
    assert clone(stack, private_repo, user, "old password 1", tmp_path / "before").returncode == 0
    for _ in range(8):  # every worker has it in its LRU, and memcached has it
        assert stack.request(refs(private_repo), (user, "old password 1"))[0] == 200

    recreate(stack, user, "new password 1", private_repo)
    statuses = [stack.request(refs(private_repo), (user, "old password 1"))[0] for _ in range(4)]
    assert statuses == [401] * 4
    old = clone(stack, private_repo, user, "old password 1", tmp_path / "old")
    assert old.returncode != 0 and "Authentication failed" in old.stderr
    assert clone(stack, private_repo, user, "new password 1", tmp_path / "new").returncode == 0


def test_a_re_created_user_with_memcached_stopped_and_restarted(
    stack: Stack, clean_counters: None, renewed_git_workers: None, private_repo: str, tmp_path: Path
) -> None:
    user = unique("dora")
    stack.add_user(user, "old password 2")
    stack.hostd("grant", user, private_repo, "read")
    supervisorctl(stack, "stop", "memcached")
    try:
        wait_until("memcached is down", lambda: not memcached_answers(stack), timeout=10)
        for _ in range(8):  # cached in the workers' LRUs only
            assert stack.request(refs(private_repo), (user, "old password 2"))[0] == 200
        recreate(stack, user, "new password 2", private_repo)
        assert [stack.request(refs(private_repo), (user, "old password 2"))[0] for _ in range(3)] == [401] * 3
    finally:
        supervisorctl(stack, "start", "memcached")
    wait_until("memcached is back", lambda: memcached_answers(stack), timeout=10)
    assert [stack.request(refs(private_repo), (user, "old password 2"))[0] for _ in range(3)] == [401] * 3
    assert clone(stack, private_repo, user, "new password 2", tmp_path / "new").returncode == 0


def test_a_re_created_user_inherits_no_token(
    stack: Stack, clean_counters: None, private_repo: str, tmp_path: Path
) -> None:
    user = unique("eve")
    stack.add_user(user, "eve password 1")
    stack.hostd("grant", user, private_repo, "read")
    token = stack.hostd("token", "create", user).stdout.split()[-1]
    assert token.startswith("smt_")
    assert stack.request(refs(private_repo), (user, token))[0] == 200
    recreate(stack, user, "eve password 2", private_repo)
    assert stack.request(refs(private_repo), (user, token))[0] == 401
    assert stack.hostd("token", "list", user).stdout.strip() == ""


# -- throttle keys -----------------------------------------------------------------------------------


def test_failures_lock_every_spelling_of_the_account(stack: Stack, clean_counters: None, private_repo: str) -> None:
    """On the old code ``FRED`` (and ``Fred``) with the right password got 200 while ``fred`` was locked."""
    user = unique("fred")
    stack.add_user(user, "fred password")
    stack.hostd("grant", user, private_repo, "read")
    for _ in range(LIMIT):
        assert stack.request(refs(private_repo), (user, "wrong password"))[0] == 401
    # The lock is in memcached, where every worker reads it. If not, the pools did not count those
    # failures: a worker bypassing memcached fails open (see renewed_git_workers).
    assert pools_throttle(stack).blocked(stack.settings.bind, user), "the pools did not lock the account in memcached"
    for spelling in (user, user.upper(), user.capitalize()):
        assert stack.request(refs(private_repo), (spelling, "fred password"))[0] == 429, spelling


# -- shared addresses -------------------------------------------------------------------------------


def test_an_office_under_attack_keeps_working_for_its_known_users(
    stack: Stack, clean_counters: None, private_repo: str, tmp_path: Path
) -> None:
    """One address guesses at many accounts; a user who cloned from there before still clones.

    Past ``LIMIT`` failures the address is a suspect: guesses beyond the
    workers' check budgets get 429 without costing an argon2 check, and once
    it has failed ``ADDRESS_LIMIT`` times it is locked for every credential
    it has not seen work. On the old code every guess was hashed and
    answered 401, and the address lock answered 429 to everyone there.
    """
    known, newcomer = unique("gina"), unique("hugo")
    for user in (known, newcomer):
        stack.add_user(user, f"{user} password")
        stack.hostd("grant", user, private_repo, "read")
    assert clone(stack, private_repo, known, f"{known} password", tmp_path / "before").returncode == 0

    guesses = [(unique("nobody"), "guess") for _ in range(4 * LIMIT)]
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda guess: stack.request(refs(private_repo), guess)[0], guesses))
    assert set(statuses) <= {401, 429} and statuses.count(429) > 0, statuses
    assert clone(stack, private_repo, known, f"{known} password", tmp_path / "during").returncode == 0

    # The rest of the address's failures, as the pools' own throttle records them.
    throttle = pools_throttle(stack)
    for _ in range(ADDRESS_LIMIT):
        throttle.record_failure(stack.settings.bind, None)
    assert stack.request(refs(private_repo), (unique("nobody"), "guess"))[0] == 429
    after = clone(stack, private_repo, known, f"{known} password", tmp_path / "after")
    assert after.returncode == 0, after.stderr
    assert stack.request(refs(private_repo), (newcomer, f"{newcomer} password"))[0] == 429
    assert stack.request(refs(private_repo), (known, "a guess at gina's password"))[0] == 429


def test_a_token_that_outlived_its_owner_is_refused_to_the_new_account(
    stack: Stack, clean_counters: None, private_repo: str
) -> None:
    """The token row put back after its owner was deleted and re-created (an old backup restored by hand).

    Without the check of the token's age against its owner's account, the
    re-created user inherited the old token (200).
    """
    user = unique("ivan")
    stack.add_user(user, "ivan password 1")
    stack.hostd("grant", user, private_repo, "read")
    token = stack.hostd("token", "create", user).stdout.split()[-1]
    assert stack.request(refs(private_repo), (user, token))[0] == 200
    [row] = stack.sql("SELECT id, username, secret_hash, scope, expires_at, revoked, created FROM tokens"
                      " WHERE username = %s", (user,))
    stack.hostd("user", "del", user)
    stack.add_user(user, "ivan password 2")
    stack.sql("INSERT INTO tokens (id, username, secret_hash, scope, expires_at, revoked, created)"
              " VALUES (%s, %s, %s, %s, %s, %s, %s)", row)
    stack.hostd("grant", user, private_repo, "read")
    assert stack.request(refs(private_repo), (user, token))[0] == 401
    assert stack.request(refs(private_repo), (user, "ivan password 2"))[0] == 200
