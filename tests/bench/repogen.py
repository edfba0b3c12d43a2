"""Deterministic benchmark input repositories: git and Mercurial, built once and reused.

Benchmarks of clones, fetches and ref advertisement need repositories with a
realistic shape (history depth, deltas, binaries, branches, tags, many refs),
and their numbers are only comparable if every machine measures the very same
repositories.  So every input is *generated*, not downloaded: a seeded
:class:`random.Random` plans a history (commits, merges, file adds, edits,
renames, deletions; :mod:`tests.bench.history`), each file's versions are derived in
turn from a per-file seed (:mod:`tests.bench.contents`), and the whole thing is
streamed into ``git fast-import`` with explicit author and committer dates
(:mod:`tests.bench.fastimport`); the Mercurial input is a conversion of the git one
(:mod:`tests.bench.hgconvert`).  Git and hg run without any user or system
configuration (:mod:`tests.bench.cleanenv`), so the same :data:`GENERATOR_VERSION`
gives byte-identical commit SHAs everywhere.

Usage::

    inputs = ensure_inputs(Path("var/bench/inputs"), large=False)
    clone(inputs.flask_git)

or ``python -m tests.bench.repogen [--root DIR] [--no-large]``, which builds what is
missing and prints what each repository holds and what it cost to build.

Each repository is built in a temporary directory next to its final place,
stamped with the generator version and its spec, and renamed into place only
when complete; a complete, current set is reused at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.bench.cleanenv import clean_env, run
from tests.bench.fastimport import build_git
from tests.bench.hgconvert import HG, build_hg
from tests.bench.history import FLASK, LARGE, REFS

#: Bump to invalidate every input built before: any change that alters the generated history, here or in
#: tests.bench.history, tests.bench.contents, tests.bench.fastimport, tests.bench.hgconvert or tests.bench.cleanenv.
GENERATOR_VERSION = 1
STAMP = "repogen-stamp.json"
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "var" / "bench" / "inputs"


@dataclass(frozen=True, slots=True)
class BenchInputs:
    """The benchmark inputs, each a complete repository (see :func:`ensure_inputs`)."""

    flask_git: Path  # bare git repo, flask-sized history
    large_git: Path | None  # bare git repo, git/git-sized (None when large=False)
    refs_git: Path  # bare git repo with 20,000 loose refs (no packed-refs)
    flask_hg: Path  # Mercurial repo holding the same history as flask_git


# ---------------------------------------------------------------- building once, reusing after

def _stamp_file(path: Path) -> Path:
    return path / ".hg" / STAMP if (path / ".hg").is_dir() else path / STAMP


def read_stamp(path: Path) -> dict[str, object] | None:
    """What built ``path`` (generator version, spec, phase timings), or None if it is not a complete input."""
    try:
        stamp = json.loads(_stamp_file(path).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _current(path: Path, identity: dict[str, object]) -> bool:
    stamp = read_stamp(path)
    return stamp is not None and {key: stamp.get(key) for key in identity} == identity


def ensure_built(path: Path, identity: dict[str, object], build: Callable[[Path], dict[str, float]]) -> Path:
    """Reuse ``path`` if its stamp matches ``identity``; else build it aside and rename it into place."""
    identity = json.loads(json.dumps({"generator": GENERATOR_VERSION, **identity}))
    if _current(path, identity):
        return path
    work = Path(tempfile.mkdtemp(prefix=f".building-{path.name}-", dir=path.parent))
    try:
        started = time.monotonic()
        timings = build(work / path.name)
        timings["total"] = time.monotonic() - started
        _stamp_file(work / path.name).write_text(json.dumps({**identity, "seconds": timings}, indent=1) + "\n")
        if path.exists():  # stale: out of the way first, so the rename below is atomic
            path.rename(work / "stale")
        try:
            (work / path.name).rename(path)
        except OSError:  # another process renamed its build in meanwhile: keep that one if it is current
            if not _current(path, identity):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def ensure_inputs(root: Path, *, large: bool = True) -> BenchInputs:
    """Create (or reuse if already complete and current) the benchmark inputs under ``root``.

    ``flask.git``, ``large.git`` and ``refs.git`` are bare git repositories and
    ``flask-hg`` the Mercurial conversion of ``flask.git``.  Building them all
    takes minutes (``large.git`` most of it); reusing them takes milliseconds.
    """
    root.mkdir(parents=True, exist_ok=True)
    flask = ensure_built(root / "flask.git", {"spec": asdict(FLASK)}, lambda path: build_git(path, FLASK))
    refs = ensure_built(root / "refs.git", {"spec": asdict(REFS)}, lambda path: build_git(path, REFS))
    hg = ensure_built(root / "flask-hg", {"converted": asdict(FLASK)}, lambda path: build_hg(flask, path))
    big = None
    if large:
        big = ensure_built(root / "large.git", {"spec": asdict(LARGE)}, lambda path: build_git(path, LARGE))
    return BenchInputs(flask_git=flask, large_git=big, refs_git=refs, flask_hg=hg)


# ---------------------------------------------------------------- what was built

def describe_git(path: Path) -> dict[str, int]:
    """Commits, objects, pack size and refs (all, and how many are loose files) of a bare repository."""
    with tempfile.TemporaryDirectory(prefix="repogen-home-") as home:
        env = clean_env(Path(home))
        counts = dict(line.split(": ") for line in run(["git", "-C", path, "count-objects", "-v"], env).splitlines())
        commits = int(run(["git", "-C", path, "rev-list", "--all", "--count"], env))
        refs = len(run(["git", "-C", path, "for-each-ref", "--format=x"], env).splitlines())
    loose = sum(len(files) for _, _, files in os.walk(path / "refs"))
    return {"commits": commits, "objects": int(counts["count"]) + int(counts["in-pack"]),
            "packed_bytes": int(counts["size-pack"]) * 1024, "refs": refs, "loose_refs": loose}


def describe_hg(path: Path) -> dict[str, int]:
    """Changesets and store size of a Mercurial repository."""
    with tempfile.TemporaryDirectory(prefix="repogen-home-") as home:
        tip = run([HG, "log", "-R", path, "-r", "tip", "-T", "{rev}"], clean_env(Path(home)))
    size = sum(entry.stat().st_size for entry in (path / ".hg").rglob("*") if entry.is_file())
    return {"commits": int(tip) + 1, "store_bytes": size}


def main(argv: list[str]) -> int:
    """``python -m tests.bench.repogen [--root DIR] [--no-large]``: build what is missing, print what there is."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.repogen",
                                     description="Build the benchmark input repositories (or reuse them).")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"default: {DEFAULT_ROOT}")
    parser.add_argument("--no-large", dest="large", action="store_false", help="skip the git/git-sized repository")
    args = parser.parse_args(argv)
    started = time.monotonic()
    inputs = ensure_inputs(args.root, large=args.large)
    print(f"inputs under {args.root} (generator version {GENERATOR_VERSION}), ready in "
          f"{time.monotonic() - started:.1f} s\n")
    print("| repository | commits | objects | packed MiB | refs (loose) | build seconds |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for path in (inputs.flask_git, inputs.large_git, inputs.refs_git):
        if path is not None:
            info = describe_git(path)
            print(f"| {path.name} | {info['commits']} | {info['objects']} | {info['packed_bytes'] / 2**20:.1f} | "
                  f"{info['refs']} ({info['loose_refs']}) | {_timings(path)} |")
    info = describe_hg(inputs.flask_hg)
    print(f"| {inputs.flask_hg.name} | {info['commits']} | | {info['store_bytes'] / 2**20:.1f} (store) | "
          f"| {_timings(inputs.flask_hg)} |")
    return 0


def _timings(path: Path) -> str:
    seconds = (read_stamp(path) or {}).get("seconds")
    return ", ".join(f"{key} {value:.1f}" for key, value in seconds.items()) if isinstance(seconds, dict) else "?"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
