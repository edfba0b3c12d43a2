"""``hostd flag set|list``, called in-process with a temporary data directory and a real memcached."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.cli.main import main
from hostd.store.database import Database
from hostd.store.flags import READ_ONLY, FlagStore, SharedFlags
from singlemalt import SafeMemcache
from tests.ports import free_ports
from tests.singlemalt.conftest import Memcached, start_memcached


@pytest.fixture
def memcached() -> Iterator[Memcached]:
    server = start_memcached()
    yield server
    server.kill()


def run(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--data", str(data)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_set_writes_the_database_and_memcached(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data: Path, memcached: Memcached
) -> None:
    monkeypatch.setenv("HOSTD_MEMCACHED_PORT", str(memcached.port))
    code, out, _ = run(capsys, data, "flag", "list")
    assert (code, out) == (0, f"read_only\toff\tdefault\t{READ_ONLY.description}\n")

    code, out, _ = run(capsys, data, "flag", "set", "read_only", "on")
    assert (code, out) == (0, "flag read_only is on; every worker sees it within 2 s\n")
    assert FlagStore(Database(data / "hostd.db")).get("read_only") is True
    shared = SharedFlags(SafeMemcache(memcached.address), (data / "secret").read_bytes())
    assert shared.read(READ_ONLY) is True
    assert memcached.keys() == [shared.key(READ_ONLY)]  # sealed under the server secret
    assert run(capsys, data, "flag", "list")[1].startswith("read_only\ton\tset\t")

    assert run(capsys, data, "flag", "set", "read_only", "off")[0] == 0
    assert shared.read(READ_ONLY) is False
    assert run(capsys, data, "flag", "list")[1].startswith("read_only\toff\tset\t")


def test_set_without_memcached_still_writes_the_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data: Path
) -> None:
    [port] = free_ports(1)
    monkeypatch.setenv("HOSTD_MEMCACHED_PORT", str(port))
    code, out, _ = run(capsys, data, "flag", "set", "read_only", "on")
    assert code == 0
    assert out == (f"flag read_only is on in the database; memcached at 127.0.0.1:{port} was not updated, "
                   "so workers see it within 12 s\n")
    assert FlagStore(Database(data / "hostd.db")).get("read_only") is True


@pytest.mark.parametrize(
    "args",
    [("flag", "set", "read_olny", "on"), ("flag", "set", "read_only", "yes"), ("flag", "set", "read_only"),
     ("flag",)],
    ids=["unknown-flag", "bad-value", "no-value", "no-action"],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], data: Path, args: tuple[str, ...]) -> None:
    code, _, err = run(capsys, data, *args)
    assert code == 2
    assert err.splitlines()[0].startswith("usage: hostd flag") and err.splitlines()[-1].startswith("hostd: ")
    if args[2:3] == ("read_olny",):
        assert "invalid choice: 'read_olny'" in err
