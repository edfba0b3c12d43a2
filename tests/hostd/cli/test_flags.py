"""``hostd flag set|list``, called in-process with a temporary data directory and a real memcached."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.store.database import Database
from hostd.store.flags import READ_ONLY, FlagStore, SharedFlags
from singlemalt import SafeMemcache
from tests.hostd.cli.conftest import DATABASES, Hostd
from tests.ports import free_ports
from tests.singlemalt.conftest import Memcached, start_memcached


@pytest.fixture
def memcached() -> Iterator[Memcached]:
    server = start_memcached()
    yield server
    server.kill()


@pytest.fixture
def flags(data: Path) -> Iterator[FlagStore]:
    """The flags table of the test's installation."""
    db = Database(DATABASES[data.resolve()])
    yield FlagStore(db)
    db.close()


def test_set_writes_the_database_and_memcached(
    hostd: Hostd, monkeypatch: pytest.MonkeyPatch, data: Path, memcached: Memcached, flags: FlagStore
) -> None:
    monkeypatch.setenv("HOSTD_MEMCACHED_PORT", str(memcached.port))
    code, out, _ = hostd("flag", "list")
    assert (code, out) == (0, f"read_only\toff\tdefault\t{READ_ONLY.description}\n")

    code, out, _ = hostd("flag", "set", "read_only", "on")
    assert (code, out) == (0, "flag read_only is on; every worker sees it within 2 s\n")
    assert flags.get("read_only") is True
    shared = SharedFlags(SafeMemcache(memcached.address), (data / "secret").read_bytes())
    assert shared.read(READ_ONLY) is True
    assert memcached.keys() == [shared.key(READ_ONLY)]  # sealed under the server secret
    assert hostd("flag", "list")[1].startswith("read_only\ton\tset\t")

    assert hostd("flag", "set", "read_only", "off")[0] == 0
    assert shared.read(READ_ONLY) is False
    assert hostd("flag", "list")[1].startswith("read_only\toff\tset\t")


def test_set_without_memcached_still_writes_the_database(
    hostd: Hostd, monkeypatch: pytest.MonkeyPatch, flags: FlagStore
) -> None:
    [port] = free_ports(1)
    monkeypatch.setenv("HOSTD_MEMCACHED_PORT", str(port))
    code, out, _ = hostd("flag", "set", "read_only", "on")
    assert code == 0
    assert out == (f"flag read_only is on in the database; memcached at 127.0.0.1:{port} was not updated, "
                   "so workers see it within 12 s\n")
    assert flags.get("read_only") is True


@pytest.mark.parametrize(
    "args",
    [("flag", "set", "read_olny", "on"), ("flag", "set", "read_only", "yes"), ("flag", "set", "read_only"),
     ("flag",)],
    ids=["unknown-flag", "bad-value", "no-value", "no-action"],
)
def test_usage_errors(hostd: Hostd, args: tuple[str, ...]) -> None:
    code, _, err = hostd(*args)
    assert code == 2
    assert err.splitlines()[0].startswith("usage: hostd flag") and err.splitlines()[-1].startswith("hostd: ")
    if args[2:3] == ("read_olny",):
        assert "invalid choice: 'read_olny'" in err
