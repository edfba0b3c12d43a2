"""The Mercurial twin of a generated git repository, through ``hg convert``.

Benchmarks compare git and hg serving the same history, so the hg input is a
conversion of the finished git repository, made as reproducible as the git
SHAs (see :func:`build_hg`).

Usage::

    timings = build_hg(Path("flask.git"), Path("flask-hg"))
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from tests.bench.cleanenv import clean_env, run

_VENV_HG = Path(sys.executable).with_name("hg")
HG = str(_VENV_HG) if _VENV_HG.exists() else "hg"  # the venv's Mercurial, whose version the hg ids depend on


def build_hg(git_path: Path, path: Path) -> dict[str, float]:
    """Convert the finished git repository into the Mercurial repository ``path`` (which must not exist).

    ``hg convert`` carries commits, files, renames (as copies) and branches (as
    bookmarks).  Its own tags commit is dated with the wall clock, so tags are
    skipped there and committed here exactly as convert would, but with a date
    taken from the history: the hg node ids are as reproducible as the git SHAs.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="repogen-home-") as home:
        env = clean_env(Path(home))
        hg = [str(HG), "--config", "extensions.convert=", "--config", "convert.skiptags=True"]
        run([*hg, "convert", "-q", git_path, path], env)
        converted = time.monotonic()
        hgtags = _hgtags(git_path, path, env)
        if hgtags:
            main = run([*hg, "log", "-R", path, "-r", "main", "-T", "{node} {date|hgdate}"], env).split()
            run([*hg, "update", "-q", "-R", path, "-r", main[0]], env)
            (path / ".hgtags").write_text(hgtags)
            run([*hg, "commit", "-q", "-R", path, "-A", "-m", "update tags", "-u", "convert-repo",
                  "-d", f"{int(main[1]) + 60} 0", path / ".hgtags"], env, cwd=path)
            run([*hg, "update", "-q", "-R", path, "null"], env)
    return {"convert": converted - started, "tags": time.monotonic() - converted}


def _hgtags(git_path: Path, hg_path: Path, env: Mapping[str, str]) -> str:
    """The ``.hgtags`` convert would write: "node name" lines, sorted, annotated tags peeled to their commit."""
    nodes = dict(line.split() for line in (hg_path / ".hg" / "shamap").read_text().splitlines())
    refs = run(["git", "-C", git_path, "for-each-ref", "--format=%(refname:strip=2) %(objectname) %(*objectname)",
                 "refs/tags"], env)
    lines = []
    for line in refs.splitlines():
        name, target, *peeled = line.split()
        lines.append(f"{nodes[peeled[0] if peeled else target]} {name}\n")
    return "".join(sorted(lines))
