"""The git child of one request (:mod:`hostd.git.process`), driven with ``cat`` and ``sh`` in git's place."""

from __future__ import annotations

import io

import pytest
from webob import exc

from hostd.git.body import BoundedBody, RequestTooLarge
from hostd.git.process import GitRun, environment, read_head, tail


def _read_all(run: GitRun) -> bytes:
    parts = []
    while data := run.read():
        parts.append(data)
    return b"".join(parts)


def test_the_body_is_fed_whole_and_the_answer_streamed_back() -> None:
    rest = BoundedBody(io.BytesIO(b"x" * 300_000), limit=1 << 20, reason="too large")
    run = GitRun.start(["cat"], environment())
    try:
        run.feed(b"head:", rest)
        assert _read_all(run) == b"head:" + b"x" * 300_000
        assert run.wait() == 0
    finally:
        run.finish()
    assert run.process.stdout is not None and run.process.stdout.closed


def test_a_body_refused_while_fed_stops_git_and_is_raised() -> None:
    rest = BoundedBody(io.BytesIO(b"y" * 200_000), limit=100_000, reason="too large")
    run = GitRun.start(["sh", "-c", "cat >/dev/null"], environment())
    try:
        run.feed(b"", rest)
        assert run.read() == b""
        with pytest.raises(RequestTooLarge):
            run.raise_if_request_failed()
    finally:
        run.finish()


class _Gone(io.RawIOBase):
    def readinto(self, buffer: object) -> int:
        raise ConnectionResetError("client went away")


def test_a_client_gone_mid_body_is_a_400() -> None:
    rest = BoundedBody(_Gone(), limit=1 << 20, reason="too large")
    run = GitRun.start(["sh", "-c", "cat >/dev/null"], environment())
    try:
        run.feed(b"", rest)
        assert run.read() == b""
        with pytest.raises(exc.HTTPBadRequest):
            run.raise_if_request_failed()
    finally:
        run.finish()


def test_finish_stops_a_git_still_running() -> None:
    run = GitRun.start(["sleep", "60"], environment())
    run.feed(b"", None)
    run.finish()
    assert run.process.returncode is not None and run.process.returncode < 0


def test_stderr_is_kept_for_the_log() -> None:
    run = GitRun.start(["sh", "-c", "echo fatal: no such thing >&2; exit 3"], environment())
    try:
        run.feed(b"", None)
        assert run.read() == b""
        assert run.wait() == 3
        assert run.stderr_tail() == "fatal: no such thing"
    finally:
        run.finish()


def test_environment_and_helpers() -> None:
    assert environment()["GIT_CONFIG_GLOBAL"] == "/dev/null" and "GIT_PROTOCOL" not in environment()
    assert environment("version=2")["GIT_PROTOCOL"] == "version=2"
    assert set(environment()) == {"PATH", "GIT_CONFIG_GLOBAL", "LANG"}  # nothing else of the worker's
    assert read_head(BoundedBody(io.BytesIO(b"abc"), limit=10, reason="r"), 2) == b"ab"
    assert read_head(BoundedBody(io.BytesIO(b"abc"), limit=10, reason="r"), 10) == b"abc"
    assert tail(b"x" * 5000 + b"end\n").endswith("end") and len(tail(b"x" * 5000)) == 4096
