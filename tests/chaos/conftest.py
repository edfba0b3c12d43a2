"""Fixtures of the fault-injection suite: a real stack per module, seeded
repositories, and the per-scenario report printed to the terminal."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.tools import Report
from tests.e2e.stackfixture import Stack, start_stack, stop_stack

OWNER = "chaos"
PASSWORD = "chaos monkey's password"
BIG_BYTES = 10 * 1024 * 1024


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: breaks part of a real stack and checks that nothing is lost")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("chaos-stack"))
    yield running
    stop_stack(running)


@dataclass(frozen=True)
class Repos:
    """Seeded repositories: URLs with the owner's credentials, and what they hold."""

    git_small: str
    git_big: str
    git_big_head: str
    hg_small: str
    hg_big: str
    hg_big_node: str


def _seed_hg(stack: Stack, name: str, work: Path, files: dict[str, bytes]) -> str:
    stack.hostd("repo", "create", f"{OWNER}/{name}", "--vcs", "hg")
    hg = stack.clients.hg
    hg("init", str(work))
    for filename, content in files.items():
        (work / filename).write_bytes(content)
    hg("commit", "-A", "-q", "-m", f"seed {name}", cwd=work)
    hg("push", "-q", str(stack.settings.repo_root / OWNER / name), cwd=work)
    return hg("log", "-r", ".", "-T", "{node}", cwd=work).stdout.strip()


@pytest.fixture(scope="module")
def repos(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Repos:
    stack.forget_failed_logins()
    stack.add_user(OWNER, PASSWORD)
    root = tmp_path_factory.mktemp("seed")
    big = {f"blob{i}.bin": os.urandom(BIG_BYTES // 4) for i in range(4)}
    stack.seed_git(f"{OWNER}/small", root / "git-small", {"README": b"small\n"})
    git_head = stack.seed_git(f"{OWNER}/big", root / "git-big", big)
    _seed_hg(stack, "hsmall", root / "hg-small", {"README": b"small\n"})
    hg_node = _seed_hg(stack, "hbig", root / "hg-big", big)

    def url(name: str) -> str:
        return stack.url(f"{OWNER}/{name}", OWNER, PASSWORD)

    return Repos(url("small.git"), url("big.git"), git_head, url("hsmall"), url("hbig"), hg_node)


@pytest.fixture
def report(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Iterator[Report]:
    """Filled in by the scenario; printed to the terminal (capture or not) when it ends."""
    running = Report(request.node.name.removeprefix("test_"))
    yield running
    with capsys.disabled():
        print("\n" + running.text(), flush=True)
