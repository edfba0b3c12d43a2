"""The pure parsing of upload-pack requests (:mod:`hostd.git.wire`), as tables."""

from __future__ import annotations

import pytest

from hostd.git.wire import FULL_PACK, LS_REFS, advertised_ids, cache_kind, git_protocol, pkt_lines, wants


def _pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line



@pytest.mark.parametrize(("data", "lines"), [
    (b"", []),
    (b"0000", [None]),
    (b"0009done\n0000", [b"done\n", None]),
    (b"00010002", [None, None]),
])
def test_pkt_lines(data: bytes, lines: list[bytes | None]) -> None:
    assert list(pkt_lines(data)) == lines


@pytest.mark.parametrize("data", [b"zzzz", b"0010short", b"00", b"0x10abcdefghijkl", b" 00a123456"])
def test_malformed_pkt_lines(data: bytes) -> None:
    with pytest.raises(ValueError):
        list(pkt_lines(data))


WANT = _pkt(b"want " + b"a" * 40 + b" ofs-delta\n")
HAVE = _pkt(b"have " + b"b" * 40 + b"\n")


@pytest.mark.parametrize(("body", "expected"), [
    (WANT + b"0000" + _pkt(b"done\n"), FULL_PACK),  # v0 full clone
    (WANT + b"0000" + HAVE + _pkt(b"done\n"), None),  # v0 incremental fetch
    (_pkt(b"command=fetch\n") + b"0001" + WANT + _pkt(b"done\n") + b"0000", FULL_PACK),  # v2 full clone
    (_pkt(b"command=fetch\n") + b"0001" + WANT + HAVE + b"0000", None),
    (_pkt(b"command=ls-refs\n") + b"0001" + _pkt(b"peel\n") + b"0000", LS_REFS),
    (_pkt(b"command=object-info\n") + b"0001" + b"0000", None),
    (b"0000", None),  # nothing wanted
    (b"", None),
    (b"garbage", None),
])
def test_which_answers_are_cached_and_where(body: bytes, expected: str | None) -> None:
    assert cache_kind(body) == expected


@pytest.mark.parametrize(("header", "expected"), [
    ("version=2", "version=2"),
    ("version=2:object-format=sha1", "version=2:object-format=sha1"),
    ("", ""),
    ("version=2\nX=1", ""),
    ("version 2; rm -rf", ""),
    ("v" * 300, ""),
])
def test_git_protocol_header(header: str, expected: str) -> None:
    assert git_protocol({"HTTP_GIT_PROTOCOL": header}) == expected


A, B = b"a" * 40, b"b" * 64


@pytest.mark.parametrize(("body", "expected"), [
    (WANT + b"0000" + _pkt(b"done\n"), {A}),
    (_pkt(b"command=fetch\n") + b"0001" + _pkt(b"want %s\n" % B) + _pkt(b"want %s\n" % A) + b"0000", {A, B}),
    (_pkt(b"command=fetch\n") + b"0001" + _pkt(b"filter blob:none\n") + HAVE + b"0000", set()),
    (b"garbage", set()),
], ids=["v0", "v2", "none", "malformed"])
def test_wants(body: bytes, expected: set[bytes]) -> None:
    assert wants(body) == expected


def test_advertised_ids_are_every_tip_and_peeled_tag() -> None:
    advertisement = (_pkt(A + b" HEAD\0multi_ack filter\n") + _pkt(B + b" refs/tags/v1\n")
                     + _pkt(b"c" * 40 + b" refs/tags/v1^{}\n") + b"0000")
    assert advertised_ids(advertisement) == {A, B, b"c" * 40}
    assert advertised_ids(b"0001junk") == frozenset()
