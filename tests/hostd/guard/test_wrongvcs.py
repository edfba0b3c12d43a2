"""The wrong-VCS hint in front of singlemalt and the real policy, under WebTest's lint.

Each pool is composed as hostd/serve/wsgi.py composes it (the hint around
singlemalt around the app, the pool's own classifier and policy), over a
real database: a public repository of the other kind is named with its clone
command; a private one gets exactly what a name that does not exist gets.
"""

from __future__ import annotations

from typing import Any

import pytest
import webtest

from hostd.guard.policy import READ_UNAVAILABLE, RepositoryPolicy
from hostd.guard.wrongvcs import WrongVcsHint, hint
from hostd.names import RepoName
from hostd.store.accounts import Accounts, Level, Repo
from hostd.store.database import Database
from singlemalt import PasswordHasher, SingleMalt, Verifier, classify_git, classify_hg
from tests.singlemalt.test_middleware import DummyApp, basic

BASE = "https://git.example.com:8443"
PASSWORD = "bob's password"
HG_HINT = f"demo/hello-hg is a Mercurial repository: hg clone {BASE}/demo/hello-hg"
GIT_HINT = f"demo/hello is a git repository: git clone {BASE}/demo/hello.git"
CLASSIFIERS = {"git": classify_git, "hg": classify_hg}


@pytest.fixture
def accounts(database: Database) -> Accounts:
    """demo's public git demo/hello and hg demo/hello-hg; alice's private ones of each kind, bob may read both."""
    accounts = Accounts(database)
    accounts.add_user("demo", "demo's password")
    accounts.add_user("alice", "alice's password")
    accounts.add_user("bob", PASSWORD)
    for name, vcs, public in (("demo/hello", "git", True), ("demo/hello-hg", "hg", True),
                              ("alice/code", "git", False), ("alice/notes", "hg", False)):
        ref = RepoName(*name.split("/"))
        accounts.add_repo(ref, vcs, public)
        if not public:
            accounts.grant("bob", ref, Level.READ)
    return accounts


def pool(accounts: Accounts, vcs: str) -> webtest.TestApp:
    """The git or hg pool's guard: ``WrongVcsHint(SingleMalt(app))``."""
    policy = RepositoryPolicy(accounts, vcs=vcs)
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    guarded = SingleMalt(DummyApp(), classify=CLASSIFIERS[vcs], verifier=Verifier(accounts, hasher=hasher),
                         authorize=policy, realm="hostd")
    return webtest.TestApp(WrongVcsHint(guarded, classify=CLASSIFIERS[vcs], find=policy.public_elsewhere,
                                        base_url=BASE + "/"), lint=True)


HINTS = [
    ("git", "/demo/hello-hg/info/refs?service=git-upload-pack", HG_HINT),
    ("git", "/demo/hello-hg.git/info/refs?service=git-upload-pack", HG_HINT),
    ("git", "/Demo/Hello-HG/info/refs?service=git-receive-pack", HG_HINT),
    ("hg", "/demo/hello?cmd=capabilities", GIT_HINT),
    ("hg", "/demo/hello.git?cmd=capabilities", GIT_HINT),
    ("hg", "/demo/hello?cmd=unbundle&heads=686173686564", GIT_HINT),
    # An hg client that put .git on a Mercurial repository's name is told its URL too.
    ("hg", "/demo/hello-hg.git?cmd=capabilities", HG_HINT),
]


@pytest.mark.parametrize(("vcs", "url", "message"), HINTS, ids=[f"{v}-pool:{u}" for v, u, _ in HINTS])
def test_a_public_repository_of_the_other_kind_is_named_with_its_clone_command(
        accounts: Accounts, vcs: str, url: str, message: str) -> None:
    response = pool(accounts, vcs).get(url, status=404)
    # git prints the body ("remote: ..."), Mercurial the reason phrase ("abort: HTTP Error 404: ...").
    assert response.text == message + "\n"
    assert response.status == f"404 {message}"
    assert response.content_type == "text/plain"
    assert response.headers["Cache-Control"] == "no-store"
    assert "WWW-Authenticate" not in response.headers


def test_the_hint_goes_to_signed_in_users_and_to_pushes_too(accounts: Accounts) -> None:
    headers = {**basic("bob", PASSWORD), "Content-Type": "application/mercurial-0.1"}
    response = pool(accounts, "hg").post("/demo/hello?cmd=unbundle", params=b"HG10UN" + b"x" * 1000,
                                         headers=headers, status=404)
    assert response.text == GIT_HINT + "\n"


SERVED = [
    ("git", "/demo/hello.git/info/refs?service=git-upload-pack"),
    ("git", "/demo/hello/info/refs?service=git-upload-pack"),
    ("hg", "/demo/hello-hg?cmd=capabilities"),
]


@pytest.mark.parametrize(("vcs", "url"), SERVED, ids=[f"{v}-pool:{u}" for v, u in SERVED])
def test_a_repository_of_the_pool_s_own_kind_goes_on_to_singlemalt(accounts: Accounts, vcs: str, url: str) -> None:
    assert pool(accounts, vcs).get(url, status=200).text == "hello anonymous\n"


def _answer(response: webtest.TestResponse) -> tuple[str, dict[str, str], bytes]:
    return response.status, dict(response.headers), response.body


PRIVATE = [
    ("git", "/alice/notes/info/refs?service=git-upload-pack", "/alice/nothing/info/refs?service=git-upload-pack"),
    ("git", "/alice/notes.git/info/refs?service=git-receive-pack",
     "/alice/nothing.git/info/refs?service=git-receive-pack"),
    ("hg", "/alice/code?cmd=capabilities", "/alice/nothing?cmd=capabilities"),
    ("hg", "/alice/code.git?cmd=capabilities", "/alice/nothing.git?cmd=capabilities"),
]


@pytest.mark.parametrize(("vcs", "url", "missing"), PRIVATE, ids=[f"{v}-pool:{u}" for v, u, _ in PRIVATE])
def test_a_private_repository_of_the_other_kind_gets_what_a_missing_one_gets(
        accounts: Accounts, vcs: str, url: str, missing: str) -> None:
    app = pool(accounts, vcs)
    # Anonymous: the same challenge; signed in, even with read access: the same "not found".
    assert _answer(app.get(url, status=401)) == _answer(app.get(missing, status=401))
    bob = basic("bob", PASSWORD)
    assert _answer(app.get(url, headers=bob, status=404)) == _answer(app.get(missing, headers=bob, status=404))


def test_malformed_requests_and_other_paths_are_singlemalt_s_to_answer(accounts: Accounts) -> None:
    git = pool(accounts, "git")
    git.get("/demo/hello-hg/info/refs?service=git-upload-pack&service=git-receive-pack", status=400)
    git.get("/demo/hello-hg/extra/info/refs?service=git-upload-pack", status=401)
    pool(accounts, "hg").get("/demo/hello/log/tip", status=401)


def test_when_the_database_cannot_say_the_policy_answers(accounts: Accounts, database: Database,
                                                         tmp_path: Any) -> None:
    accounts.db = Database(f"postgresql://hostd@/hostd?host={tmp_path}", timeout=1.0)
    response = pool(accounts, "git").get("/demo/hello-hg/info/refs?service=git-upload-pack", status=503)
    assert response.text == READ_UNAVAILABLE + "\n"


def test_a_kind_without_a_clone_command_gets_no_hint() -> None:
    assert hint(Repo("demo", "x", "svn", True, "default"), BASE) is None
    assert hint(Repo("demo", "x", "hg", True, "default"), BASE) == (
        f"demo/x is a Mercurial repository: hg clone {BASE}/demo/x")


@pytest.mark.parametrize("base_url", ["https://h\r\nX-Evil: 1", "https://exämple.com", "https://a b", ""],
                         ids=["crlf", "non-ascii", "space", "empty"])
def test_a_base_url_that_cannot_go_into_a_status_line_is_refused_at_start(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        WrongVcsHint(DummyApp(), classify=classify_git, find=lambda path: None, base_url=base_url)


def test_the_pool_without_a_kind_finds_nothing(accounts: Accounts) -> None:
    assert RepositoryPolicy(accounts, vcs=None).public_elsewhere("demo/hello-hg") is None
    assert RepositoryPolicy(accounts, vcs="git").public_elsewhere("not a path") is None
