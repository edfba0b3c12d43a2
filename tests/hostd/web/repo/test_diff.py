"""One file's diff within the page's limits (hostd.web.repo.diff)."""

from __future__ import annotations

from hostd.web.repo.diff import MAX_FILE_BYTES, Budget, file_diff


def test_line_numbers_and_counts() -> None:
    old = b"".join(b"line %d\n" % n for n in range(1, 21))
    new = old.replace(b"line 3\n", b"line three\n").replace(b"line 18\n", b"") + b"line 21"
    diff = file_diff(b"f", b"f", old, new, Budget())
    assert (diff.change, diff.added, diff.removed, diff.note) == ("modified", 2, 2, None)
    first, second = diff.hunks
    assert first.header == "@@ -1,6 +1,6 @@"
    assert [(line.kind, line.old, line.new) for line in first.lines][1:4] == [
        (" ", 2, 2), ("-", 3, None), ("+", None, 3)]
    assert second.lines[-1] == second.lines[-1].__class__("+", None, 20, "line 21")  # no "\ No newline" line


def test_added_deleted_and_binary() -> None:
    assert file_diff(None, b"f", None, b"a\n", Budget()).change == "added"
    deleted = file_diff(b"f", None, b"a\nb\n", None, Budget())
    assert (deleted.change, deleted.removed) == ("deleted", 2)
    binary = file_diff(b"f", b"f", b"text\n", b"\0\1", Budget())
    assert binary.binary and not binary.hunks and binary.note == "Binary file changed, 5 → 2 bytes."


def test_a_large_file_is_not_diffed() -> None:
    large = file_diff(b"f", b"f", b"a\n", b"b\n" * (MAX_FILE_BYTES // 2 + 1), Budget())
    assert large.hunks == () and large.note == "Too large to show."


def test_the_budget_cuts_a_diff_short_and_leaves_later_files_out() -> None:
    budget = Budget(10)
    old = b"".join(b"%d\n" % n for n in range(100))
    new = b"".join(b"%d changed\n" % n for n in range(100))
    cut = file_diff(b"f", b"f", old, new, budget)
    assert sum(len(hunk.lines) for hunk in cut.hunks) == 10
    assert (cut.added, cut.removed) == (100, 100)  # counted in full all the same
    assert cut.note == "Cut short: this commit's diff is too large."
    later = file_diff(b"g", b"g", b"a\n", b"b\n", budget)
    assert later.hunks == () and later.note == "Not shown: this commit's diff is too large."


def test_bytes_that_are_not_utf8_are_shown_replaced() -> None:
    diff = file_diff(b"f", b"f", b"caf\xe9\n", b"cafe\n", Budget())
    assert diff.hunks[0].lines[0].text == "caf\N{REPLACEMENT CHARACTER}"
