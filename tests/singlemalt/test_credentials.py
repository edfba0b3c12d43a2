"""parse_authorization: a table of headers, and a property that it never raises."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from singlemalt.credentials import (
    MAX_HEADER_LENGTH,
    BasicCredentials,
    BearerCredentials,
    Credentials,
    parse_authorization,
)


def basic(raw: bytes, scheme: str = "Basic") -> str:
    return f"{scheme} {base64.b64encode(raw).decode('ascii')}"


CASES = [
    pytest.param(basic(b"alice:s3cret"), BasicCredentials("alice", "s3cret"), id="basic"),
    pytest.param(basic(b"alice:s3cret", "basic"), BasicCredentials("alice", "s3cret"),
                 id="scheme-lowercase"),
    pytest.param(basic(b"alice:s3cret", "BASIC"), BasicCredentials("alice", "s3cret"),
                 id="scheme-uppercase"),
    pytest.param("  " + basic(b"alice:pw") + "  ", BasicCredentials("alice", "pw"),
                 id="surrounding-space"),
    pytest.param(basic(b"alice:"), BasicCredentials("alice", ""), id="empty-password"),
    pytest.param(basic(b"alice:a:b:c"), BasicCredentials("alice", "a:b:c"),
                 id="colon-in-password"),
    pytest.param(basic("j\u00f6rg:p\u00e4ss".encode()), BasicCredentials("j\u00f6rg", "p\u00e4ss"),
                 id="utf8"),
    pytest.param(basic(b"alice:pw\x00x"), BasicCredentials("alice", "pw\x00x"),
                 id="nul-in-password"),
    pytest.param("Bearer smt_abcdefghijkl_" + "x" * 43,
                 BearerCredentials("smt_abcdefghijkl_" + "x" * 43), id="bearer"),
    pytest.param("bearer abc.def-ghi~jkl+mno/pq==", BearerCredentials("abc.def-ghi~jkl+mno/pq=="),
                 id="bearer-token68"),
    pytest.param(None, None, id="absent"),
    pytest.param("", None, id="empty"),
    pytest.param("Basic", None, id="scheme-only"),
    pytest.param("Basic !!!!", None, id="bad-base64"),
    pytest.param("Basic YWxpY2U6cHc", None, id="missing-padding"),
    pytest.param("Basic \u00e9\u00e9\u00e9\u00e9", None, id="non-ascii-base64"),
    pytest.param(basic(b"alicepw"), None, id="no-colon"),
    pytest.param(basic(b":pw"), None, id="empty-username"),
    pytest.param(basic(b"\xff\xfe:pw"), None, id="non-utf8"),
    pytest.param(basic(b"al\nice:pw"), None, id="control-in-username"),
    pytest.param(basic(b"al\x7fice:pw"), None, id="del-in-username"),
    pytest.param("Bearer a b", None, id="bearer-with-space"),
    pytest.param("Bearer \u00e9", None, id="bearer-not-token68"),
    pytest.param("Digest username=alice", None, id="unknown-scheme"),
    pytest.param("Negotiate YWxpY2U6cHc=", None, id="negotiate"),
    pytest.param("Basic " + "A" * MAX_HEADER_LENGTH, None, id="over-8k"),
]


@pytest.mark.parametrize(("header", "expected"), CASES)
def test_parse_authorization(header: str | None, expected: Credentials | None) -> None:
    assert parse_authorization(header) == expected


def test_header_at_the_limit_is_parsed() -> None:
    password = "p" * (MAX_HEADER_LENGTH * 3 // 4 - 20)
    header = basic(f"alice:{password}".encode())
    assert len(header) <= MAX_HEADER_LENGTH
    assert parse_authorization(header) == BasicCredentials("alice", password)


def test_non_string_header_is_none() -> None:
    assert parse_authorization(b"Basic YWxpY2U6cHc=") is None  # type: ignore[arg-type]


def test_secrets_are_not_in_repr() -> None:
    assert "s3cret" not in repr(BasicCredentials("alice", "s3cret"))
    assert "tok" not in repr(BearerCredentials("tok"))


@settings(database=None, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_on_text(header: str) -> None:
    result = parse_authorization(header)
    assert result is None or isinstance(result, BasicCredentials | BearerCredentials)


@settings(database=None, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["Basic", "basic", "Bearer", "X"]))
def test_never_raises_on_encoded_garbage(raw: bytes, scheme: str) -> None:
    result = parse_authorization(basic(raw, scheme))
    if isinstance(result, BasicCredentials):
        assert result.username
        assert f"{result.username}:{result.password}".encode() == raw
