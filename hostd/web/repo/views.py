"""The bodies of the repository pages: a reader's answers rendered as HTML fragments.

Each function reads what its page shows and renders its ``repo_*.html``
template, without the site's header: the result depends on the repository
alone, so :mod:`hostd.web.repo.pages` may keep it (:mod:`hostd.web.repo.cache`)
and put it in any visitor's page. Nothing here sees the request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jinja2
from markupsafe import Markup

from hostd.web.repo import highlight, readme
from hostd.web.repo.model import Commit, Reader, Ref, Refs, Resolved, is_binary, text
from hostd.web.repo.urls import RepoUrls, join

#: Commits per page of history.
PAGE = 50
#: Refs of each kind the selector lists; the branches, tags and bookmarks pages list them all.
SELECTOR_REFS = 100
#: Refs per page of the branches, tags and bookmarks pages (each with its commit, read for it).
REFS_PAGE = 200
#: A file larger than this is not shown at all, only offered raw.
MAX_SHOWN_BYTES = 5 << 20


def size(value: int | None) -> str:
    """Bytes for people: 980 B, 12.4 KiB, 3.0 MiB."""
    if value is None:
        return ""
    if value < 1024:
        return f"{value} B"
    amount = float(value)
    for unit in ("KiB", "MiB", "GiB"):
        amount /= 1024
        if amount < 1024 or unit == "GiB":
            break
    return f"{amount:.1f} {unit}"


def when(commit: Commit) -> str:
    """The author's date, in the author's time zone: 2024-05-01 14:03 +0200."""
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(commit.when + commit.offset))
    sign = "+" if commit.offset >= 0 else "-"
    hours, minutes = divmod(abs(commit.offset) // 60, 60)
    return f"{stamp} {sign}{hours:02d}{minutes:02d}"


def install(env: jinja2.Environment) -> None:
    """The filters the ``repo_*.html`` templates use."""
    env.filters["text"] = text
    env.filters["size"] = size
    env.filters["when"] = when


@dataclass(frozen=True, slots=True)
class Views:
    """Renders page bodies with the site's template environment."""

    env: jinja2.Environment

    def _render(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def _selector(self, refs: Refs, current: bytes) -> dict[str, Any]:
        return {"refs": refs, "current": current, "limit": SELECTOR_REFS}

    def tree(self, reader: Reader, urls: RepoUrls, resolved: Resolved, *, home: bool = False) -> str:
        """A directory at a revision: its entries, the last commit, and its README rendered."""
        entries = reader.tree(resolved.commit, resolved.path)
        last = reader.last_changes(resolved.commit, resolved.path, frozenset(entry.name for entry in entries))
        found = readme.find(entries)
        rendered = None
        readme_path = join(resolved.path, found.name) if found is not None else b""
        if found is not None and (found.size or 0) <= readme.MAX_README_BYTES:
            data = reader.file(resolved.commit, readme_path).data
            rendered = Markup(readme.render(  # noqa: S704 - sanitized by nh3 (hostd.web.repo.readme)
                found.name, data, directory=resolved.path,
                link=lambda target, image: (urls.raw if image else urls.blob)(resolved.rev, target)))
        return self._render(
            "repo_tree.html", urls=urls, resolved=resolved, home=home, last=last,
            rows=[(entry, join(resolved.path, entry.name)) for entry in entries],
            commit=reader.commit(resolved.commit), readme=found, readme_html=rendered, readme_path=readme_path,
            crumbs=urls.crumbs(resolved.rev, resolved.path), here=resolved.path.rsplit(b"/", 1)[-1],
            **self._selector(reader.refs(), resolved.rev))

    def blob(self, reader: Reader, urls: RepoUrls, resolved: Resolved) -> str:
        """A file at a revision: highlighted with line anchors, plain if large, a note if binary or huge."""
        file = reader.file(resolved.commit, resolved.path)
        data = file.data
        shown: list[Markup] | None = None
        plain: str | None = None
        binary = is_binary(data)
        if file.kind == "file" and not binary and len(data) <= MAX_SHOWN_BYTES:
            source = data.decode("utf-8", "replace")
            if highlight.highlightable(source):
                # Escaped by Pygments (token text) or html.escape: markup in the file stays text.
                shown = [Markup(line) for line in highlight.lines(text(resolved.path), source)]  # noqa: S704
            else:
                plain = source
        return self._render(
            "repo_blob.html", urls=urls, resolved=resolved, file=file, size_=len(data), binary=binary,
            lines=shown, plain=plain, line_count=data.count(b"\n") + (0 if data.endswith(b"\n") else 1),
            crumbs=urls.crumbs(resolved.rev, resolved.path), here=resolved.path.rsplit(b"/", 1)[-1],
            **self._selector(reader.refs(), resolved.rev))

    def commits(self, reader: Reader, urls: RepoUrls, resolved: Resolved, page: int) -> str:
        """One page of history from a revision, newest first."""
        found = reader.history(resolved.commit, (page - 1) * PAGE, PAGE + 1)
        return self._render(
            "repo_commits.html", urls=urls, resolved=resolved, commits=found[:PAGE], page=page,
            more=len(found) > PAGE, **self._selector(reader.refs(), resolved.rev))

    def commit(self, reader: Reader, urls: RepoUrls, commit_id: str) -> str:
        """A commit, its message and its diff against its first parent."""
        return self._render("repo_commit.html", urls=urls, commit=reader.commit(commit_id),
                            diff=reader.diff(commit_id))

    def refs(self, reader: Reader, urls: RepoUrls, kind: str, page: int) -> str:
        """One page of the branches, tags or bookmarks, each with its commit."""
        refs = reader.refs()
        every: tuple[Ref, ...] = {"branches": refs.branches, "tags": refs.tags, "bookmarks": refs.bookmarks}[kind]
        listed = every[(page - 1) * REFS_PAGE:page * REFS_PAGE]
        commits = {ref.target: reader.commit(ref.target) for ref in listed}
        return self._render("repo_refs.html", urls=urls, kind=kind, listed=listed, commits=commits,
                            default=refs.default, page=page, more=len(every) > page * REFS_PAGE, total=len(every))
