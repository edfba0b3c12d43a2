"""The pure parts of the pages: README sanitizing, highlighting, URLs, raw responses, ref splitting."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostd.web.repo import highlight, readme
from hostd.web.repo.model import Entry, NotFound, Ref, split_rev, version_key
from hostd.web.repo.raw import disposition, is_text
from hostd.web.repo.urls import RepoUrls
from tests.hostd.web.repo.pages_support import assert_inert

STATIC = Path(__file__).resolve().parents[4] / "hostd" / "web" / "static"


def _link(path: bytes, image: bool) -> str:
    return RepoUrls("o", "n").raw(b"main", path) if image else RepoUrls("o", "n").blob(b"main", path)


ATTACKS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
    "<a href=\" javascript:alert(1)\">x</a>",
    "<a href=\"java&#x09;script:alert(1)\">x</a>",
    "[x](javascript:alert(1))",
    "[x](<javascript:alert(1)>)",
    "![x](javascript:alert(1))",
    "<a href=\"data:text/html,<script>alert(1)</script>\">x</a>",
    "<svg onload=alert(1)><script>alert(1)</script></svg>",
    "<math><mi xlink:href=\"javascript:alert(1)\">x</mi></math>",
    "<iframe src=\"https://example.com\"></iframe>",
    "<object data=\"x\"></object><embed src=\"x\">",
    "<p style=\"background:url(javascript:alert(1))\" onclick=\"alert(1)\">p</p>",
    "<form action=\"https://evil.example\"><input name=a><button formaction=\"javascript:alert(1)\">b</button></form>",
    "<base href=\"https://evil.example/\">",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "<style>body{background:red}</style>",
    "<details open ontoggle=alert(1)>d</details>",
    "<a href=\"vbscript:msgbox(1)\">x</a>",
    "<img srcset=\"javascript:alert(1) 1x\">",
    "<!-- <script>alert(1)</script> -->",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_readme_cannot_run(attack: str) -> None:
    html = readme.render(b"README.md", f"# Title\n\n{attack}\n\ntext\n".encode(), directory=b"", link=_link)
    assert_inert(f"<main>{html}</main>")
    assert "<script" not in html.lower()  # a refused link stays text: "[x](javascript:...)" runs nothing


def test_a_readme_keeps_what_readmes_use_and_links_into_the_repository() -> None:
    source = ("# T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n~~old~~ [doc](guide.md#part) ![logo](../img/logo%20x.png)\n\n"
              "[up](../../../../etc/passwd) [site](https://example.com) [top](#t) <details><summary>s</summary>"
              "d</details> <a href=\"\\\\evil.example\">bs</a>\n")
    html = readme.render(b"ReadMe.MD", source.encode(), directory=b"docs", link=_link)
    assert "<table>" in html and "<s>old</s>" in html and "<details><summary>s</summary>" in html
    assert 'href="/o/n/blob/main/docs/guide.md#part"' in html
    assert 'src="/o/n/raw/main/img/logo%20x.png"' in html
    assert 'href="/o/n/blob/main/etc/passwd"' in html  # never above the top
    assert 'href="https://example.com" rel="nofollow noopener noreferrer"' in html
    assert 'href="#t"' in html
    assert 'href="/o/n/blob/main/docs/%5C%5Cevil.example"' in html


def test_other_readmes_are_text() -> None:
    html = readme.render(b"README.rst", b"<b>bold</b>\n=====\n", directory=b"", link=_link)
    assert html == '<pre class="plain">&lt;b&gt;bold&lt;/b&gt;\n=====\n</pre>'


def test_which_file_is_the_readme() -> None:
    def names(*given: tuple[bytes, str]) -> tuple[Entry, ...]:
        return tuple(Entry(name, kind) for name, kind in given)  # type: ignore[arg-type]

    found = readme.find(names((b"readme.txt", "file"), (b"README.MD", "file"), (b"README", "file")))
    assert found is not None and found.name == b"README.MD"
    assert readme.find(names((b"README.md", "symlink"), (b"docs", "dir"))) is None
    found = readme.find(names((b"README.rst", "file"), (b"notes.md", "file")))
    assert found is not None and found.name == b"README.rst"


def test_highlighted_lines_are_whole_and_classed() -> None:
    lines = highlight.lines("a.py", 'x = """one\n<two>\n"""\n\n')
    assert lines == ['<span class="n">x</span> <span class="o">=</span> <span class="s2">"""one</span>',
                     '<span class="s2">&lt;two&gt;</span>', '<span class="s2">"""</span>', '']
    assert all("style=" not in line for line in lines)
    assert highlight.lines("unknown.zzz", "<b>\n") == ["&lt;b&gt;"]
    big = "x\n" * (highlight.MAX_HIGHLIGHT_LINES + 1)
    assert not highlight.highlightable(big)


def test_the_highlight_stylesheet_is_generated() -> None:
    """``hostd/web/static/highlight.css`` is :func:`highlight.stylesheet`'s output (regenerate it on a change)."""
    assert (STATIC / "highlight.css").read_text() == highlight.stylesheet()


def test_urls_encode_names_byte_for_byte() -> None:
    urls = RepoUrls("alice", "proj")
    assert urls.blob(b"feature/x", b"a b/c%d?e#f\xe9<g>\"'.txt") == \
        "/alice/proj/blob/feature/x/a%20b/c%25d%3Fe%23f%E9%3Cg%3E%22%27.txt"
    assert urls.tree(b"main") == "/alice/proj/tree/main"
    assert urls.crumbs(b"main", b"a/b/c") == [(b"proj", "/alice/proj/tree/main"), (b"a", "/alice/proj/tree/main/a"),
                                              (b"b", "/alice/proj/tree/main/a/b")]


def test_raw_types_and_names() -> None:
    assert is_text(b"plain\n") and not is_text(b"\0") and not is_text(b"caf\xe9")
    assert disposition(b"caf\xe9 \"x\";\r\n.bin") == \
        "attachment; filename=\"caf___x____.bin\"; filename*=UTF-8''caf%E9%20%22x%22%3B%0D%0A.bin"


def test_the_longest_ref_prefix() -> None:
    refs = {name: Ref("branch", name, "0" * 40) for name in (b"a", b"a/b", b"c")}
    assert split_rev(b"a/b/c/d", refs.get)[1:] == (b"a/b", b"c/d")
    assert split_rev(b"a/x", refs.get)[1:] == (b"a", b"x")
    assert split_rev(b"zz/y", refs.get) == (None, b"zz", b"y")
    with pytest.raises(NotFound):
        split_rev(b"//", refs.get)
    assert sorted([b"v1.10", b"v1.9", b"v1.9.1", b"1" * 50], key=version_key) == \
        [b"1" * 50, b"v1.9", b"v1.9.1", b"v1.10"]
