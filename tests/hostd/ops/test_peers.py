"""The load balancers' peers: settings parsed from HOSTD_LB_NAME and HOSTD_PEERS, and peers.cfg rendered.

Both are pure and tested as tables. What HAProxy 2.6 does with the rendered
section (two load balancers sharing their counts, reloads, restarts) is
tested with the real binary in tests/haproxy/test_peers.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hostd.ops import peers, stack
from hostd.settings import DEFAULT_LB_NAME, Peer, Ports, Settings, SettingsError

LB1, LB2 = Peer("lb1", "10.0.0.1", 8405), Peer("lb2", "10.0.0.2", 8405)

# --- HOSTD_LB_NAME and HOSTD_PEERS ---------------------------------------------------

VALID = [
    ("unset", {}, DEFAULT_LB_NAME, ()),
    ("empty", {"HOSTD_LB_NAME": "", "HOSTD_PEERS": ""}, DEFAULT_LB_NAME, ()),
    ("name-alone", {"HOSTD_LB_NAME": "edge-1"}, "edge-1", ()),
    ("two", {"HOSTD_LB_NAME": "lb2", "HOSTD_PEERS": "lb1=10.0.0.1:8405,lb2=10.0.0.2:8405"}, "lb2", (LB1, LB2)),
    ("one", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=10.0.0.1:8405"}, "lb1", (LB1,)),
    ("spaces-and-trailing-comma", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": " lb1 = 10.0.0.1:8405 , lb2=10.0.0.2:8405,"},
     "lb1", (LB1, LB2)),
    ("same-host-two-ports", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=127.0.0.1:1,lb2=127.0.0.1:2"}, "lb1",
     (Peer("lb1", "127.0.0.1", 1), Peer("lb2", "127.0.0.1", 2))),
    ("ipv6", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=[fd00::0001]:8405,lb2=[FD00::2]:8405"}, "lb1",
     (Peer("lb1", "fd00::1", 8405), Peer("lb2", "fd00::2", 8405))),
    ("name-limits", {"HOSTD_LB_NAME": "a" * 32, "HOSTD_PEERS": f"{'a' * 32}=10.0.0.1:65535"}, "a" * 32,
     (Peer("a" * 32, "10.0.0.1", 65535),)),
]


@pytest.mark.parametrize(("env", "name", "listed"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_settings_parse_the_load_balancers(env: dict[str, str], name: str, listed: tuple[Peer, ...]) -> None:
    settings = Settings.from_env(env)
    assert (settings.lb_name, settings.peers) == (name, listed)


INVALID = [
    ("upper-case-name", {"HOSTD_LB_NAME": "LB1"}, "HOSTD_LB_NAME"),
    ("name-with-digit-first", {"HOSTD_LB_NAME": "1lb"}, "HOSTD_LB_NAME"),
    ("name-too-long", {"HOSTD_LB_NAME": "a" * 33}, "HOSTD_LB_NAME"),
    ("name-with-quote", {"HOSTD_LB_NAME": 'lb"1'}, "HOSTD_LB_NAME"),
    ("name-not-listed", {"HOSTD_LB_NAME": "lb3", "HOSTD_PEERS": "lb1=10.0.0.1:1,lb2=10.0.0.2:1"},
     "HOSTD_PEERS does not list this load balancer, HOSTD_LB_NAME='lb3'"),
    ("default-name-not-listed", {"HOSTD_PEERS": "lb1=10.0.0.1:1"}, "HOSTD_LB_NAME='hostd'"),
    ("name-twice", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=10.0.0.1:1,lb1=10.0.0.2:1"},
     "HOSTD_PEERS names a load balancer twice"),
    ("address-twice", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=[fd00::1]:1,lb2=[fd00:0::1]:1"},
     "HOSTD_PEERS gives two load balancers the same address"),
    ("no-equals", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1:10.0.0.1:1"}, "HOSTD_PEERS"),
    ("no-port", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=10.0.0.1"}, "HOSTD_PEERS"),
    ("port-zero", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=10.0.0.1:0"}, "HOSTD_PEERS"),
    ("port-too-large", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=10.0.0.1:65536"}, "HOSTD_PEERS"),
    ("host-name", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=lb1.example:1"}, "HOSTD_PEERS"),
    ("bad-ipv4", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=10.0.0.256:1"}, "HOSTD_PEERS"),
    ("ipv6-without-brackets", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=fd00::1:1"}, "HOSTD_PEERS"),
    ("ipv4-in-brackets", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=[10.0.0.1]:1"}, "HOSTD_PEERS"),
    ("unspecified", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=0.0.0.0:1"}, "HOSTD_PEERS"),
    ("unspecified-ipv6", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=[::]:1"}, "HOSTD_PEERS"),
    ("bad-peer-name", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=10.0.0.1:1,Lb2=10.0.0.2:1"}, "HOSTD_PEERS"),
    ("empty-peer-name", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=10.0.0.1:1,=10.0.0.2:1"}, "HOSTD_PEERS"),
    ("space-in-address", {"HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=10.0.0.1 :1"}, "HOSTD_PEERS"),
]


@pytest.mark.parametrize(("env", "message"), [i[1:] for i in INVALID], ids=[i[0] for i in INVALID])
def test_settings_refuse_bad_load_balancers(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


def test_the_stack_environment_carries_the_load_balancers(tmp_path: Path) -> None:
    env = {"HOSTD_DATA": str(tmp_path), "HOSTD_LB_NAME": "lb1", "HOSTD_PEERS": "lb1=[fd00::1]:1,lb2=10.0.0.2:2"}
    exported = stack.environment(Settings.from_env(env), base={})
    assert (exported["HOSTD_LB_NAME"], exported["HOSTD_PEERS"]) == ("lb1", "lb1=[fd00::1]:1,lb2=10.0.0.2:2")
    # ...which parses back to the same settings (hostd commands under supervisord).
    assert Settings.from_env(exported).peers == Settings.from_env(env).peers
    single = stack.environment(Settings(data_dir=tmp_path), base={})
    assert single["HOSTD_LB_NAME"] == DEFAULT_LB_NAME and "HOSTD_PEERS" not in single


# --- peers.cfg ------------------------------------------------------------------------


def _peer_lines(text: str) -> list[str]:
    """The section's lines: its header and what follows, without comments."""
    section = text[text.index("\npeers hostd\n") + 1:]
    return [line for line in section.splitlines() if line.strip() and not line.lstrip().startswith("#")]


RENDERED = [
    ("single-host", "hostd", (), ["peers hostd", "    peer hostd 127.0.0.1:8405"]),
    ("single-host-named", "edge-1", (), ["peers hostd", "    peer edge-1 127.0.0.1:8405"]),
    ("two", "lb2", (LB1, LB2), ["peers hostd", "    peer lb1 10.0.0.1:8405", "    peer lb2 10.0.0.2:8405"]),
    ("ipv6", "lb1", (Peer("lb1", "fd00::1", 1), Peer("lb2", "fd00::2", 2)),
     ["peers hostd", "    peer lb1 [fd00::1]:1", "    peer lb2 [fd00::2]:2"]),
]


@pytest.mark.parametrize(("name", "listed", "lines"), [r[1:] for r in RENDERED], ids=[r[0] for r in RENDERED])
def test_render_peers(name: str, listed: tuple[Peer, ...], lines: list[str]) -> None:
    text = peers.render_peers(name, listed, local_port=8405)
    assert _peer_lines(text) == lines
    assert text.startswith(peers.HEADER)
    assert "##" not in text and "@PEERS@" not in text
    # The reasons travel with the section: no authentication, so loopback or a private network.
    assert "no authentication" in text and "private network" in text


def test_the_single_host_peer_says_where_it_listens() -> None:
    text = peers.render_peers("hostd", (), local_port=8405)
    assert "    # This load balancer (HOSTD_LB_NAME): HAProxy listens on hostd, 127.0.0.1:8405.\n" in text


BAD_RENDERS = [
    ("bad-name", "LB1", (), 8405),
    ("not-listed", "lb3", (LB1, LB2), 8405),
    ("listed-twice", "lb1", (LB1, Peer("lb1", "10.0.0.3", 1)), 8405),
    ("bad-peer-name", "lb1", (LB1, Peer("lb 2", "10.0.0.2", 1)), 8405),
    ("bad-port", "lb1", (Peer("lb1", "10.0.0.1", 0),), 8405),
    ("bad-local-port", "hostd", (), 70000),
]


@pytest.mark.parametrize(("name", "listed", "port"), [b[1:] for b in BAD_RENDERS], ids=[b[0] for b in BAD_RENDERS])
def test_render_peers_refuses(name: str, listed: tuple[Peer, ...], port: int) -> None:
    with pytest.raises(ValueError):
        peers.render_peers(name, listed, local_port=port)


def test_write_peers_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, ports=Ports(peers=9405), lb_name="lb2", peers=(LB1, LB2))
    settings.run_dir.mkdir(parents=True)
    path = peers.write_peers_file(settings)
    assert path == settings.run_dir / "peers.cfg"
    assert path.read_text() == peers.render_peers("lb2", (LB1, LB2), local_port=9405)
    # Atomic: no temporary file left behind.
    assert [p.name for p in settings.run_dir.iterdir()] == ["peers.cfg"]


def test_main_writes_the_file_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOSTD_DATA", str(tmp_path))
    monkeypatch.setenv("HOSTD_PEERS_PORT", "9405")
    monkeypatch.delenv("HOSTD_LB_NAME", raising=False)
    monkeypatch.delenv("HOSTD_PEERS", raising=False)
    (tmp_path / "run").mkdir()
    assert peers.main([]) == 0
    assert "    peer hostd 127.0.0.1:9405\n" in (tmp_path / "run" / "peers.cfg").read_text()
    monkeypatch.setenv("HOSTD_PEERS", "lb1=10.0.0.1:1")
    assert peers.main([]) == 1
    assert "HOSTD_LB_NAME='hostd'" in capsys.readouterr().err
    assert peers.main(["bogus"]) == 2
