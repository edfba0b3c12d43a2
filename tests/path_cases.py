"""One table of request paths and whether they are in canonical form.

Both places that judge a path read this table: HAProxy's rules in
``haproxy/haproxy.cfg`` (``tests/haproxy/test_paths.py`` sends every case over
HTTP/1.1 and HTTP/2) and singlemalt's :func:`~singlemalt.target.repository_path`
(``tests/singlemalt/test_classify_git.py`` and ``test_classify_hg.py``, with
the case as gunicorn's ``RAW_URI``). A path refused by one and let through by
the other, or refused for another reason, fails a test.

``reason`` is the text both answer 400 with, None for a path that is fine.
When a path breaks several rules, both name the first in this order:
malformed encoding, encoded control character, encoded slash or backslash,
encoded unreserved character, dot or empty segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MALFORMED: Final = "malformed percent-encoding in path"
CONTROL: Final = "encoded control character in path"
SEPARATOR: Final = "encoded slash or backslash in path"
UNRESERVED: Final = "percent-encoded letter, digit or -._~ in path"
SEGMENT: Final = "dot segment or empty segment in path"


@dataclass(frozen=True, slots=True)
class PathCase:
    """A raw request path (as sent, before any decoding) and its verdict."""

    name: str
    path: str
    reason: str | None


PATH_CASES: Final = (
    # Fine: what git, hg and browsers send.
    PathCase("plain-git", "/alice/proj.git/info/refs", None),
    PathCase("plain-hg", "/alice/proj", None),
    PathCase("dots-inside-a-name", "/alice/my..repo.git/HEAD", None),
    PathCase("dot-file", "/alice/proj/file/tip/.hgignore", None),
    PathCase("three-dots", "/alice/proj/file/tip/...", None),
    PathCase("encoded-space", "/alice/proj/file/tip/my%20notes.txt", None),
    PathCase("encoded-percent", "/alice/proj/file/tip/100%25.txt", None),
    PathCase("encoded-utf8", "/alice/proj/file/tip/caf%C3%A9.txt", None),
    PathCase("encoded-reserved", "/alice/proj/file/tip/a%3Bb%3Fc%23d", None),
    PathCase("encoded-question-mark-lowercase-hex", "/alice/proj/file/tip/a%3fb", None),
    # Malformed percent-encoding: servers disagree on what it means.
    PathCase("percent-not-hex", "/alice/proj%zz.git/HEAD", MALFORMED),
    PathCase("percent-truncated", "/alice/proj.git/HEAD%2", MALFORMED),
    PathCase("percent-alone", "/alice/%/HEAD", MALFORMED),
    # Encoded control characters.
    PathCase("encoded-nul", "/alice/proj%00.git/HEAD", CONTROL),
    PathCase("encoded-newline", "/alice/proj%0A.git/HEAD", CONTROL),
    PathCase("encoded-cr-lowercase", "/alice/proj%0d.git/HEAD", CONTROL),
    PathCase("encoded-del", "/alice/proj%7F.git/HEAD", CONTROL),
    # Encoded separators: one segment to the router, two to the backend.
    PathCase("encoded-slash", "/alice%2Fproj.git/info/refs", SEPARATOR),
    PathCase("encoded-slash-lowercase", "/alice%2fproj/HEAD", SEPARATOR),
    PathCase("encoded-backslash", "/alice%5Cproj.git/HEAD", SEPARATOR),
    PathCase("encoded-backslash-lowercase", "/alice%5cproj.git/HEAD", SEPARATOR),
    PathCase("encoded-slash-in-dot-dot", "/alice/..%2F..%2Fbob.git/HEAD", SEPARATOR),
    # Encoded unreserved characters: a second spelling of a plain path.
    PathCase("encoded-dot-dot", "/alice/%2E%2E/bob.git/HEAD", UNRESERVED),
    PathCase("encoded-dot-dot-lowercase", "/alice/%2e%2e/bob.git/HEAD", UNRESERVED),
    PathCase("half-encoded-dot-dot", "/alice/.%2e/bob.git/HEAD", UNRESERVED),
    PathCase("encoded-dot", "/alice/%2E/proj.git/HEAD", UNRESERVED),
    PathCase("encoded-dot-in-name", "/alice/proj%2Egit/HEAD", UNRESERVED),
    PathCase("encoded-hyphen-in-endpoint", "/alice/proj.git/git-upload%2Dpack", UNRESERVED),
    PathCase("encoded-letter", "/alice/pro%6A.git/info/refs", UNRESERVED),
    PathCase("encoded-capital-letter", "/%41lice/proj.git/HEAD", UNRESERVED),
    PathCase("encoded-digit", "/alice/proj%31.git/HEAD", UNRESERVED),
    PathCase("encoded-underscore", "/alice/my%5Fproj/HEAD", UNRESERVED),
    PathCase("encoded-tilde", "/%7Ealice/proj/HEAD", UNRESERVED),
    # Dot and empty segments, unencoded.
    PathCase("dot-dot", "/alice/../bob.git/HEAD", SEGMENT),
    PathCase("dot", "/alice/./proj.git/HEAD", SEGMENT),
    PathCase("trailing-dot-dot", "/alice/proj.git/..", SEGMENT),
    PathCase("trailing-dot", "/alice/proj/.", SEGMENT),
    PathCase("leading-dot-dot", "/../alice/proj", SEGMENT),
    PathCase("double-slash", "/alice//proj.git/HEAD", SEGMENT),
    PathCase("leading-double-slash", "//alice/proj.git/HEAD", SEGMENT),
    PathCase("trailing-double-slash", "/alice/proj//", SEGMENT),
)
