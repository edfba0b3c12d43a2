"""Parsing HAProxy's admin-socket answers into pool state, without HAProxy.

The end-to-end behaviour (drain, add, kill, reload) is in
tests/e2e/test_operations.py; these tables pin the parsing it relies on.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hostd.cli.main import main
from hostd.ops import haproxy, pooladmin, poolstate, routes
from hostd.ops.haproxy import PoolError
from hostd.ops.pooladmin import Admin
from hostd.settings import PROJECT_ROOT, Settings
from tests import pg

HEADER = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,check_status,check_desc,addr,\n")
STATE_HEADER = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
                "srv_iweight srv_time_since_last_change\n")


def stat_row(server: str, status: str, scur: int = 0) -> str:
    return f"git,{server},0,0,{scur},3,8,42,{status},L7OK,Layer7 check passed,127.0.0.1:8101,\n"


# (stat status text, srv_op_state, srv_admin_state) -> what `pool list` shows
STATES = [
    ("UP", 2, 0, "UP", Admin.READY),
    ("DOWN", 0, 0, "DOWN", Admin.READY),
    ("DOWN 1/2", 0, 0, "DOWN", Admin.READY),
    ("UP 1/2", 2, 0, "UP", Admin.READY),
    ("DRAIN", 2, 0x08, "DRAIN", Admin.DRAIN),
    # The stat text says only DOWN for a drained server whose check fails.
    ("DOWN", 0, 0x08, "DOWN", Admin.DRAIN),
    ("MAINT", 0, 0x01, "MAINT", Admin.MAINT),
    ("MAINT", 2, 0x01 | 0x08, "MAINT", Admin.MAINT),
    ("MAINT (resolution)", 0, 0x20, "MAINT", Admin.MAINT),
    ("NOLB", 3, 0, "DRAIN", Admin.READY),
]


@pytest.mark.parametrize(("status", "op", "admin_bits", "shown", "admin"), STATES,
                         ids=[f"{s[0]}-op{s[1]}-admin{s[2]:#x}" for s in STATES])
def test_state_joins_stat_and_servers_state(status: str, op: int, admin_bits: int, shown: str, admin: Admin) -> None:
    stat = haproxy.parse_stat_csv(HEADER + stat_row("git1", status, scur=2) + "\n")
    state = haproxy.parse_servers_state(STATE_HEADER + f"5 git 1 git1 127.0.0.1 {op} {admin_bits} 1 1 3\n\n")
    [server] = poolstate.merge(stat, state)
    assert (server.state, server.admin) == (shown, admin)
    assert (server.key, server.sessions, server.total_sessions, server.maxconn) == ("git/git1", 2, 42, 8)
    assert (server.address, server.check) == ("127.0.0.1:8101", "Layer7 check passed")


def test_server_missing_from_servers_state_falls_back_to_the_stat_text() -> None:
    stat = haproxy.parse_stat_csv(HEADER + stat_row("git2", "DRAIN"))
    [server] = poolstate.merge(stat, {})
    assert (server.state, server.admin, server.healthy) == ("DRAIN", Admin.DRAIN, True)


def test_frontend_and_backend_rows_are_not_servers() -> None:
    text = HEADER + "https,FRONTEND,,,0,0,100,5,OPEN,,,,\n" + "git,BACKEND,0,0,0,0,8,5,UP,,,,\n"
    assert poolstate.merge(haproxy.parse_stat_csv(text), {}) == []


@pytest.mark.parametrize("answer", ["No such proxy.\n", "Unknown command.\n", ""], ids=["no-proxy", "unknown", "empty"])
def test_unexpected_answers_are_errors_that_quote_haproxy(answer: str) -> None:
    with pytest.raises(PoolError, match="unexpected answer"):
        haproxy.parse_stat_csv(answer)
    with pytest.raises(PoolError, match="unexpected answer"):
        haproxy.parse_servers_state(answer)


ADDRESSES = [
    ("127.0.0.1:8111", "127.0.0.1:8111"),
    ("[::1]:8111", "[::1]:8111"),
    ("[0:0::1]:80", "[::1]:80"),
    ("10.0.0.7:1", "10.0.0.7:1"),
]
BAD_ADDRESSES = ["localhost:8111", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:8111",
                 "300.1.1.1:80", "127.0.0.1:80 maxconn 1", "127.0.0.1:80;del server git/git1", ""]


@pytest.mark.parametrize(("text", "spelled"), ADDRESSES, ids=[a for a, _ in ADDRESSES])
def test_addresses_are_ip_and_port(text: str, spelled: str) -> None:
    assert pooladmin.parse_address(text) == spelled


@pytest.mark.parametrize("text", BAD_ADDRESSES, ids=BAD_ADDRESSES)
def test_bad_addresses_are_refused_before_reaching_haproxy(text: str) -> None:
    with pytest.raises(PoolError, match="invalid address"):
        pooladmin.parse_address(text)


@pytest.mark.parametrize("name", ["git2;del server git/git1", "a b", "", "-x", "x" * 65, "git2\nshow info"],
                         ids=["semicolon", "space", "empty", "leading-dash", "too-long", "newline"])
def test_names_cannot_smuggle_commands(name: str, tmp_path: Path) -> None:
    # No stack under tmp_path: reaching the socket would be a different error.
    with pytest.raises(PoolError, match="invalid server name"):
        pooladmin.add(Settings(data_dir=tmp_path), "git", name, "127.0.0.1:8111")


def test_added_servers_are_checked_like_the_configured_ones() -> None:
    """Dynamic servers ignore default-server: CHECK_OPTIONS must repeat it."""
    config = (PROJECT_ROOT / "haproxy" / "haproxy.cfg").read_text()
    [default_server] = re.findall(r"^\s*default-server\s+(.*?)\s*$", config, re.MULTILINE)
    assert default_server == pooladmin.CHECK_OPTIONS


def test_servers_added_to_a_shard_are_checked_like_the_rendered_ones() -> None:
    """The same for a shard's backends: routes.SERVER_OPTIONS repeats haproxy/shard-backends.cfg's default-server
    (what HAProxy then runs for an added server: tests/hostd/ops/test_shardpools.py)."""
    template = (PROJECT_ROOT / "haproxy" / "shard-backends.cfg").read_text()
    default_servers = re.findall(r"^\s*default-server\s+(.*?)\s*$", template, re.MULTILINE)
    assert len(default_servers) == 2  # backend git-@SHARD@ and backend hg-@SHARD@
    assert set(default_servers) == {routes.SERVER_OPTIONS}


def test_servers_state_skips_comments_and_blank_lines() -> None:
    text = STATE_HEADER + "5 git 1 git1 127.0.0.1 2 0 1 1 3\n# comment\n\n6 hg 1 hg1 127.0.0.1 0 1 1 1 9\n"
    state = haproxy.parse_servers_state(text)
    assert sorted(state) == [("git", "git1"), ("hg", "hg1")]
    assert state[("hg", "hg1")]["srv_admin_state"] == "1"


def test_cli_without_a_running_stack_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTD_DATABASE_URL", pg.new_database(migrated=False))
    assert main(["init", "--no-demo", "--data", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["pool", "list", "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the stack running?" in err


FULL_STATE_HEADER = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
    "srv_check_addr srv_agent_addr srv_agent_port\n"
)


@pytest.mark.parametrize(
    ("stat_addr", "state_row", "worker_address"),
    [
        # HAProxy 2.6 as it answered for `server git1 unix@... check addr 127.0.0.1 port 8101`
        ("unix", "2 git 1 git1 - 2 0 1 1 1 8 2 0 6 0 0 0 - 0 - 0 8101 127.0.0.1 127.0.0.1 8101",
         "127.0.0.1:8101"),
        ("unix", "2 git 1 git1 - 2 0 1 1 1 8 2 0 6 0 0 0 - 0 - 0 8101 ::1 ::1 8101", "[::1]:8101"),
        # ...and for `add server git/git2 127.0.0.1:8222 check`
        ("127.0.0.1:8222", "2 git 1 git1 127.0.0.1 2 0 1 1 0 1 0 0 2 0 0 0 - 8222 - 0 0 - - 0", "127.0.0.1:8222"),
    ],
    ids=["unix-checked-on-tcp", "unix-checked-on-ipv6", "tcp"],
)
def test_a_worker_on_a_unix_socket_is_known_by_its_checked_address(
        stat_addr: str, state_row: str, worker_address: str) -> None:
    """What `pool list` shows and what a reload re-adds: the IP:PORT the operator gave `pool add`."""
    row = f"git,git1,0,0,0,3,8,42,UP,L7OK,Layer7 check passed,{stat_addr},\n"
    [server] = poolstate.merge(haproxy.parse_stat_csv(HEADER + row),
                               haproxy.parse_servers_state(FULL_STATE_HEADER + state_row + "\n"))
    assert server.worker_address == worker_address


def test_a_local_worker_is_reached_over_its_socket_in_the_run_directory(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert pooladmin.worker_socket(settings, "git", "git2") == tmp_path / "run" / "git-git2.sock"
