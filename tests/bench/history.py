"""The history of a generated benchmark repository: its spec, and a seeded plan of it.

Benchmark numbers are only comparable if every machine measures the very same
repositories, so their histories are generated, not downloaded.  A seeded
:class:`random.Random` plays a history forward (commits, merges, long-lived
and topic branches, tags, file adds, edits, renames, deletions) as commits
over numbered file versions, with dates counted from a fixed epoch.  What each
version holds is decided afterwards by :mod:`tests.bench.contents`, and
:mod:`tests.bench.fastimport` turns the two into a git repository.

Usage::

    plan = plan_history(FLASK)
    plan.commits[0].changes  # ((path, version), ...) of the initial import
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

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


# ---------------------------------------------------------------- randomness that never changes
# Only random() and getrandbits() are used: their output for a given seed is part of Python's
# compatibility promise, unlike the algorithms behind choice(), sample() or randrange().

def below(rng: random.Random, n: int) -> int:
    """A whole number in ``[0, n)``."""
    return int(rng.random() * n)


def pick(rng: random.Random, items: Sequence[str]) -> str:
    """One of ``items``."""
    return items[below(rng, len(items))]


def between(rng: random.Random, low: int, high: int) -> int:
    """A whole number in ``[low, high]``."""
    return low + below(rng, high - low + 1)


def random_bytes(rng: random.Random, n: int) -> bytes:
    """``n`` random bytes."""
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
class Plan:
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
        self.plan = Plan()
        self.clock = START_TIME
        self.dirs = self._make_dirs()
        self.taken: set[str] = set()

    def _make_dirs(self) -> list[str]:
        dirs = list(TEXT_EXTS)
        while len(dirs) < self.spec.dirs:
            parent = pick(self.rng, dirs)
            if parent.count("/") < self.spec.depth:
                child = f"{parent}/{pick(self.rng, WORDS)}"
                if child not in dirs:
                    dirs.append(child)
        return dirs

    def _new_path(self, binary: bool, ext: str | None = None) -> str:
        while True:
            directory = pick(self.rng, self.dirs)
            top = directory.split("/", 1)[0]
            ext = ext or (pick(self.rng, BINARY_EXTS) if binary else TEXT_EXTS[top])
            stem = f"{pick(self.rng, WORDS)}_{pick(self.rng, WORDS)}"
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
        self.clock += between(self.rng, 60, 2 * SPAN // self.spec.commits)
        author = below(self.rng, len(PEOPLE))
        plan = self.plan
        plan.commits.append(_Commit(branch.ref, parents, author, author if committer is None else committer,
                                    self.clock, message, tuple(changes.items())))
        branch.tip = len(plan.commits) - 1
        plan.heads[branch.ref] = branch.tip
        for path in changes:
            branch.changed[path] = None

    def _message(self) -> str:
        rng = self.rng
        verb = pick(rng, ("Fix", "Add", "Update", "Refactor", "Document", "Test", "Remove", "Simplify"))
        subject = f"{verb} {pick(rng, WORDS)} {pick(rng, WORDS)} handling"
        if rng.random() < 0.4:
            body = " ".join(pick(rng, WORDS) for _ in range(between(rng, 8, 40)))
            return f"{subject}\n\n{body}\n"
        return subject + "\n"

    def _work(self, branch: _Branch, main: _Branch, open_branches: list[_Branch]) -> None:
        changes: dict[str, int] = {}
        for _ in range(between(self.rng, *self.spec.touch)):
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
        self._commit(main, (main.tip, branch.tip), changes, f"{title}\n", committer=below(self.rng, MAINTAINERS))
        branch.changed.clear()
        branch.main_changed.clear()
        for other in open_branches:
            if other is not branch:
                other.main_changed.update(dict.fromkeys(changes))

    def run(self) -> Plan:
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
                branch = longs[below(rng, len(longs))]
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
                    person = PEOPLE[below(rng, len(PEOPLE))][1].split(".")[0]
                    self._merge(topic, main, open_branches, f"Merge pull request #{pulls} from {person}/topic")
                    topic = None
            elif rng.random() < spec.topics:
                topic, topic_left = main.fork("refs/heads/_topic"), between(rng, 1, 8)
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
            plan.heads[f"refs/heads/feature/{k:05d}"] = below(rng, len(plan.commits))
        for k in range(spec.tag_refs):
            plan.tags.append((f"refs/tags/r{k:05d}", below(rng, len(plan.commits)), k % 3 == 0))


def plan_history(spec: HistorySpec) -> Plan:
    """The history ``spec`` describes, as commits over file versions (no content yet)."""
    return _Planner(spec).run()
