"""Deterministic benchmark input repositories: git and Mercurial, built once and reused.

Benchmarks of clones, fetches and ref advertisement need repositories with a
realistic shape (history depth, deltas, binaries, branches, tags, many refs),
and their numbers are only comparable if every machine measures the very same
repositories.  So every input is *generated*, not downloaded: a seeded
:class:`random.Random` plans a history (commits, merges, file adds, edits,
renames, deletions), each file's versions are derived in turn from a per-file
seed, and the whole thing is streamed into ``git fast-import`` with explicit
author and committer dates.  Git runs without any user or system
configuration, so the same :data:`GENERATOR_VERSION` gives byte-identical
commit SHAs everywhere.

Usage::

    inputs = ensure_inputs(Path("var/bench/inputs"), large=False)
    clone(inputs.flask_git)

or ``python -m bench.repogen [--root DIR] [--no-large]``, which builds what is
missing and prints what each repository holds and what it cost to build.

Each repository is built in a temporary directory next to its final place,
stamped with the generator version and its spec, and renamed into place only
when complete; a complete, current set is reused at once.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Bump to invalidate every input built before (any change that alters the generated history).
GENERATOR_VERSION = 1
STAMP = "repogen-stamp.json"
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "var" / "bench" / "inputs"
_VENV_HG = Path(sys.executable).with_name("hg")
HG = str(_VENV_HG) if _VENV_HG.exists() else "hg"  # the venv's Mercurial, whose version the hg ids depend on
START_TIME = 1270500000  # 2010-04-05, a fixed epoch: history never depends on the wall clock
SPAN = 12 * 365 * 86400  # every history covers about twelve years, however many commits it has


@dataclass(frozen=True, slots=True)
class HistorySpec:
    """What one generated git repository looks like; every number here is part of its identity."""

    name: str
    seed: int
    commits: int  # total, merges included
    files: int  # text files in the first commit
    dirs: int
    depth: int = 3  # how deep directories nest below the top-level ones
    lines: tuple[int, int] = (20, 300)  # lines of a new text file
    binary_files: int = 0
    binary_size: tuple[int, int] = (10 * 1024, 200 * 1024)
    binary_change: float = 0.0  # chance that a commit replaces or patches a binary file
    touch: tuple[int, int] = (1, 3)  # files edited per commit
    add: float = 0.03  # chance per commit of adding a file
    delete: float = 0.01
    rename: float = 0.01
    long_branches: tuple[str, ...] = ()  # kept as refs, forked at even intervals, merged into main now and then
    topics: float = 0.0  # chance per main commit of starting a short-lived topic branch merged back into main
    tags: int = 0  # release tags, every other one annotated
    feature_refs: int = 0  # extra refs/heads/feature/NNNNN pointing into the history
    tag_refs: int = 0  # extra refs/tags/rNNNNN, a third of them annotated
    repack: tuple[str, ...] = ("-ad",)


FLASK = HistorySpec(
    name="flask", seed=1, commits=5000, files=300, dirs=45, binary_files=16, binary_change=0.012, add=0.02,
    long_branches=("maint/0.12", "maint/1.1", "maint/2.2", "feature/async-views", "feature/typing"),
    topics=0.12, tags=50, repack=("-adf", "--window=50", "--depth=50"),
)
LARGE = HistorySpec(
    name="large", seed=2, commits=60000, files=3000, dirs=160, depth=1, lines=(10, 200), binary_files=20,
    binary_change=0.002, add=0.012, delete=0.008, rename=0.006,
    long_branches=("maint", "next", "seen"), topics=0.15, tags=120,
)
REFS = HistorySpec(
    name="refs", seed=3, commits=400, files=60, dirs=10, lines=(10, 80), topics=0.1,
    feature_refs=14999, tag_refs=5000,  # with main: 20,000 refs
)


@dataclass(frozen=True, slots=True)
class BenchInputs:
    """The benchmark inputs, each a complete repository (see :func:`ensure_inputs`)."""

    flask_git: Path  # bare git repo, flask-sized history
    large_git: Path | None  # bare git repo, git/git-sized (None when large=False)
    refs_git: Path  # bare git repo with 20,000 loose refs (no packed-refs)
    flask_hg: Path  # Mercurial repo holding the same history as flask_git


# ---------------------------------------------------------------- randomness that never changes
# Only random() and getrandbits() are used: their output for a given seed is part of Python's
# compatibility promise, unlike the algorithms behind choice(), sample() or randrange().

def _below(rng: random.Random, n: int) -> int:
    return int(rng.random() * n)


def _pick(rng: random.Random, items: Sequence[str]) -> str:
    return items[_below(rng, len(items))]


def _between(rng: random.Random, low: int, high: int) -> int:
    return low + _below(rng, high - low + 1)


def _bytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


WORDS = (
    "app request response config session blueprint route view template context signal json url rule endpoint "
    "method header cookie cache error handler logger client server stream file path token user group auth "
    "render static debug testing module package instance extension registry loader value result status form "
    "field query param args kwargs data payload body message event hook callback timeout retry buffer chunk "
    "index record item entry key name scope layer policy proxy socket charset mimetype encoder decoder"
).split()
PEOPLE = tuple(
    (f"{first} {last}", f"{first.lower()}.{last.lower()}@example.org", tz)
    for first, last, tz in [
        ("Ada", "Moreau", "+0100"), ("Bruno", "Keller", "+0200"), ("Chen", "Wei", "+0800"),
        ("Dana", "Okafor", "+0000"), ("Emil", "Larsen", "+0100"), ("Fatima", "Haddad", "+0300"),
        ("Gus", "Ortega", "-0600"), ("Hana", "Sato", "+0900"), ("Ivan", "Petrov", "+0300"),
        ("Jo", "Whitfield", "-0500"), ("Kiri", "Tane", "+1200"), ("Lena", "Vogel", "+0100"),
        ("Marco", "Rossi", "+0100"), ("Nia", "Mensah", "+0000"), ("Omar", "Farouk", "+0200"),
        ("Priya", "Raman", "+0530"), ("Quinn", "Baker", "-0800"), ("Rosa", "Lima", "-0300"),
        ("Sven", "Berg", "+0100"), ("Tara", "Quist", "-0700"),
    ]
)
MAINTAINERS = 3  # the first few people merge and tag
TEXT_EXTS = {"src": ".py", "tests": ".py", "docs": ".rst", "examples": ".py", "scripts": ".sh", "assets": ".css"}
BINARY_EXTS = (".png", ".ico", ".gif", ".bin")


# ---------------------------------------------------------------- planning the history

class _PathSet:
    """Paths that can be picked at random in O(1), hot ones (near the front) more often."""

    __slots__ = ("items", "where")

    def __init__(self, items: list[str] | None = None) -> None:
        self.items = items or []
        self.where = {path: i for i, path in enumerate(self.items)}

    def copy(self) -> _PathSet:
        return _PathSet(list(self.items))

    def add(self, path: str) -> None:
        if path not in self.where:
            self.where[path] = len(self.items)
            self.items.append(path)

    def discard(self, path: str) -> None:
        i = self.where.pop(path, None)
        if i is not None:
            last = self.items.pop()
            if i < len(self.items):
                self.items[i] = last
                self.where[last] = i

    def pick(self, rng: random.Random) -> str | None:
        return self.items[int(len(self.items) * rng.random() ** 2)] if self.items else None


@dataclass(slots=True)
class _Branch:
    ref: str
    files: dict[str, int]  # path -> version
    text: _PathSet
    binary: _PathSet
    tip: int = -1  # commit index
    changed: dict[str, None] = field(default_factory=dict)  # paths changed here since the last merge into main
    main_changed: dict[str, None] = field(default_factory=dict)  # paths changed on main meanwhile

    def fork(self, ref: str) -> _Branch:
        return _Branch(ref, dict(self.files), self.text.copy(), self.binary.copy(), self.tip)


@dataclass(frozen=True, slots=True)
class _Commit:
    ref: str
    parents: tuple[int, ...]
    author: int
    committer: int
    time: int
    message: str
    changes: tuple[tuple[str, int], ...]  # (path, version); version -1 deletes


@dataclass(slots=True)
class _Plan:
    """A whole history before any content exists: file versions form one tree per file lineage."""

    parent: list[int] = field(default_factory=list)  # version -> parent version (-1: new file)
    lineage: list[int] = field(default_factory=list)  # version -> lineage
    ext: list[str] = field(default_factory=list)  # lineage -> extension (decides text, binary, mode)
    commits: list[_Commit] = field(default_factory=list)
    tags: list[tuple[str, int, bool]] = field(default_factory=list)  # (ref, commit, annotated)
    heads: dict[str, int] = field(default_factory=dict)  # ref -> commit

    def new_version(self, parent: int, lineage: int) -> int:
        self.parent.append(parent)
        self.lineage.append(lineage)
        return len(self.parent) - 1

    def new_file(self, ext: str) -> int:
        self.ext.append(ext)
        return self.new_version(-1, len(self.ext) - 1)

    def is_binary(self, version: int) -> bool:
        return self.ext[self.lineage[version]] in BINARY_EXTS


class _Planner:
    """Plays the history forward with one seeded RNG; content comes later, file by file."""

    def __init__(self, spec: HistorySpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.plan = _Plan()
        self.clock = START_TIME
        self.dirs = self._make_dirs()
        self.taken: set[str] = set()

    def _make_dirs(self) -> list[str]:
        dirs = list(TEXT_EXTS)
        while len(dirs) < self.spec.dirs:
            parent = _pick(self.rng, dirs)
            if parent.count("/") < self.spec.depth:
                child = f"{parent}/{_pick(self.rng, WORDS)}"
                if child not in dirs:
                    dirs.append(child)
        return dirs

    def _new_path(self, binary: bool, ext: str | None = None) -> str:
        while True:
            directory = _pick(self.rng, self.dirs)
            top = directory.split("/", 1)[0]
            ext = ext or (_pick(self.rng, BINARY_EXTS) if binary else TEXT_EXTS[top])
            stem = f"{_pick(self.rng, WORDS)}_{_pick(self.rng, WORDS)}"
            path = f"{directory}/{'test_' if top == 'tests' and not binary else ''}{stem}{ext}"
            if path not in self.taken:
                self.taken.add(path)
                return path

    def _set(self, branch: _Branch, path: str, version: int) -> None:
        branch.files[path] = version
        (branch.binary if self.plan.is_binary(version) else branch.text).add(path)

    def _drop(self, branch: _Branch, path: str) -> None:
        del branch.files[path]
        branch.text.discard(path)
        branch.binary.discard(path)

    def _add_file(self, branch: _Branch, changes: dict[str, int], binary: bool) -> None:
        path = self._new_path(binary)
        version = self.plan.new_file(path[path.rindex("."):])
        self._set(branch, path, version)
        changes[path] = version

    def _edit(self, branch: _Branch, changes: dict[str, int]) -> None:
        """One change to one file: mostly a small text edit, sometimes an add, delete, rename or binary."""
        spec, rng = self.spec, self.rng
        roll = rng.random()
        if roll < spec.add:
            self._add_file(branch, changes, binary=False)
            return
        binary = roll > 1 - spec.binary_change
        path = (branch.binary if binary else branch.text).pick(rng)
        if path is None or path in changes:
            return
        version = branch.files[path]
        if roll < spec.add + spec.delete and len(branch.text.items) > spec.files // 2:
            self._drop(branch, path)
            changes[path] = -1
        elif roll < spec.add + spec.delete + spec.rename:
            self._drop(branch, path)
            changes[path] = -1
            new = self._new_path(binary=False, ext=path[path.rindex("."):])
            self._set(branch, new, version)
            changes[new] = version
        else:
            changes[path] = self.plan.new_version(version, self.plan.lineage[version])
            self._set(branch, path, changes[path])

    def _commit(self, branch: _Branch, parents: tuple[int, ...], changes: dict[str, int], message: str,
                committer: int | None = None) -> None:
        self.clock += _between(self.rng, 60, 2 * SPAN // self.spec.commits)
        author = _below(self.rng, len(PEOPLE))
        plan = self.plan
        plan.commits.append(_Commit(branch.ref, parents, author, author if committer is None else committer,
                                    self.clock, message, tuple(changes.items())))
        branch.tip = len(plan.commits) - 1
        plan.heads[branch.ref] = branch.tip
        for path in changes:
            branch.changed[path] = None

    def _message(self) -> str:
        rng = self.rng
        verb = _pick(rng, ("Fix", "Add", "Update", "Refactor", "Document", "Test", "Remove", "Simplify"))
        subject = f"{verb} {_pick(rng, WORDS)} {_pick(rng, WORDS)} handling"
        if rng.random() < 0.4:
            body = " ".join(_pick(rng, WORDS) for _ in range(_between(rng, 8, 40)))
            return f"{subject}\n\n{body}\n"
        return subject + "\n"

    def _work(self, branch: _Branch, main: _Branch, open_branches: list[_Branch]) -> None:
        changes: dict[str, int] = {}
        for _ in range(_between(self.rng, *self.spec.touch)):
            self._edit(branch, changes)
        if not changes:
            self._add_file(branch, changes, binary=False)
        self._commit(branch, (branch.tip,), changes, self._message())
        if branch is main:
            for other in open_branches:
                other.main_changed.update(dict.fromkeys(changes))

    def _merge(self, branch: _Branch, main: _Branch, open_branches: list[_Branch], title: str) -> None:
        """Bring ``branch``'s changes into main; a file changed on both sides gets a resolved version."""
        changes: dict[str, int] = {}
        for path in branch.changed:
            theirs = branch.files.get(path, -1)
            if path in branch.main_changed:
                ours = main.files.get(path, -1)
                theirs = -1 if -1 in (ours, theirs) else self.plan.new_version(theirs, self.plan.lineage[theirs])
            if main.files.get(path, -1) != theirs:
                changes[path] = theirs
                if theirs == -1:
                    self._drop(main, path)
                else:
                    self._set(main, path, theirs)
        self._commit(main, (main.tip, branch.tip), changes, f"{title}\n", committer=_below(self.rng, MAINTAINERS))
        branch.changed.clear()
        branch.main_changed.clear()
        for other in open_branches:
            if other is not branch:
                other.main_changed.update(dict.fromkeys(changes))

    def run(self) -> _Plan:
        spec, rng, plan = self.spec, self.rng, self.plan
        main = _Branch("refs/heads/main", {}, _PathSet(), _PathSet())
        first: dict[str, int] = {}
        for _ in range(spec.files):
            self._add_file(main, first, binary=False)
        for _ in range(spec.binary_files):
            self._add_file(main, first, binary=True)
        self._commit(main, (), first, "Initial import\n")
        long_starts = {(i + 1) * spec.commits // (len(spec.long_branches) + 2): name
                       for i, name in enumerate(spec.long_branches)}
        longs: list[_Branch] = []
        topic: _Branch | None = None
        topic_left = pulls = 0
        while len(plan.commits) < spec.commits:
            if (name := long_starts.pop(len(plan.commits), None)) is not None:
                longs.append(main.fork(f"refs/heads/{name}"))
                plan.heads[longs[-1].ref] = main.tip  # the ref exists even if the branch never gets a commit
            open_branches = longs + ([topic] if topic else [])
            last = len(plan.commits) == spec.commits - 1  # an open topic merges now: no commit left unreachable
            roll = rng.random()
            if longs and roll < 0.08 and not (topic and last):
                branch = longs[_below(rng, len(longs))]
                if branch.changed and rng.random() < 0.15:
                    self._merge(branch, main, open_branches, f"Merge branch '{branch.ref[11:]}'")
                else:
                    self._work(branch, main, open_branches)
            elif topic is not None:
                if topic_left and not last:
                    self._work(topic, main, open_branches)
                    topic_left -= 1
                elif not topic.changed:
                    topic = None
                else:
                    pulls += 1
                    person = PEOPLE[_below(rng, len(PEOPLE))][1].split(".")[0]
                    self._merge(topic, main, open_branches, f"Merge pull request #{pulls} from {person}/topic")
                    topic = None
            elif rng.random() < spec.topics:
                topic, topic_left = main.fork("refs/heads/_topic"), _between(rng, 1, 8)
            else:
                self._work(main, main, open_branches)
        plan.heads.pop("refs/heads/_topic", None)
        self._tags(longs)
        return plan

    def _tags(self, longs: list[_Branch]) -> None:
        """Release tags on main and the long branches, spread evenly; the refs spec adds plenty more."""
        spec, rng, plan = self.spec, self.rng, self.plan
        released = {"refs/heads/main"} | {branch.ref for branch in longs}
        candidates = [i for i, commit in enumerate(plan.commits) if commit.ref in released]
        major, minor, patch = 0, 1, 0
        for k in range(spec.tags):
            at = candidates[(k + 1) * len(candidates) // (spec.tags + 1)]
            plan.tags.append((f"refs/tags/{major}.{minor}.{patch}", at, k % 2 == 1))
            roll = rng.random()
            major, minor, patch = (major + 1, 0, 0) if roll < 0.08 else (major, minor + 1, 0) if roll < 0.4 else (
                major, minor, patch + 1)
        for k in range(spec.feature_refs):
            plan.heads[f"refs/heads/feature/{k:05d}"] = _below(rng, len(plan.commits))
        for k in range(spec.tag_refs):
            plan.tags.append((f"refs/tags/r{k:05d}", _below(rng, len(plan.commits)), k % 3 == 0))


def plan_history(spec: HistorySpec) -> _Plan:
    """The history ``spec`` describes, as commits over file versions (no content yet)."""
    return _Planner(spec).run()


# ---------------------------------------------------------------- file contents

def _code_line(rng: random.Random) -> str:
    a, b, c = _pick(rng, WORDS), _pick(rng, WORDS), _pick(rng, WORDS)
    indent = "    " * _below(rng, 4)
    kind = _below(rng, 9)
    if kind == 0:
        return ""
    if kind == 1:
        return f"{indent}def {a}_{b}(self, {c}, {b}={a!r}):"
    if kind == 2:
        return f"{indent}return {a}.{b}({c}, {a})"
    if kind == 3:
        return f"{indent}if {a} is not None and {b}.{c}:"
    if kind == 4:
        return f"{indent}# " + " ".join(_pick(rng, WORDS) for _ in range(_between(rng, 3, 9)))
    if kind == 5:
        return f'{indent}raise {a.title()}Error(f"{b} {c}: {{{a}!r}}")'
    if kind == 6:
        return f"{indent}self.{a}_{b} = {c}"
    return f"{indent}{a} = {b}.{c}[{a!r}]"


def _prose_line(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return ""
    return " ".join(_pick(rng, WORDS) for _ in range(_between(rng, 6, 13)))


def _css_line(rng: random.Random) -> str:
    return f".{_pick(rng, WORDS)}-{_pick(rng, WORDS)} {{ {_pick(rng, WORDS)}: {_below(rng, 40)}px; }}"


LINE_MAKERS = {".rst": _prose_line, ".css": _css_line}


def _new_text(rng: random.Random, ext: str, lines: tuple[int, int]) -> list[str]:
    make = LINE_MAKERS.get(ext, _code_line)
    count = int(lines[0] + (lines[1] - lines[0]) * rng.random() ** 2)  # most files small, a few big
    text = [make(rng) for _ in range(count)]
    return ["#!/bin/sh", *text] if ext == ".sh" else text


def _edit_text(rng: random.Random, ext: str, old: list[str], lines: tuple[int, int]) -> list[str]:
    """A small edit (1-3 hunks of a few lines), so successive versions delta well, as real ones do."""
    make = LINE_MAKERS.get(ext, _code_line)
    new = list(old)
    for _ in range(_between(rng, 1, 3)):
        at = _below(rng, len(new) + 1)
        roll = rng.random()
        if roll < 0.3 or len(new) < lines[0]:
            new[at:at] = [make(rng) for _ in range(_between(rng, 1, 5))]
        elif roll < 0.45 or len(new) > lines[1] * 2:
            del new[at:at + _between(rng, 1, 3)]
        else:
            new[at:at + _between(rng, 1, 3)] = [make(rng) for _ in range(_between(rng, 1, 3))]
    return new


BINARY_MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".gif": b"GIF89a", ".ico": b"\x00\x00\x01\x00", ".bin": b""}


def _new_binary(rng: random.Random, ext: str, size: tuple[int, int]) -> bytes:
    return BINARY_MAGIC[ext] + _bytes(rng, _between(rng, *size))


def _edit_binary(rng: random.Random, ext: str, old: bytes, size: tuple[int, int]) -> bytes:
    """Half the time a new image altogether, otherwise a patched region (an edited asset)."""
    if rng.random() < 0.5:
        return _new_binary(rng, ext, size)
    length = _between(rng, 1024, 8192)
    at = _below(rng, max(1, len(old) - length))
    return old[:at] + _bytes(rng, length) + old[at + length:]


def _blobs(spec: HistorySpec, plan: _Plan) -> Iterator[tuple[int, bytes]]:
    """Every version's content, one file lineage after another.

    Emitting a lineage's versions back to back is what makes ``git fast-import``
    (which deltas each blob against the one written just before) produce a pack
    as compact as a real repository's, so a plain ``git repack -ad`` suffices.
    """
    versions: list[list[int]] = [[] for _ in plan.ext]
    for version, lineage in enumerate(plan.lineage):
        versions[lineage].append(version)
    for lineage, ext in enumerate(plan.ext):
        rng = random.Random(f"{spec.seed}/{lineage}")
        if ext in BINARY_EXTS:
            data: dict[int, bytes] = {}
            for version in versions[lineage]:
                parent = plan.parent[version]
                data[version] = (_new_binary(rng, ext, spec.binary_size) if parent < 0
                                 else _edit_binary(rng, ext, data[parent], spec.binary_size))
                yield version, data[version]
        else:
            text: dict[int, list[str]] = {}
            for version in versions[lineage]:
                parent = plan.parent[version]
                text[version] = (_new_text(rng, ext, spec.lines) if parent < 0
                                 else _edit_text(rng, ext, text[parent], spec.lines))
                yield version, ("\n".join(text[version]) + "\n").encode()


# ---------------------------------------------------------------- git

def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def _person(index: int, when: int) -> bytes:
    name, email, tz = PEOPLE[index]
    return f"{name} <{email}> {when} {tz}".encode()


def fast_import_stream(spec: HistorySpec, plan: _Plan) -> Iterator[bytes]:
    """The ``git fast-import`` input for ``plan``: all blobs, then commits, then tags and refs."""
    for version, content in _blobs(spec, plan):
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


def _clean_env(home: Path) -> dict[str, str]:
    """git and hg with no user, system or inherited configuration: the same result on every machine."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LC_ALL": "C", "TZ": "UTC",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "repogen", "GIT_AUTHOR_EMAIL": "repogen@example.org",
        "GIT_AUTHOR_DATE": f"@{START_TIME} +0000",
        "GIT_COMMITTER_NAME": "repogen", "GIT_COMMITTER_EMAIL": "repogen@example.org",
        "GIT_COMMITTER_DATE": f"@{START_TIME} +0000",
        "HGRCPATH": "", "HGPLAIN": "1", "HGENCODING": "utf-8", "HGUSER": "repogen <repogen@example.org>",
    }


def _run(command: Sequence[str | Path], env: Mapping[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run([str(part) for part in command], env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def build_git(path: Path, spec: HistorySpec) -> dict[str, float]:
    """Create the bare repository ``path`` (which must not exist) holding ``spec``'s history.

    Returns the seconds each phase took: planning and importing (``import``) and packing (``repack``).
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="repogen-home-") as home:
        env = _clean_env(Path(home))
        _run(["git", "init", "-q", "--bare", "--template=", path], env)
        _run(["git", "-C", path, "symbolic-ref", "HEAD", "refs/heads/main"], env)
        _run(["git", "-C", path, "config", "gc.auto", "0"], env)  # no surprise packing (of refs above all)
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
        _run(["git", "-C", path, "repack", "-q", *spec.repack], env)
    return {"import": imported - started, "repack": time.monotonic() - imported}


# ---------------------------------------------------------------- Mercurial

def build_hg(git_path: Path, path: Path) -> dict[str, float]:
    """Convert the finished git repository into the Mercurial repository ``path`` (which must not exist).

    ``hg convert`` carries commits, files, renames (as copies) and branches (as
    bookmarks).  Its own tags commit is dated with the wall clock, so tags are
    skipped there and committed here exactly as convert would, but with a date
    taken from the history: the hg node ids are as reproducible as the git SHAs.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="repogen-home-") as home:
        env = _clean_env(Path(home))
        hg = [str(HG), "--config", "extensions.convert=", "--config", "convert.skiptags=True"]
        _run([*hg, "convert", "-q", git_path, path], env)
        converted = time.monotonic()
        hgtags = _hgtags(git_path, path, env)
        if hgtags:
            main = _run([*hg, "log", "-R", path, "-r", "main", "-T", "{node} {date|hgdate}"], env).split()
            _run([*hg, "update", "-q", "-R", path, "-r", main[0]], env)
            (path / ".hgtags").write_text(hgtags)
            _run([*hg, "commit", "-q", "-R", path, "-A", "-m", "update tags", "-u", "convert-repo",
                  "-d", f"{int(main[1]) + 60} 0", path / ".hgtags"], env, cwd=path)
            _run([*hg, "update", "-q", "-R", path, "null"], env)
    return {"convert": converted - started, "tags": time.monotonic() - converted}


def _hgtags(git_path: Path, hg_path: Path, env: Mapping[str, str]) -> str:
    """The ``.hgtags`` convert would write: "node name" lines, sorted, annotated tags peeled to their commit."""
    nodes = dict(line.split() for line in (hg_path / ".hg" / "shamap").read_text().splitlines())
    refs = _run(["git", "-C", git_path, "for-each-ref", "--format=%(refname:strip=2) %(objectname) %(*objectname)",
                 "refs/tags"], env)
    lines = []
    for line in refs.splitlines():
        name, target, *peeled = line.split()
        lines.append(f"{nodes[peeled[0] if peeled else target]} {name}\n")
    return "".join(sorted(lines))


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
        env = _clean_env(Path(home))
        counts = dict(line.split(": ") for line in _run(["git", "-C", path, "count-objects", "-v"], env).splitlines())
        commits = int(_run(["git", "-C", path, "rev-list", "--all", "--count"], env))
        refs = len(_run(["git", "-C", path, "for-each-ref", "--format=x"], env).splitlines())
    loose = sum(len(files) for _, _, files in os.walk(path / "refs"))
    return {"commits": commits, "objects": int(counts["count"]) + int(counts["in-pack"]),
            "packed_bytes": int(counts["size-pack"]) * 1024, "refs": refs, "loose_refs": loose}


def describe_hg(path: Path) -> dict[str, int]:
    """Changesets and store size of a Mercurial repository."""
    with tempfile.TemporaryDirectory(prefix="repogen-home-") as home:
        tip = _run([HG, "log", "-R", path, "-r", "tip", "-T", "{rev}"], _clean_env(Path(home)))
    size = sum(entry.stat().st_size for entry in (path / ".hg").rglob("*") if entry.is_file())
    return {"commits": int(tip) + 1, "store_bytes": size}


def main(argv: list[str]) -> int:
    """``python -m bench.repogen [--root DIR] [--no-large]``: build what is missing, print what there is."""
    parser = argparse.ArgumentParser(prog="python -m bench.repogen",
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
