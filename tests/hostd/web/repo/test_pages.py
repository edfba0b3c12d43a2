"""The repository pages through the web app (WebTest, with lint), on real git and hg repositories."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from hostd.names import RepoName
from hostd.store.database import Database
from hostd.store.shards import Shards
from hostd.web.repo.model import text
from hostd.web.repo.urls import quoted
from tests.hostd.conftest import Site
from tests.hostd.web.repo.conftest import LATIN1_NAME, MARKUP_NAME, QUOTE_NAME, Story
from tests.hostd.web.repo.pages_support import assert_inert, install, links, pages_app


def test_the_home_page(site: Site, story: Story) -> None:
    install(site, story)
    page = pages_app(site).get("/alice/proj")
    assert page.content_type == "text/html"
    assert_inert(page.text)
    assert "<h1>Hello</h1>" in page.text and "<em>text</em>" in page.text  # the README, rendered
    assert "alert(&#39;readme&#39;)" not in page.text and "alert('readme')" not in page.text  # its script dropped
    command = "git clone https://example.test/alice/proj.git" if story.vcs == "git" else \
        "hg clone https://example.test/alice/proj"
    assert f'<code id="clone-https">{command}</code><button type="button" data-copy="clone-https">' in page.text
    assert 'href="/alice/proj/tree/' + story.default.decode() + '/src"' in page.text
    assert f'href="/alice/proj/commit/{story.ids["merge"]}"' in page.text  # the last commit
    assert "../../etc/passwd" in page.text and "root:" not in page.text  # a symlink shown, not followed
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in page.text  # markup in a file name is text


def test_every_link_of_a_listing_leads_to_its_page(site: Site, story: Story) -> None:
    install(site, story)
    app = pages_app(site)
    page = app.get(f"/alice/proj/tree/{story.default.decode()}")
    hrefs = [href for href in links(page.text) if href.startswith(("/alice/proj/blob/", "/alice/proj/tree/"))]
    for name in (MARKUP_NAME, QUOTE_NAME, LATIN1_NAME):
        assert f"/alice/proj/blob/{quoted(story.default)}/{quote(name)}" in hrefs
    for href in hrefs:
        followed = app.get(href)
        assert followed.status_int == 200, href
        assert_inert(followed.text)
    latin1 = app.get(f"/alice/proj/raw/{quoted(story.default)}/{quote(LATIN1_NAME)}")
    assert latin1.body == b"latin-1\n"
    quotes = app.get(f"/alice/proj/blob/{quoted(story.default)}/{quote(QUOTE_NAME)}")
    assert "q&#34;uote&#39;s %41 ?#.txt" in quotes.text


def test_a_ref_with_slashes_and_a_path_below_it(site: Site, story: Story) -> None:
    install(site, story)
    app = pages_app(site)
    page = app.get("/alice/proj/tree/feature/x/src")
    assert 'href="/alice/proj/blob/feature/x/src/app.py"' in page.text
    assert '<span class="mi">3</span>' in app.get("/alice/proj/blob/feature/x/src/app.py").text
    assert app.get(f"/alice/proj/raw/{story.ids['initial']}/src/app.py").body == b"def app():\n    return 1\n"


def test_a_ref_named_with_markup(site: Site, story: Story) -> None:
    install(site, story)
    app = pages_app(site)
    kind = "branches" if story.vcs == "git" else "bookmarks"
    listing = app.get(f"/alice/proj/{kind}")
    assert_inert(listing.text)
    assert f'href="/alice/proj/tree/{quoted(story.markup_ref)}"' in listing.text
    page = app.get(f"/alice/proj/tree/{quoted(story.markup_ref)}")
    assert_inert(page.text)
    assert text(story.markup_ref).replace("<", "&lt;").replace(">", "&gt;") in page.text


@pytest.mark.parametrize(("path", "reason"), [
    ("/alice/proj/tree/nope", "No "),
    ("/alice/proj/tree/feature/nope", "No "),
    ("/alice/proj/blob/{default}/missing.txt", "No file"),
    ("/alice/proj/tree/{default}/src/missing", "No "),
    ("/alice/proj/commit/" + "0" * 40, "No "),
    ("/alice/proj/commit/nope", "No "),
    ("/alice/proj/commits/{default}/src", "not for a path"),
    ("/alice/proj/tree/%3Cscript%3Ealert(1)%3C%2Fscript%3E", "&lt;script&gt;"),
    ("/alice/nothing", "no such page"),
    ("/alice/proj/elsewhere", "no such page"),
])
def test_what_is_not_there_is_a_404_saying_so(site: Site, story: Story, path: str, reason: str) -> None:
    install(site, story)
    page = pages_app(site).get(path.format(default=story.default.decode()), status=404)
    assert reason in page.text
    assert_inert(page.text)


def test_a_file_and_a_directory_each_lead_to_their_own_page(site: Site, story: Story) -> None:
    install(site, story)
    app = pages_app(site)
    default = story.default.decode()
    assert app.get(f"/alice/proj/tree/{default}/src/app.py", status=302).location == \
        f"https://example.test/alice/proj/blob/{default}/src/app.py"
    assert app.get(f"/alice/proj/blob/{default}/src", status=302).location == \
        f"https://example.test/alice/proj/tree/{default}/src"
    assert app.get(f"/alice/proj/commit/{default}", status=302).location == \
        f"https://example.test/alice/proj/commit/{story.ids['merge']}"


def test_a_file_highlighted_with_line_anchors(site: Site, story: Story) -> None:
    install(site, story)
    page = pages_app(site).get(f"/alice/proj/blob/{story.default.decode()}/src/app.py")
    assert_inert(page.text)
    assert '<table class="code highlight">' in page.text
    assert '<tr id="L2"><td class="num"><a href="#L2">2</a></td>' in page.text
    assert '<span class="k">def</span>' in page.text  # Pygments' classes; their colours are in highlight.css
    assert '<link rel="stylesheet" href="/static/highlight.css">' in page.text


def test_a_binary_file_and_a_symlink(site: Site, story: Story) -> None:
    install(site, story)
    app = pages_app(site)
    default = story.default.decode()
    binary = app.get(f"/alice/proj/blob/{default}/bin.dat")
    assert "Binary file, 1,024 bytes." in binary.text
    assert f'href="/alice/proj/raw/{default}/bin.dat"' in binary.text
    link = app.get(f"/alice/proj/blob/{default}/link")
    assert "Symbolic link to <code>../../etc/passwd</code>" in link.text
    assert app.get(f"/alice/proj/raw/{default}/link").body == b"../../etc/passwd"


def test_raw_files_never_run_here(site: Site, story: Story) -> None:
    install(site, story)
    app = pages_app(site)
    default = story.default.decode()
    for path in ("README.md", quote(MARKUP_NAME), "bin.dat", "src/app.py"):
        raw = app.get(f"/alice/proj/raw/{default}/{path}")
        assert raw.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'; sandbox"
        assert raw.headers["X-Content-Type-Options"] == "nosniff"
        assert raw.content_type in ("text/plain", "application/octet-stream")
    readme = app.get(f"/alice/proj/raw/{default}/README.md")
    assert readme.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert b"<script>alert('readme')</script>" in readme.body  # served as it is, as text
    assert "Content-Disposition" not in readme.headers
    binary = app.get(f"/alice/proj/raw/{default}/bin.dat")
    assert binary.headers["Content-Type"] == "application/octet-stream"
    assert binary.headers["Content-Disposition"] == "attachment; filename=\"bin.dat\"; filename*=UTF-8''bin.dat"


def test_history_in_pages(site: Site, story: Story) -> None:
    install(site, story)
    app = pages_app(site)
    first = app.get(f"/alice/proj/commits/{story.default.decode()}")
    assert_inert(first.text)
    assert "&lt;script&gt;alert(&#39;msg&#39;)&lt;/script&gt; names" in first.text
    assert first.text.index(story.ids["merge"]) < first.text.index(story.ids["initial"])
    assert "Older" not in first.text
    assert "No commits on this page." in app.get(f"/alice/proj/commits/{story.default.decode()}?page=2").text
    assert app.get("/alice/proj/commits").text.count('class="commit-line"') == first.text.count('class="commit-line"')
    for bad in ("0", "x", "-1", "1" * 5000, "100001"):
        assert "page number" in app.get(f"/alice/proj/commits/{story.default.decode()}?page={bad}", status=400).text


def test_a_commit_and_its_diff(site: Site, story: Story) -> None:
    install(site, story)
    app = pages_app(site)
    page = app.get(f"/alice/proj/commit/{story.ids['names']}")
    assert_inert(page.text)
    assert "&lt;script&gt;alert(&#39;msg&#39;)&lt;/script&gt; names" in page.text
    assert '<tr class="del"><td class="num">2</td><td class="num"></td><td class="text">-    return 1</td></tr>' \
        in page.text
    assert "Binary file added, 1,024 bytes." in page.text
    merge = app.get(f"/alice/proj/commit/{story.ids['merge']}")
    assert "against the first parent" in merge.text and "1 file changed" in merge.text


def test_refs_pages(site: Site, story: Story) -> None:
    install(site, story)
    app = pages_app(site)
    assert "v1.0" in app.get("/alice/proj/tags").text
    assert "No tags on this page." in app.get("/alice/proj/tags?page=2").text
    app.get("/alice/proj/tags?page=0", status=400)
    branches = app.get("/alice/proj/branches").text
    assert story.default.decode() in branches and "default</span>" in branches
    if story.vcs == "git":
        assert "feature/x" in branches
        app.get("/alice/proj/bookmarks", status=404)
        assert "/bookmarks" not in app.get("/alice/proj").text
    else:
        assert "feature/x" in app.get("/alice/proj/bookmarks").text


@pytest.mark.parametrize("vcs", ["git", "hg"])
def test_an_empty_repository_says_how_to_push(site: Site, vcs: str) -> None:
    site.repo("alice", "empty", vcs, public=True, readme=None)
    app = pages_app(site)
    page = app.get("/alice/empty")
    assert "This repository is empty" in page.text
    if vcs == "git":
        assert "git remote add origin https://example.test/alice/empty.git" in page.text
    else:
        assert "hg push https://example.test/alice/empty" in page.text
    app.get("/alice/empty/tree/main", status=404)
    assert "This repository is empty" in app.get("/alice/empty/commits").text


def test_a_repository_of_another_shard_shows_what_the_database_says(site: Site, database: Database) -> None:
    Shards(database).add("elsewhere")
    site.accounts.add_user("alice", "password-alice")
    site.accounts.add_repo(RepoName("alice", "far"), "git", True, shard="elsewhere")
    app = pages_app(site)
    page = app.get("/alice/far")
    assert "Stored on storage shard <strong>elsewhere</strong>" in page.text
    assert "git clone https://example.test/alice/far.git" in page.text
    assert "shard elsewhere" in app.get("/alice/far/tree/main", status=404).text

