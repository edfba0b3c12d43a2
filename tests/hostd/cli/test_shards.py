"""``hostd shard`` and where ``hostd repo create`` puts a repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostd.cli.conftest import Hostd


def test_shards_are_added_weighted_drained_and_listed(hostd: Hostd) -> None:
    code, out, _ = hostd("shard", "add", "s2", "--weight", "2", "--git", "10.0.0.12:8101", "--hg", "10.0.0.12:8102")
    assert (code, out) == (0, "s2\tactive\tweight 2\t0 repositories\t10.0.0.12:8101,10.0.0.12:8102\n")
    assert hostd("shard", "weight", "s2", "0")[1].startswith("s2\tactive\tweight 0\t0 repositories\t")
    assert hostd("shard", "drain", "default")[1].startswith("default\tdraining\tweight 1\t")
    assert hostd("shard", "undrain", "default")[1].startswith("default\tactive\t")
    assert hostd("shard", "servers", "s2", "--git", "10.0.0.13:8101")[1].endswith("\t10.0.0.13:8101\n")
    code, out, _ = hostd("shard", "list")
    assert out.splitlines() == ["default\tactive\tweight 1\t0 repositories\t-",
                                "s2\tactive\tweight 0\t0 repositories\t10.0.0.13:8101"]


def test_a_repository_is_created_here_only_if_this_host_holds_its_shard(hostd: Hostd, data: Path) -> None:
    hostd("user", "add", "alice", stdin="s3cret-password\n")
    hostd("shard", "add", "s2")
    hostd("shard", "drain", "default")
    # Placement picks s2, which this host (HOSTD_SHARD unset: default) does not hold.
    code, _, err = hostd("repo", "create", "alice/elsewhere", "--vcs", "git")
    assert code == 1
    assert err == ("hostd: alice/elsewhere goes on shard s2, and this host holds shard default (HOSTD_SHARD):"
                   " run the command on a host of s2, or add --shard default\n")
    assert hostd("repo", "list")[1] == ""
    assert not (data / "repos" / "alice").exists()
    code, out, _ = hostd("repo", "create", "alice/here", "--vcs", "hg", "--shard", "default")
    assert (code, out) == (0, "private hg repository alice/here created on shard default\n")
    assert hostd("repo", "create", "alice/x", "--vcs", "git", "--shard", "s9")[2] == "hostd: no such shard: s9\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("shard", "add", "S2"), "invalid shard name 'S2'"),
        (("shard", "add", "s2", "--weight", "1001"), "'1001' is not a weight"),
        (("shard", "add", "s2", "--weight", "-1"), "'-1' is not a weight"),
        (("shard", "weight", "s2", "x"), "'x' is not a weight"),
    ],
)
def test_bad_arguments_are_usage_errors(hostd: Hostd, args: tuple[str, ...], message: str) -> None:
    code, _, err = hostd(*args)
    assert code == 2 and message in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("shard", "add", "default"), "shard already exists: default"),
        (("shard", "drain", "s9"), "no such shard: s9"),
        (("shard", "add", "s2", "--git", "10.0.0.1 check"), "server '10.0.0.1 check' is not host:port"),
    ],
)
def test_refusals_are_one_line(hostd: Hostd, args: tuple[str, ...], message: str) -> None:
    code, _, err = hostd(*args)
    assert (code, err) == (1, f"hostd: {message}\n")
