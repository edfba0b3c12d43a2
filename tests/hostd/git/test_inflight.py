"""The registry of writes in flight, with real processes that live and die.

A writer here is a real Python process that registers a write, creates a
temporary file the way dulwich (or the pack cache) does, and waits; one that
"dies" is sent SIGKILL, so none of its own cleanup runs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.git.cache import PACK_CACHE_DIR
from hostd.git.inflight import InFlight, sweep

_WRITER = """
import sys, tempfile
from pathlib import Path
from hostd.git.inflight import InFlight
registry, git_dir, where, prefix = InFlight(Path(sys.argv[1])), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
ticket = registry.begin(git_dir)
assert ticket is not None
fd, path = tempfile.mkstemp(dir=git_dir / where, prefix=prefix)
print(path, flush=True)
sys.stdin.read()  # until the test closes it
"""


class Writer:
    """A process writing a temporary file into a repository, registered in flight."""

    def __init__(self, registry: Path, git_dir: Path, *, pack_cache: bool = False) -> None:
        where, prefix = (PACK_CACHE_DIR, ".tmp-") if pack_cache else ("objects", "tmp_pack_")
        self.process = subprocess.Popen([sys.executable, "-c", _WRITER, str(registry), str(git_dir), where, prefix],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.temp = Path(self.process.stdout.readline().strip())
        assert self.temp.is_file()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    started: list[Writer] = []
    yield started
    for writer in started:
        writer.stop()


def _repository(root: Path, name: str) -> Path:
    git_dir = root / name
    (git_dir / "objects").mkdir(parents=True)
    (git_dir / PACK_CACHE_DIR).mkdir()
    return git_dir


def test_a_dead_writers_file_goes_and_a_live_ones_stays(tmp_path: Path, writers: list[Writer]) -> None:
    registry = tmp_path / "run" / "inflight"
    one, two = _repository(tmp_path, "one.git"), _repository(tmp_path, "two.git")
    live = Writer(registry, one)
    dead = Writer(registry, two)
    cache = Writer(registry, two, pack_cache=True)
    writers.extend([live, dead, cache])
    dead.kill()
    cache.kill()
    assert sorted(sweep(registry)) == sorted([dead.temp, cache.temp])
    assert live.temp.is_file() and not dead.temp.exists() and not cache.temp.exists()
    assert len(list(registry.iterdir())) == 1, "the dead writers' entries were not removed"


def test_a_repository_with_a_live_writer_is_left_until_the_last_one_ends(tmp_path: Path,
                                                                          writers: list[Writer]) -> None:
    """The live writer's file may be closed and about to be renamed: nothing of that repository is touched."""
    registry = tmp_path / "run" / "inflight"
    git_dir = _repository(tmp_path, "one.git")
    live, dead = Writer(registry, git_dir), Writer(registry, git_dir)
    writers.extend([live, dead])
    dead.kill()
    assert sweep(registry) == []
    assert dead.temp.is_file() and live.temp.is_file()
    live.kill()
    assert sorted(sweep(registry)) == sorted([dead.temp, live.temp])
    assert list(registry.iterdir()) == []


def test_the_end_of_a_write_sweeps_what_dead_writers_left(tmp_path: Path, writers: list[Writer]) -> None:
    registry = tmp_path / "run" / "inflight"
    git_dir = _repository(tmp_path, "one.git")
    ticket = InFlight(registry).begin(git_dir)
    assert ticket is not None
    dead = Writer(registry, git_dir)
    writers.append(dead)
    dead.kill()
    assert sweep(registry) == [] and dead.temp.is_file()  # this process's write is still in flight
    ticket.end()
    assert not dead.temp.exists()
    assert list(registry.iterdir()) == []


def test_other_files_are_never_touched(tmp_path: Path, writers: list[Writer]) -> None:
    registry = tmp_path / "run" / "inflight"
    git_dir = _repository(tmp_path, "one.git")
    keep = [git_dir / "objects" / "pack-abc.pack", git_dir / PACK_CACHE_DIR / "0123abcd", git_dir / "HEAD"]
    for path in keep:
        path.write_text("x")
    dead = Writer(registry, git_dir)
    writers.append(dead)
    dead.kill()
    assert sweep(registry) == [dead.temp]
    assert all(path.is_file() for path in keep)


def test_garbage_in_the_registry_is_ignored(tmp_path: Path) -> None:
    registry = tmp_path / "inflight"
    registry.mkdir()
    (registry / "not-a-path").write_text("relative/path")
    (registry / "empty").write_text("")
    assert sweep(registry) == []
    assert sweep(tmp_path / "missing") == []


def test_an_unwritable_registry_does_not_stop_the_write(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert InFlight(blocker / "inflight").begin(tmp_path) is None


def test_a_dead_pushs_quarantine_goes_with_what_is_in_it(tmp_path: Path) -> None:
    """git receive-pack killed with its worker leaves objects/tmp_objdir-incoming-* (a directory)."""
    registry, git_dir = tmp_path / "inflight", tmp_path / "repo.git"
    quarantine = git_dir / "objects" / "tmp_objdir-incoming-abc123"
    (quarantine / "pack").mkdir(parents=True)
    (quarantine / "pack" / "tmp_pack_x").write_bytes(b"PACK")
    (quarantine / "ab").mkdir()
    (quarantine / "ab" / "cdef").write_bytes(b"loose")
    ticket = InFlight(registry).begin(git_dir)
    assert ticket is not None
    ticket.lock.close()  # the worker died (its lock went with it)
    assert sweep(registry) == [quarantine]
    assert not quarantine.exists()
    assert (git_dir / "objects").is_dir()
