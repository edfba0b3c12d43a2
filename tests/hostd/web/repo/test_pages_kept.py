"""What the pages keep between views (per ref state, never per visitor), and files out of the ordinary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hostd.names import RepoName
from hostd.web.repo import pages
from hostd.web.repo.cache import PageCache
from tests.hostd.conftest import Site, age
from tests.hostd.web.repo.conftest import Story, git, hg, write
from tests.hostd.web.repo.pages_support import assert_inert, install, pages_app


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    real = pages.open_reader

    def counting(vcs: str, path: Path, refs: Any = None) -> Any:
        opened.append(vcs)
        return real(vcs, path, refs)

    monkeypatch.setattr(pages, "open_reader", counting)
    return opened


def test_an_unchanged_repository_is_served_from_memory(site: Site, story: Story,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    install(site, story)
    opened = _count_opens(monkeypatch)
    app = pages_app(site)
    urls = ["/alice/proj", "/alice/proj/tree/feature/x/src", f"/alice/proj/blob/{story.default.decode()}/run.sh",
            f"/alice/proj/raw/{story.default.decode()}/run.sh", "/alice/proj/commits/feature/x",
            f"/alice/proj/commit/{story.ids['names']}", "/alice/proj/tags"]
    first = [app.get(url).body for url in urls]
    read = len(opened)
    assert read == len(urls) + 1  # each page once, and the refs once for all of them
    assert [app.get(url).body for url in urls] == first
    assert len(opened) == read  # not opened again


def test_a_push_makes_the_next_view_fresh(site: Site, git_story: Story) -> None:
    ref = install(site, git_story)
    app = pages_app(site)
    assert f"/alice/proj/commit/{git_story.ids['merge']}" in app.get("/alice/proj").text
    served = site.storage.path(ref, "git")
    git(served, "--git-dir", str(served), "update-ref", "refs/heads/main", git_story.ids["feature"])
    age(served)  # the same mtimes as before: only the ref file's inode and size tell
    page = app.get("/alice/proj").text
    assert f"/alice/proj/commit/{git_story.ids['feature']}" in page
    assert f"/alice/proj/commit/{git_story.ids['merge']}" not in page


def test_a_changeset_made_secret_is_no_longer_shown(site: Site, hg_story: Story) -> None:
    ref = install(site, hg_story)
    app = pages_app(site)
    merge = hg_story.ids["merge"]
    app.get(f"/alice/proj/commit/{merge}")
    served = site.storage.path(ref, "hg")
    hg(served, "phase", "--force", "--secret", "-r", merge)
    age(served)
    app.get(f"/alice/proj/commit/{merge}", status=404)
    assert merge not in app.get("/alice/proj").text


def test_the_header_is_rendered_for_each_visitor(site: Site, git_story: Story) -> None:
    install(site, git_story)
    cache = PageCache()
    signed_in = pages_app(site, cache=cache, user="alice").get("/alice/proj")
    assert '<a class="user" href="/" title="Your repositories">alice</a>' in signed_in.text
    anonymous = pages_app(site, cache=cache).get("/alice/proj")  # the same body, from the cache
    assert 'class="user"' not in anonymous.text and "Sign in" in anonymous.text
    assert anonymous.text.split("<main>")[1] == signed_in.text.split("<main>")[1]


def _odd_files(site: Site, tmp_path: Path) -> RepoName:
    work = tmp_path / "odd"
    work.mkdir()
    git(work, "init", "-q")
    write(work, b"long.txt", b"".join(b"line %d\n" % n for n in range(25_000)))
    write(work, b"huge.txt", b"x" * 100 + b"\n" + b"y" * (6 << 20))
    write(work, b"page.html", b"<html><script>alert(1)</script></html>")
    write(work, b"image.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>')
    write(work, b"latin1.txt", b"caf\xe9\n")
    write(work, b"crlf.py", b"a = 1\r\nb = 2\r\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "odd files")
    ref = RepoName("alice", "odd")
    site.accounts.add_user("alice", "password-alice")
    site.accounts.add_repo(ref, "git", True)
    served = site.storage.path(ref, "git")
    served.parent.mkdir(parents=True, exist_ok=True)
    (work / ".git").rename(served)
    age(served)
    return ref


def test_files_out_of_the_ordinary(site: Site, tmp_path: Path) -> None:
    _odd_files(site, tmp_path)
    app = pages_app(site)
    long = app.get("/alice/odd/blob/main/long.txt")
    assert "Large file: shown without highlighting." in long.text and "line 24999" in long.text
    huge = app.get("/alice/odd/blob/main/huge.txt")
    assert "Too large to show here (6,291,557 bytes)." in huge.text and "yyyy" not in huge.text
    crlf = app.get("/alice/odd/blob/main/crlf.py")
    assert 'id="L2"' in crlf.text and 'id="L3"' not in crlf.text
    for name in ("page.html", "image.svg"):
        raw = app.get(f"/alice/odd/raw/main/{name}")
        assert raw.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert "sandbox" in raw.headers["Content-Security-Policy"]
        assert_inert(app.get(f"/alice/odd/blob/main/{name}").text)
    latin1 = app.get("/alice/odd/raw/main/latin1.txt")  # not UTF-8: not served as UTF-8 text
    assert latin1.headers["Content-Type"] == "application/octet-stream"
    assert latin1.headers["Content-Disposition"].startswith("attachment")
    assert app.head("/alice/odd/raw/main/page.html").headers["X-Content-Type-Options"] == "nosniff"
