"""The lab's hosts are configured the way deploy/roles describes, without building the lab (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostd.ops import sshd, stack
from hostd.settings import Settings
from tests.cluster.lab import BALANCERS, BY_NAME, HOME_SHARD, HOSTS, PORTS, SHARDS, STACK_HOSTS, Lab, LabError


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    lab = Lab(tmp_path / "lab")
    lab.root.mkdir()
    lab.state_file.write_text('{"pg_password": "pw"}')
    return lab


def test_every_host_has_its_own_address_and_namespace(lab: Lab) -> None:
    assert len({lab.address(host) for host in HOSTS}) == len(HOSTS)
    assert len({host.namespace for host in HOSTS}) == len(HOSTS)
    # The root namespace's end of each link is a valid interface name (15 bytes at most).
    assert all(len(host.veth) <= 15 for host in HOSTS)
    assert lab.gateway not in {lab.address(host) for host in HOSTS}


@pytest.mark.parametrize("host", [host.name for host in STACK_HOSTS])
def test_each_stack_host_runs_its_role_only(lab: Lab, host: str) -> None:
    settings = Settings.from_env(lab.environment(host))
    programs = {program for program in stack.PROGRAMS if settings.runs(program)}
    expected = {"storage": {"git", "hg", "sshgate", "queue"}, "web": {"web"},
                "balancer": {"haproxy", "routes", "sshd", "sshgate"}}[BY_NAME[host].roles[0]]
    assert programs == expected
    assert settings.bind == lab.address(host) and settings.database_url is not None
    assert len(settings.memcached) == 3
    # The pools believe the load balancers' X-Forwarded-For, nobody else's.
    assert set(settings.trusted_proxies) == {lab.address(name) for name in BALANCERS}


def test_balancers_reach_the_home_shard_and_the_web_host_and_peer_with_each_other(lab: Lab) -> None:
    for name in BALANCERS:
        settings = Settings.from_env(lab.environment(name))
        assert settings.shard == HOME_SHARD and settings.lb_name == name
        assert settings.pool_server("git") == (lab.address(HOME_SHARD), PORTS.git)
        assert settings.pool_server("hg") == (lab.address(HOME_SHARD), PORTS.hg)
        assert settings.pool_server("web") == (lab.address("web"), PORTS.web)
        assert [peer.name for peer in settings.peers] == list(BALANCERS)
    assert [Settings.from_env(lab.environment(shard)).shard for shard in SHARDS] == list(SHARDS)


def test_a_subnet_must_be_an_ipv4_slash_24(tmp_path: Path) -> None:
    for subnet in ("10.213.0.0/16", "fd00::/64"):
        with pytest.raises(LabError, match="not an IPv4 /24"):
            Lab(tmp_path, subnet)


def test_the_balancers_share_one_set_of_ssh_host_keys_and_the_other_hosts_have_none(lab: Lab) -> None:
    lab._shared_files()
    balancers = [lab.data_dir(name) / "ssh" for name in BALANCERS]
    names = sorted(path.name for path in balancers[0].iterdir())
    assert names == sorted(f"ssh_host_{kind}_key{suffix}" for kind, _ in sshd.HOST_KEYS for suffix in ("", ".pub"))
    for directory in balancers[1:]:
        assert all((directory / name).read_bytes() == (balancers[0] / name).read_bytes() for name in names)
    for directory in balancers:
        assert directory.stat().st_mode & 0o777 == 0o700
        assert all((directory / name).stat().st_mode & 0o077 == 0 for name in names if not name.endswith(".pub"))
    assert not any((lab.data_dir(host) / "ssh").exists() for host in STACK_HOSTS if host.name not in BALANCERS)


def test_storage_hosts_relay_on_their_own_address(lab: Lab) -> None:
    # The balancers' gateways connect to a shard server's host at the relay port.
    for shard in SHARDS:
        settings = Settings.from_env(lab.environment(shard))
        assert settings.runs("sshgate") and not settings.runs("sshd")
        assert (settings.bind, settings.ports.ssh_relay) == (lab.address(shard), PORTS.ssh_relay)
