"""Read-only mode under WebTest's lint: writes refused with 503 while the flag is on, reads untouched."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
import webtest

from hostd.guard.readonly import MESSAGE, ReadOnlyGate
from hostd.store.flags import READ_ONLY, Flag
from singlemalt import Action, Target

WRITE = Target("alice/demo.git", Action.WRITE, "git-receive-pack")
READ = Target("alice/demo.git", Action.READ, "git-upload-pack")


class DummyFlags:
    """A flag reader with a switch, counting how often it was asked."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.asked: list[str] = []

    def enabled(self, flag: Flag) -> bool:
        self.asked.append(flag.name)
        return self.on


class DummyApp:
    """Stands for the git or hg app; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.calls += 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"served\n"]


def _app(flags: DummyFlags, **options: Any) -> tuple[webtest.TestApp, DummyApp]:
    inner = DummyApp()
    return webtest.TestApp(ReadOnlyGate(inner, flags=flags, **options), lint=True), inner


def test_writes_pass_while_off() -> None:
    flags = DummyFlags(on=False)
    app, inner = _app(flags)
    response = app.post("/alice/demo.git/git-receive-pack", b"0000", extra_environ={"singlemalt.target": WRITE})
    assert response.body == b"served\n"
    assert inner.calls == 1
    assert flags.asked == ["read_only"]


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", WRITE),
        ("POST", WRITE),
        ("POST", Target("alice/hg", Action.WRITE, "hg:unbundle")),
        ("POST", None),
    ],
    ids=["git-receive-pack-advertisement", "git-receive-pack", "hg-unbundle", "unclassified-is-a-write"],
)
def test_writes_refused_while_on(method: str, target: Target | None) -> None:
    app, inner = _app(DummyFlags(on=True), retry_after=120)
    environ = {} if target is None else {"singlemalt.target": target}
    if method == "GET":
        response = app.get("/x/info/refs?service=git-receive-pack", extra_environ=environ, status=503)
    else:
        response = app.post("/x", b"bundle bytes", extra_environ=environ, status=503)
    # git prints the text/plain body; hg prints the status line's reason phrase.
    assert response.status == f"503 {MESSAGE}"
    assert response.content_type == "text/plain"
    assert response.text == MESSAGE + "\n"
    assert response.headers["Retry-After"] == "120"
    assert "Connection" not in response.headers  # the small body was drained
    assert inner.calls == 0


def test_reads_pass_untouched_and_do_not_even_ask() -> None:
    flags = DummyFlags(on=True)
    app, inner = _app(flags)
    response = app.get("/alice/demo.git/info/refs?service=git-upload-pack", extra_environ={"singlemalt.target": READ})
    assert response.body == b"served\n"
    assert inner.calls == 1
    assert flags.asked == []


def test_large_refused_push_closes_the_connection() -> None:
    app, _ = _app(DummyFlags(on=True), drain_limit=1024)
    response = app.post("/x", b"x" * 4096, extra_environ={"singlemalt.target": WRITE}, status=503)
    assert response.headers["Connection"] == "close"


@pytest.mark.parametrize(
    "options",
    [{"message": "x"}, {"message": "line\r\nSet-Cookie: a=b"}, {"message": " padded "},
     {"message": "caf\u00e9 closed"}, {"retry_after": 0}],
    ids=["too-short", "header-injection", "padded", "non-ascii", "no-retry-after"],
)
def test_bad_options_fail_fast(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ReadOnlyGate(DummyApp(), flags=DummyFlags(on=True), **options)


def test_other_flag_and_message() -> None:
    other = Flag("frozen", False, "test")
    flags = DummyFlags(on=True)
    app, _ = _app(flags, flag=other, message="frozen for the migration")
    response = app.post("/x", b"", extra_environ={"singlemalt.target": WRITE}, status=503)
    assert response.status == "503 frozen for the migration"
    assert flags.asked == ["frozen"]


def test_default_flag_is_read_only() -> None:
    assert ReadOnlyGate(DummyApp(), flags=DummyFlags(on=False)).flag is READ_ONLY
