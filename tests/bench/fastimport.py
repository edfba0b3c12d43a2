"""A planned history as a bare git repository, through ``git fast-import``.

The plan (:mod:`tests.bench.history`) and its file contents (:mod:`tests.bench.contents`)
are streamed into ``git fast-import`` with explicit author and committer
dates, then repacked.  Git runs without any user or system configuration
(:mod:`tests.bench.cleanenv`), so the same spec gives byte-identical commit SHAs on
every machine.

Usage::

    timings = build_git(Path("flask.git"), FLASK)
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.bench.cleanenv import clean_env, run
from tests.bench.contents import blobs
from tests.bench.history import MAINTAINERS, PEOPLE, HistorySpec, Plan, plan_history


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def _person(index: int, when: int) -> bytes:
    name, email, tz = PEOPLE[index]
    return f"{name} <{email}> {when} {tz}".encode()


def fast_import_stream(spec: HistorySpec, plan: Plan) -> Iterator[bytes]:
    """The ``git fast-import`` input for ``plan``: all blobs, then commits, then tags and refs."""
    for version, content in blobs(spec, plan):
        yield b"blob\nmark :%d\n" % (version + 1) + _data(content)
    base = len(plan.parent) + 1  # commit i has mark base + i
    for i, commit in enumerate(plan.commits):
        lines = [b"commit %s\nmark :%d\nauthor %s\ncommitter %s\n" % (
            commit.ref.encode(), base + i, _person(commit.author, commit.time),
            _person(commit.committer, commit.time + 60 * (commit.author != commit.committer)))]
        lines.append(_data(commit.message.encode()))
        for word, parent in zip((b"from", b"merge"), commit.parents, strict=False):
            lines.append(b"%s :%d\n" % (word, base + parent))
        for path, version in commit.changes:
            if version < 0:
                lines.append(b"D %s\n" % path.encode())
            else:
                mode = b"100755" if plan.ext[plan.lineage[version]] == ".sh" else b"100644"
                lines.append(b"M %s :%d %s\n" % (mode, version + 1, path.encode()))
        lines.append(b"\n")
        yield b"".join(lines)
    for ref, at, annotated in plan.tags:
        if annotated:
            name = ref.removeprefix("refs/tags/").encode()
            tagger = _person(at % MAINTAINERS, plan.commits[at].time + 3600)
            yield b"tag %s\nfrom :%d\ntagger %s\n" % (name, base + at, tagger) + _data(b"Release %s\n" % name)
        else:
            yield b"reset %s\nfrom :%d\n\n" % (ref.encode(), base + at)
    for ref, at in plan.heads.items():
        yield b"reset %s\nfrom :%d\n\n" % (ref.encode(), base + at)
    yield b"reset refs/heads/_topic\n\n"  # the scratch branch short-lived topics were built on
    yield b"done\n"


def build_git(path: Path, spec: HistorySpec) -> dict[str, float]:
    """Create the bare repository ``path`` (which must not exist) holding ``spec``'s history.

    Returns the seconds each phase took: planning and importing (``import``) and packing (``repack``).
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="repogen-home-") as home:
        env = clean_env(Path(home))
        run(["git", "init", "-q", "--bare", "--template=", path], env)
        run(["git", "-C", path, "symbolic-ref", "HEAD", "refs/heads/main"], env)
        run(["git", "-C", path, "config", "gc.auto", "0"], env)  # no surprise packing (of refs above all)
        plan = plan_history(spec)
        importer = subprocess.Popen(["git", "-C", str(path), "fast-import", "--quiet", "--done"], env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert importer.stdin is not None and importer.stderr is not None
        try:
            for chunk in fast_import_stream(spec, plan):
                importer.stdin.write(chunk)
            importer.stdin.close()
        except BrokenPipeError:
            pass
        errors = importer.stderr.read().decode(errors="replace")
        if importer.wait():
            raise RuntimeError(f"git fast-import failed: {errors.strip()}")
        imported = time.monotonic()
        run(["git", "-C", path, "repack", "-q", *spec.repack], env)
    return {"import": imported - started, "repack": time.monotonic() - imported}
