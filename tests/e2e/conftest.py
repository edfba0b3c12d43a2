"""Fixtures: real stacks shared by the whole end-to-end session.

``stack`` is the default installation (git's own upload-pack serves clones
and fetches). A module whose tests must pass on both pack paths overrides
``stack`` with :func:`each_pack_path`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stackfixture import Stack, start_stack, stop_stack

#: HOSTD_GIT_PACK values: who builds the packs of clones and fetches.
PACK_PATHS = ["git", "dulwich"]


def _running(factory: pytest.TempPathFactory, name: str, **env: str) -> Iterator[Stack]:
    running = start_stack(factory.mktemp(name), **env)
    yield running
    stop_stack(running)


@pytest.fixture(scope="session")
def git_pack_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _running(tmp_path_factory, "stack", HOSTD_GIT_PACK="git")


@pytest.fixture(scope="session")
def dulwich_pack_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _running(tmp_path_factory, "dulwich-stack", HOSTD_GIT_PACK="dulwich")


@pytest.fixture(scope="session")
def stack(git_pack_stack: Stack) -> Stack:
    return git_pack_stack


def each_pack_path(request: pytest.FixtureRequest) -> Stack:
    """The body of a module-scoped ``stack`` fixture parametrized by :data:`PACK_PATHS`."""
    return request.getfixturevalue(f"{request.param}_pack_stack")  # type: ignore[no-any-return]
