"""File contents of a planned history: the bytes of every file version, one file lineage at a time.

:func:`tests.bench.history.plan_history` decides which file versions exist and which
version each one edits; this module decides what they hold.  Each lineage
draws from its own seeded :class:`random.Random`, text versions differ from
their parent by a small edit and binaries by a new image or a patched region,
so successive versions delta the way a real project's do.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from tests.bench.history import BINARY_EXTS, WORDS, HistorySpec, Plan, below, between, pick, random_bytes


def _code_line(rng: random.Random) -> str:
    a, b, c = pick(rng, WORDS), pick(rng, WORDS), pick(rng, WORDS)
    indent = "    " * below(rng, 4)
    kind = below(rng, 9)
    if kind == 0:
        return ""
    if kind == 1:
        return f"{indent}def {a}_{b}(self, {c}, {b}={a!r}):"
    if kind == 2:
        return f"{indent}return {a}.{b}({c}, {a})"
    if kind == 3:
        return f"{indent}if {a} is not None and {b}.{c}:"
    if kind == 4:
        return f"{indent}# " + " ".join(pick(rng, WORDS) for _ in range(between(rng, 3, 9)))
    if kind == 5:
        return f'{indent}raise {a.title()}Error(f"{b} {c}: {{{a}!r}}")'
    if kind == 6:
        return f"{indent}self.{a}_{b} = {c}"
    return f"{indent}{a} = {b}.{c}[{a!r}]"


def _prose_line(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return ""
    return " ".join(pick(rng, WORDS) for _ in range(between(rng, 6, 13)))


def _css_line(rng: random.Random) -> str:
    return f".{pick(rng, WORDS)}-{pick(rng, WORDS)} {{ {pick(rng, WORDS)}: {below(rng, 40)}px; }}"


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
    for _ in range(between(rng, 1, 3)):
        at = below(rng, len(new) + 1)
        roll = rng.random()
        if roll < 0.3 or len(new) < lines[0]:
            new[at:at] = [make(rng) for _ in range(between(rng, 1, 5))]
        elif roll < 0.45 or len(new) > lines[1] * 2:
            del new[at:at + between(rng, 1, 3)]
        else:
            new[at:at + between(rng, 1, 3)] = [make(rng) for _ in range(between(rng, 1, 3))]
    return new


BINARY_MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".gif": b"GIF89a", ".ico": b"\x00\x00\x01\x00", ".bin": b""}


def _new_binary(rng: random.Random, ext: str, size: tuple[int, int]) -> bytes:
    return BINARY_MAGIC[ext] + random_bytes(rng, between(rng, *size))


def _edit_binary(rng: random.Random, ext: str, old: bytes, size: tuple[int, int]) -> bytes:
    """Half the time a new image altogether, otherwise a patched region (an edited asset)."""
    if rng.random() < 0.5:
        return _new_binary(rng, ext, size)
    length = between(rng, 1024, 8192)
    at = below(rng, max(1, len(old) - length))
    return old[:at] + random_bytes(rng, length) + old[at + length:]


def blobs(spec: HistorySpec, plan: Plan) -> Iterator[tuple[int, bytes]]:
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
