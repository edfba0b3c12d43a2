"""Line diffs of one file's two versions, for git and Mercurial alike, within limits.

Both readers diff file contents here, through Mercurial's ``mdiff`` (its C
``bdiff``: near-linear where :mod:`difflib` is quadratic on a large file
rewritten), so a commit page looks the same whichever system stores it.

A page must stay small whatever was committed: a side larger than
:data:`MAX_FILE_BYTES` is not diffed, and once :data:`MAX_LINES` lines are
shown over all files, the remaining files are listed with a note instead of
their lines. :class:`Budget` counts what is left.
"""

from __future__ import annotations

from mercurial import mdiff

from hostd.web.repo.model import ChangeKind, FileDiff, Hunk, Line, LineKind, is_binary, text

#: Files listed per commit page; a commit touching more lists the first ones and says so.
MAX_FILES = 300
#: Diff lines shown per commit page over all files.
MAX_LINES = 10_000
#: A version larger than this is "too large to show", not diffed.
MAX_FILE_BYTES = 1 << 20

_OPTIONS = mdiff.diffopts(git=True, nodates=True, context=3)
_KINDS: dict[int, LineKind] = {ord(" "): " ", ord("+"): "+", ord("-"): "-"}


class Budget:
    """How many more diff lines a page may show."""

    def __init__(self, lines: int = MAX_LINES) -> None:
        self.lines = lines


def file_diff(old_path: bytes | None, new_path: bytes | None, old: bytes | None, new: bytes | None,
              budget: Budget) -> FileDiff:
    """The change from ``old`` to ``new`` (None: the file did not exist on that side)."""
    change: ChangeKind = "added" if old is None else "deleted" if new is None else "modified"
    a, b = old or b"", new or b""
    if is_binary(a) or is_binary(b):
        return FileDiff(old_path, new_path, change, binary=True, note=_binary_note(old, new))
    if len(a) > MAX_FILE_BYTES or len(b) > MAX_FILE_BYTES:
        return FileDiff(old_path, new_path, change, note="Too large to show.")
    if budget.lines <= 0:
        return FileDiff(old_path, new_path, change, note="Not shown: this commit's diff is too large.")
    name = new_path if new_path is not None else old_path or b""
    _, ranges = mdiff.unidiff(a, b"", b, b"", name, name, False, _OPTIONS)
    hunks: list[Hunk] = []
    added = removed = 0
    cut = False
    for (start_old, _, start_new, _), raw in ranges:
        old_no, new_no = start_old, start_new
        lines: list[Line] = []
        header = ""
        for item in raw:
            if item.startswith(b"@@"):
                header = text(item.rstrip(b"\n"))
                continue
            kind = _KINDS.get(item[0]) if item else None
            if kind is None:  # "\ No newline at end of file"
                continue
            body = text(item[1:].rstrip(b"\n"))
            if kind == "-":
                lines.append(Line(kind, old_no, None, body))
                old_no += 1
                removed += 1
            elif kind == "+":
                lines.append(Line(kind, None, new_no, body))
                new_no += 1
                added += 1
            else:
                lines.append(Line(kind, old_no, new_no, body))
                old_no += 1
                new_no += 1
        if not cut:
            if len(lines) > budget.lines:
                cut = True
                lines = lines[:budget.lines]
            budget.lines -= len(lines)
            hunks.append(Hunk(header, tuple(lines)))
            cut = cut or budget.lines <= 0
    note = "Cut short: this commit's diff is too large." if cut else None
    return FileDiff(old_path, new_path, change, tuple(hunks), added, removed, note=note)


def _binary_note(old: bytes | None, new: bytes | None) -> str:
    if old is None:
        return f"Binary file added, {len(new or b''):,} bytes."
    if new is None:
        return f"Binary file deleted, {len(old):,} bytes."
    return f"Binary file changed, {len(old):,} → {len(new):,} bytes."
