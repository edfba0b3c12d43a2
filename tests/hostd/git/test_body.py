"""Request bodies of the git pool: codings, compression bombs, and bodies streamed to git.

The app-level tests run with the production request limit (1 GiB): the
bounds that matter here are the ones on inflation, not the push limit.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest
import webtest

from hostd.git.app import GitApp
from hostd.git.body import RATIO, RATIO_FREE, Inflated, MalformedBody, RequestTooLarge, content_coding
from hostd.names import RepoName
from tests.hostd.conftest import Site, run_git
from tests.hostd.git.test_upload import Counting

REQUEST = "application/x-git-upload-pack-request"
PRODUCTION_LIMIT = 1 << 30


def _pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


def _haves(count: int) -> bytes:
    """Distinct have lines, as a real negotiation sends (hex: gzip gets about 2:1)."""
    return b"".join(_pkt(b"have %s\n" % os.urandom(20).hex().encode()) for _ in range(count))


def _bomb(inflated: int) -> bytes:
    """A fetch request whose haves all name one object: gzip gets about 1000:1."""
    return _pkt(b"want " + b"a" * 40 + b"\n") + b"0000" + _pkt(b"have " + b"1" * 40 + b"\n") * (inflated // 50)


class Reader(io.BytesIO):
    """A request body that remembers how far the server read it."""

    def __init__(self, data: bytes, on_read: object = None) -> None:
        super().__init__(data)
        self.on_read = on_read

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if callable(self.on_read):
            self.on_read(self)
        return data


# --- pure parts -------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    (None, ""),
    ("", ""),
    ("identity", ""),
    ("gzip", "gzip"),
    ("GZip", "gzip"),
    ("x-gzip", "gzip"),
    (" gzip ", "gzip"),
    ("deflate", None),
    ("br", None),
    ("zstd", None),
    ("compress", None),
    ("gzip, gzip", None),
    ("gzip, deflate", None),
    ("identity, gzip", None),
    ("gzip;q=1", None),
], ids=lambda value: repr(value))
def test_content_coding(header: str | None, expected: str | None) -> None:
    environ = {} if header is None else {"HTTP_CONTENT_ENCODING": header}
    assert content_coding(environ) == expected


def _inflate_all(data: bytes) -> bytes:
    body = Inflated(io.BytesIO(data))
    return b"".join(iter(lambda: body.read(1 << 16), b""))


def test_an_ordinary_negotiation_inflates_whole() -> None:
    plain = _pkt(b"want " + b"a" * 40 + b"\n") + b"0000" + _haves(100_000) + _pkt(b"done\n")
    assert len(plain) > 4 * RATIO_FREE
    assert _inflate_all(gzip.compress(plain)) == plain


def test_a_bomb_is_refused_once_past_the_free_allowance() -> None:
    wire = Reader(gzip.compress(_bomb(256 << 20)))
    body = Inflated(wire)
    out = 0
    with pytest.raises(RequestTooLarge, match=f"inflates more than {RATIO} times"):
        while data := body.read(1 << 16):
            out += len(data)
    assert out <= RATIO_FREE
    assert wire.tell() < len(wire.getvalue()) // 2, "the rest of the bomb was read anyway"


def test_small_bodies_may_compress_well() -> None:
    """git gzips every request over 1 KiB that fits in http.postBuffer (1 MiB)."""
    plain = _bomb(RATIO_FREE - 100)
    assert _inflate_all(gzip.compress(plain)) == plain


@pytest.mark.parametrize(("data", "reason"), [
    (b"not gzip at all", "not valid gzip"),
    (gzip.compress(b"0000" * 1000)[:-20], "cut short"),
    (b"", "cut short"),
    (gzip.compress(b"0000") + b"trailing", "after the end"),
    (gzip.compress(b"0000") + gzip.compress(b"0000"), "after the end"),
], ids=["garbage", "truncated", "empty", "trailing-garbage", "two-members"])
def test_malformed_gzip(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedBody, match=reason):
        _inflate_all(data)


# --- through the app ----------------------------------------------------------------


@pytest.fixture
def served(site: Site) -> tuple[webtest.TestApp, Counting]:
    native = Counting()
    app = GitApp(site.storage, max_request_bytes=PRODUCTION_LIMIT, upload_pack=native)
    return webtest.TestApp(site.decided(app, "git")), native


def _post(app: webtest.TestApp, wire: io.BytesIO, *, status: int | str = "*", **headers: str) -> webtest.TestResponse:
    request = webtest.TestRequest.blank("/alice/demo.git/git-upload-pack", method="POST", content_type=REQUEST,
                                        headers=headers)
    request.environ.pop("CONTENT_LENGTH", None)  # chunked, as git sends a large request
    request.environ["wsgi.input"] = wire
    return app.do_request(request, status=status)


def test_a_compression_bomb_is_refused_before_git_starts(repo: tuple[RepoName, Path],
                                                         served: tuple[webtest.TestApp, Counting]) -> None:
    """256 KiB of gzip that inflates to 256 MiB: it was inflated whole, spooled
    to disk, and handed to git."""
    app, native = served
    wire = Reader(gzip.compress(_bomb(256 << 20)))
    response = _post(app, wire, status=413, **{"Content-Encoding": "gzip"})
    assert response.content_type == "text/plain"
    assert f"inflates more than {RATIO} times".encode() in response.body
    assert native.runs == 0, "git was started"
    assert wire.tell() < len(wire.getvalue()) // 2


def test_a_compressed_request_is_bounded_in_all(repo: tuple[RepoName, Path],
                                                served: tuple[webtest.TestApp, Counting]) -> None:
    """Within the ratio but inflating past 32 MiB: refused, and git stopped before it answered."""
    _, git_dir = repo
    app, _ = served
    main = run_git(git_dir, "rev-parse", "main").encode()
    plain = _pkt(b"want " + main + b"\n") + b"0000" + _haves(720_000) + _pkt(b"done\n")
    response = _post(app, io.BytesIO(gzip.compress(plain, 1)), status=413, **{"Content-Encoding": "gzip"})
    assert response.body == b"gzip-compressed request inflates past the server's limit of 32 MiB.\n"


@pytest.mark.parametrize("coding", ["deflate", "br", "zstd", "gzip, gzip", "compress"])
def test_other_content_codings_are_refused(repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting],
                                           coding: str) -> None:
    app, native = served
    response = _post(app, io.BytesIO(b"\x28\xb5\x2f\xfd garbage"), status=415, **{"Content-Encoding": coding})
    assert b"Only gzip Content-Encoding is supported" in response.body
    assert native.runs == 0


@pytest.mark.parametrize("wire", [b"not gzip", gzip.compress(b"0000" * 1000)[:-20]], ids=["garbage", "truncated"])
def test_corrupt_gzip_is_a_400(repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting],
                               wire: bytes) -> None:
    app, native = served
    response = _post(app, io.BytesIO(wire), status=400, **{"Content-Encoding": "gzip"})
    assert response.content_type == "text/plain"
    assert b"gzip" in response.body
    assert native.runs == 0


def test_a_large_compressed_negotiation_is_served(repo: tuple[RepoName, Path],
                                                  served: tuple[webtest.TestApp, Counting]) -> None:
    """A client that raised http.postBuffer gzips a negotiation of 4 MiB; it compresses about 2:1."""
    _, git_dir = repo
    app, _ = served
    main = run_git(git_dir, "rev-parse", "main").encode()
    plain = _pkt(b"want " + main + b" ofs-delta\n") + b"0000" + _haves(80_000) + _pkt(b"done\n")
    response = _post(app, io.BytesIO(gzip.compress(plain)), status=200, **{"Content-Encoding": "gzip"})
    assert b"PACK" in response.body


def _git_children() -> list[int]:
    """Our child processes that are git (upload-pack)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if int(rest[1]) == os.getpid() and name.startswith("git"):
            children.append(int(entry.name))
    return children


def test_a_large_negotiation_goes_to_git_as_it_arrives(repo: tuple[RepoName, Path],
                                                       served: tuple[webtest.TestApp, Counting]) -> None:
    """It was stored whole (in a temporary file past 1 MiB) before git started."""
    _, git_dir = repo
    app, _ = served
    main = run_git(git_dir, "rev-parse", "main").encode()
    plain = _pkt(b"want " + main + b" ofs-delta\n") + b"0000" + _haves(100_000) + _pkt(b"done\n")
    seen: list[list[int]] = []

    def look(wire: Reader) -> None:
        if not seen and wire.tell() > 3 * len(plain) // 4:
            seen.append(_git_children())

    response = _post(app, Reader(plain, look), status=200)
    assert b"PACK" in response.body
    assert seen and seen[0], "git had not started when three quarters of the request had arrived"
