"""The git and Mercurial readers answer the same questions the same way, on real repositories."""

from __future__ import annotations

import pytest

from hostd.web.repo.model import IsADirectory, NotADirectory, NotFound
from tests.hostd.web.repo.conftest import BINARY, LATIN1_NAME, MARKUP_NAME, MESSAGE, QUOTE_NAME, Story


def test_refs_and_the_default_branch(story: Story) -> None:
    reader = story.reader()
    refs = reader.refs()
    assert refs.default is not None
    assert (refs.default.name, refs.default.target) == (story.default, story.ids["merge"])
    assert [tag.name for tag in refs.tags] == [b"v1.0"]
    assert refs.tags[0].target == story.ids.get("tagged", story.ids["names"])  # peeled: the commit, not the tag
    # git's branches are hg's bookmarks here.
    moving = refs.branches if story.vcs == "git" else refs.bookmarks
    assert {(ref.name, ref.target) for ref in moving} >= {(b"feature/x", story.ids["feature"])}
    reader.close()


@pytest.mark.parametrize(("rest", "ref", "path"), [
    (b"feature/x", b"feature/x", b""),
    (b"feature/x/src/app.py", b"feature/x", b"src/app.py"),
    (b"feature/x//src//app.py/", b"feature/x", b"src/app.py"),
    (b"v1.0/docs", b"v1.0", b"docs"),
], ids=["slash-ref", "slash-ref-and-path", "empty-segments", "tag"])
def test_the_longest_ref_prefix_is_the_ref(story: Story, rest: bytes, ref: bytes, path: bytes) -> None:
    resolved = story.reader().resolve(rest)
    assert (resolved.ref, resolved.path) == (ref, path)


def test_a_full_commit_id_is_a_revision(story: Story) -> None:
    reader = story.reader()
    commit = story.ids["initial"]
    resolved = reader.resolve(commit.encode() + b"/src")
    assert (resolved.ref, resolved.commit, resolved.path, resolved.rev) == (None, commit, b"src", commit.encode())
    with pytest.raises(NotFound):
        reader.resolve(b"0" * 40)
    with pytest.raises(NotFound):
        reader.resolve(commit[:12].encode())  # an abbreviation is not a revision in a URL


@pytest.mark.parametrize("rest", [b"nope", b"nope/src", b"../../config", b"", b"/", b"feature", b"HEAD"])
def test_unknown_revisions_are_not_found(story: Story, rest: bytes) -> None:
    with pytest.raises(NotFound):
        story.reader().resolve(rest)


def test_the_top_directory(story: Story) -> None:
    entries = {entry.name: entry for entry in story.reader().tree(story.ids["merge"], b"")}
    names = list(entries)
    assert names[:2] == [b"docs", b"src"]  # directories first
    assert names[2:] == sorted(names[2:])
    assert {MARKUP_NAME, QUOTE_NAME, LATIN1_NAME, b"README.md"} <= set(names)
    link = entries[b"link"]
    assert (link.kind, link.target) == ("symlink", b"../../etc/passwd")  # as stored, never followed
    assert (entries[b"bin.dat"].kind, entries[b"bin.dat"].size) == ("file", len(BINARY))
    assert entries[b"run.sh"].executable and not entries[b"README.md"].executable
    assert entries[b"src"].kind == "dir"


def test_paths_that_are_not_what_the_page_asks_for(story: Story) -> None:
    reader = story.reader()
    head = story.ids["merge"]
    assert [entry.name for entry in reader.tree(head, b"src")] == [b"app.py"]
    with pytest.raises(NotADirectory):
        reader.tree(head, b"src/app.py")
    with pytest.raises(IsADirectory):
        reader.file(head, b"src")
    for missing in (b"missing", b"src/missing", b"src/app.py/x", b"..", b"src/../README.md"):
        with pytest.raises(NotFound):
            reader.tree(head, missing)
        with pytest.raises(NotFound):
            reader.file(head, missing)


def test_files_and_symlinks(story: Story) -> None:
    reader = story.reader()
    head = story.ids["merge"]
    assert reader.file(head, b"src/app.py").data == b"def app():\n    return 3\n"
    assert reader.file(story.ids["initial"], b"src/app.py").data == b"def app():\n    return 1\n"
    assert reader.file(head, LATIN1_NAME).data == b"latin-1\n"
    link = reader.file(head, b"link")
    assert (link.kind, link.data) == ("symlink", b"../../etc/passwd")
    assert reader.file(head, b"bin.dat").data == BINARY
    assert reader.file(head, b"run.sh").executable


def test_history_newest_first_in_pages(story: Story) -> None:
    reader = story.reader()
    everything = reader.history(story.ids["merge"], 0, 50)
    ids = [commit.id for commit in everything]
    assert ids[0] == story.ids["merge"] and ids[-1] == story.ids["initial"]
    assert set(story.ids.values()) <= set(ids)
    assert reader.history(story.ids["merge"], 1, 2) == everything[1:3]
    assert reader.history(story.ids["merge"], 50, 50) == ()
    names = reader.commit(story.ids["names"])
    assert names.summary == MESSAGE.splitlines()[0] and "body line" in names.message
    assert names.author.startswith("Ann")
    assert names.parents == (story.ids["initial"],)
    assert len(reader.commit(story.ids["merge"]).parents) == 2


def test_last_change_of_each_entry(story: Story) -> None:
    reader = story.reader()
    entries = frozenset(entry.name for entry in reader.tree(story.ids["merge"], b""))
    last = reader.last_changes(story.ids["merge"], b"", entries)
    assert last[b"README.md"].id == story.ids["initial"]
    assert last[b"link"].id == story.ids["names"]
    # Along first parents, feature/x's change arrived with the merge.
    assert last[b"src"].id == story.ids["merge"]
    assert last[b"docs"].id == story.ids["main"]
    assert reader.last_changes(story.ids["merge"], b"src", frozenset({b"app.py"}))[b"app.py"].id == story.ids["merge"]


def test_a_commits_diff(story: Story) -> None:
    reader = story.reader()
    diff = reader.diff(story.ids["names"])
    assert diff.parent == story.ids["initial"]
    files = {file.path: file for file in diff.files}
    assert {MARKUP_NAME, QUOTE_NAME, LATIN1_NAME, b"bin.dat", b"link", b"run.sh", b"src/app.py"} <= set(files)
    app = files[b"src/app.py"]
    assert (app.change, app.added, app.removed) == ("modified", 1, 1)
    assert [(line.kind, line.old, line.new, line.text) for line in app.hunks[0].lines] == [
        (" ", 1, 1, "def app():"), ("-", 2, None, "    return 1"), ("+", None, 2, "    return 2")]
    binary = files[b"bin.dat"]
    assert binary.binary and binary.change == "added" and binary.note == f"Binary file added, {len(BINARY):,} bytes."
    link = files[b"link"]
    assert link.hunks[0].lines[0].text == "../../etc/passwd"


def test_a_merge_is_diffed_against_its_first_parent(story: Story) -> None:
    diff = story.reader().diff(story.ids["merge"])
    assert diff.parent == story.ids["main"]
    assert [file.path for file in diff.files] == [b"src/app.py"]


def test_a_root_commit_adds_everything(story: Story) -> None:
    diff = story.reader().diff(story.ids["initial"])
    assert diff.parent is None
    assert {file.path for file in diff.files} == {b"README.md", b"src/app.py", b"docs/guide.txt"}
    assert all(file.change == "added" and file.old_path is None for file in diff.files)
