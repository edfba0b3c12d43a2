"""A host runs the programs of its roles (HOSTD_ROLES) and reaches the pools of other hosts (HOSTD_*_SERVER)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hostd.ops import stack
from hostd.settings import ROLES, Settings, SettingsError

REMOTE = {"HOSTD_DATABASE_URL": "postgresql://hostd:pw@10.0.0.10/hostd", "HOSTD_MEMCACHED": "10.0.0.21:11211"}


def _autostart(env: dict[str, str]) -> set[str]:
    return {name.removeprefix("HOSTD_").removesuffix("_AUTOSTART").lower()
            for name, value in env.items() if name.endswith("_AUTOSTART") and value == "true"}


def test_one_host_runs_everything(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOSTD_DATA": str(tmp_path)})
    assert settings.roles == frozenset(ROLES)
    assert _autostart(stack.environment(settings, base={})) == set(stack.PROGRAMS)


@pytest.mark.parametrize(("roles", "programs"), [
    ("balancer", {"haproxy", "routes", "sshd", "sshgate"}),
    ("storage", {"git", "hg", "sshgate", "queue"}),
    ("web", {"web"}),
    ("storage, web", {"git", "hg", "sshgate", "queue", "web"}),
])
def test_a_host_starts_the_programs_of_its_roles(tmp_path: Path, roles: str, programs: set[str]) -> None:
    settings = Settings.from_env({"HOSTD_DATA": str(tmp_path), "HOSTD_ROLES": roles, **REMOTE})
    env = stack.environment(settings, base={})
    assert _autostart(env) == programs
    # Every program of deploy/supervisord.conf has its switch, and nothing else does.
    conf = (stack.SUPERVISORD_CONF).read_text()
    assert set(re.findall(r"^\[program:(\w+)\]", conf, re.MULTILINE)) == set(stack.PROGRAMS)
    assert set(re.findall(r"autostart=%\(ENV_HOSTD_(\w+)_AUTOSTART\)s", conf)) == {p.upper() for p in stack.PROGRAMS}


def test_the_database_program_needs_the_database_role_and_no_url(tmp_path: Path) -> None:
    managed = Settings.from_env({"HOSTD_DATA": str(tmp_path), "HOSTD_ROLES": "database,cache"})
    assert managed.runs("postgres")
    external = Settings.from_env({"HOSTD_DATA": str(tmp_path), **REMOTE})
    assert not external.runs("postgres") and external.runs("git")


@pytest.mark.parametrize(("env", "message"), [
    ({"HOSTD_ROLES": "storage,proxy", **REMOTE}, "HOSTD_ROLES: proxy is not a role"),
    ({"HOSTD_ROLES": " , ", **REMOTE}, "is not a role"),
    ({"HOSTD_ROLES": "storage", "HOSTD_MEMCACHED": "10.0.0.21:11211"}, "HOSTD_DATABASE_URL must name the database"),
    ({"HOSTD_ROLES": "storage,database"}, "HOSTD_MEMCACHED must name the memcached nodes"),
    ({"HOSTD_GIT_SERVER": "git1:8101"}, "HOSTD_GIT_SERVER: 'git1:8101' is not ip:port"),
    ({"HOSTD_HG_SERVER": "10.0.0.1"}, "HOSTD_HG_SERVER: '10.0.0.1' is not ip:port"),
    ({"HOSTD_WEB_SERVER": "fd00::1:80"}, "is not ip:port"),
    ({"HOSTD_WEB_SERVER": "[10.0.0.1]:80"}, "is not ip:port"),
    ({"HOSTD_WEB_SERVER": "10.0.0.1:0"}, "HOSTD_WEB_SERVER: 0 is not a TCP port"),
    ({"HOSTD_WEB_SERVER": "10.0.0.1:70000"}, "HOSTD_WEB_SERVER: 70000 is not a TCP port"),
])
def test_settings_refuse_bad_roles_and_servers(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


def test_a_balancer_reaches_pools_on_other_hosts(tmp_path: Path) -> None:
    env = {"HOSTD_DATA": str(tmp_path), "HOSTD_ROLES": "balancer", "HOSTD_GIT_SERVER": "10.0.0.31:8101",
           "HOSTD_WEB_SERVER": "[fd00::40]:8103", **REMOTE}
    settings = Settings.from_env(env)
    exported = stack.environment(settings, base={})
    assert (exported["HOSTD_GIT_ADDR"], exported["HOSTD_GIT_CHECK_HOST"], exported["HOSTD_GIT_CHECK_PORT"]) == \
        ("10.0.0.31:8101", "10.0.0.31", "8101")
    assert (exported["HOSTD_WEB_ADDR"], exported["HOSTD_WEB_CHECK_HOST"]) == ("[fd00::40]:8103", "fd00::40")
    # A pool not named stays this host's own, on its unix socket.
    assert exported["HOSTD_HG_ADDR"] == f"unix@{settings.pool_socket('hg')}"
    # What is exported parses back to the same settings (hostd commands under supervisord, systemd's hostd.env).
    again = Settings.from_env(exported)
    assert (again.roles, again.pool_servers) == (settings.roles, settings.pool_servers)


def test_health_asks_only_what_the_host_runs(tmp_path: Path) -> None:
    # Nothing listens: a storage host's problem names its own pools, never HAProxy or the web pool.
    settings = Settings.from_env({"HOSTD_DATA": str(tmp_path), "HOSTD_ROLES": "web", "HOSTD_WEB_PORT": "1", **REMOTE})
    problem = stack.health_problem(settings)
    assert problem is not None and problem.startswith("web pool on port 1")
