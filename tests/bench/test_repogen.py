"""The benchmark input generator: tiny histories, built twice, must come out byte-identical.

No timings here (``python -m tests.bench.repogen`` prints those); what is checked is
what benchmarks rely on: reproducible SHAs, a clean object graph, HEAD on
main, refs left loose, the hg conversion holding the same history, and reuse.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests.bench.fastimport import build_git
from tests.bench.hgconvert import HG, build_hg
from tests.bench.history import HistorySpec, plan_history
from tests.bench.repogen import describe_git, describe_hg, ensure_built, read_stamp

SMALL = HistorySpec(
    name="small", seed=7, commits=60, files=20, dirs=6, lines=(5, 40), binary_files=2, binary_size=(1024, 4096),
    binary_change=0.05, add=0.05, delete=0.03, rename=0.03, long_branches=("maint/1.0", "feature/x"), topics=0.2,
    tags=6,
)
MANY_REFS = replace(SMALL, name="refs", feature_refs=150, tag_refs=50)
ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "HGRCPATH": "", "HGPLAIN": "1"}


def run(*command: str | Path) -> str:
    return subprocess.run([str(part) for part in command], env=ENV, check=True, capture_output=True,
                          text=True).stdout


def refs(path: Path) -> str:
    return run("git", "-C", path, "for-each-ref", "--format=%(objectname) %(refname)")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The small history built twice, in two unrelated directories."""
    first, second = tmp_path_factory.mktemp("one") / "small.git", tmp_path_factory.mktemp("two") / "small.git"
    build_git(first, SMALL)
    build_git(second, SMALL)
    return first, second


@pytest.mark.parametrize("seed", range(12))
def test_every_planned_commit_ends_up_reachable(seed: int) -> None:
    plan = plan_history(replace(SMALL, seed=seed))
    assert len(plan.commits) == SMALL.commits
    seen: set[int] = set()
    todo = [*plan.heads.values(), *(at for _, at, _ in plan.tags)]
    while todo:
        if (at := todo.pop()) not in seen:
            seen.add(at)
            todo.extend(plan.commits[at].parents)
    assert len(seen) == SMALL.commits
    assert list(plan.heads) == ["refs/heads/main", *(f"refs/heads/{name}" for name in SMALL.long_branches)]


def test_same_spec_gives_identical_shas(built: tuple[Path, Path]) -> None:
    first, second = built
    assert run("git", "-C", first, "rev-parse", "main") == run("git", "-C", second, "rev-parse", "main")
    assert refs(first) == refs(second)


def test_history_has_the_planned_shape(built: tuple[Path, Path]) -> None:
    path = built[0]
    info = describe_git(path)
    assert info["commits"] == SMALL.commits
    assert run("git", "-C", path, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert "refs/heads/_topic" not in refs(path)
    assert run("git", "-C", path, "for-each-ref", "--format=%(refname)", "refs/heads").split() == [
        "refs/heads/feature/x", "refs/heads/main", "refs/heads/maint/1.0"]
    kinds = run("git", "-C", path, "for-each-ref", "--format=%(objecttype)", "refs/tags").split()
    assert sorted(kinds) == ["commit"] * 3 + ["tag"] * 3  # every other release tag is annotated
    assert int(run("git", "-C", path, "rev-list", "--merges", "--count", "main")) > 0
    run("git", "-C", path, "fsck", "--connectivity-only", "--no-progress")


def test_other_seed_gives_other_history(built: tuple[Path, Path], tmp_path: Path) -> None:
    build_git(tmp_path / "other.git", replace(SMALL, seed=8))
    assert run("git", "-C", tmp_path / "other.git", "rev-parse", "main") != run("git", "-C", built[0], "rev-parse",
                                                                                 "main")


def test_refs_stay_loose(tmp_path: Path) -> None:
    path = tmp_path / "refs.git"
    build_git(path, MANY_REFS)
    info = describe_git(path)
    assert info["refs"] == info["loose_refs"] == 150 + 50 + SMALL.tags + 1 + len(SMALL.long_branches)
    assert not (path / "packed-refs").exists()
    assert len(os.listdir(path / "refs" / "heads" / "feature")) == 150 + 1  # feature/00000..00149 and feature/x


def test_hg_conversion_holds_the_same_history(built: tuple[Path, Path], tmp_path: Path) -> None:
    git_path = built[0]
    build_hg(git_path, tmp_path / "one-hg")
    build_hg(built[1], tmp_path / "two-hg")
    assert describe_hg(tmp_path / "one-hg")["commits"] == SMALL.commits + 1  # + the .hgtags commit
    hg_tags = run(HG, "tags", "-R", tmp_path / "one-hg", "-q").split()
    git_tags = run("git", "-C", git_path, "for-each-ref", "--format=%(refname:strip=2)", "refs/tags").split()
    assert sorted(hg_tags) == sorted([*git_tags, "tip"])
    assert "main" in run(HG, "bookmarks", "-R", tmp_path / "one-hg", "-T", "{bookmark}\n").split()
    tips = [run(HG, "log", "-R", tmp_path / name, "-r", "tip", "-T", "{node}") for name in ("one-hg", "two-hg")]
    assert tips[0] == tips[1]


def test_complete_inputs_are_reused_and_stale_ones_rebuilt(tmp_path: Path) -> None:
    builds: list[Path] = []

    def build(path: Path) -> dict[str, float]:
        builds.append(path)
        path.mkdir()
        (path / "content").write_text(str(len(builds)))
        return {}

    target = tmp_path / "repo.git"
    assert ensure_built(target, {"spec": "a"}, build) == target
    assert ensure_built(target, {"spec": "a"}, build) == target
    assert len(builds) == 1 and builds[0] != target  # built aside, renamed into place
    ensure_built(target, {"spec": "b"}, build)
    assert len(builds) == 2 and (target / "content").read_text() == "2"
    assert (read_stamp(target) or {})["spec"] == "b"
    assert sorted(os.listdir(tmp_path)) == ["repo.git"]  # no leftovers
