"""Several load balancers share the failed-login counts: HAProxy 2.6 peers, for real.

Two HAProxy instances run the real haproxy.cfg, started as supervisord starts
them, on loopback with their own ports: ``lb1`` and ``lb2``, each with the
peers section hostd/ops/peers.py renders for it from one ``HOSTD_PEERS``
list (``lb1=127.0.0.1:<port>,lb2=127.0.0.1:<port>``). Each control case runs
the same steps on two load balancers configured alone (HOSTD_PEERS unset:
each has only its own peer, on 127.0.0.1), and shows they do not share.
"""

from __future__ import annotations

import http.client
import re
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from hostd.ops import peers as peer_files
from hostd.ops.haproxy import StackError
from hostd.ops.stack import peers_ready
from hostd.ops.tls import TlsFiles
from hostd.settings import Peer, Settings
from tests.polling import wait_until

from .conftest import HAPROXY_DIR, backend_addresses
from .echo_backend import EchoBackend
from .haproxy_runner import HAProxy, find_haproxy, free_port
from .http_clients import h1_pipeline, h1_request

# haproxy.cfg: "sc_gpc0_rate(0) gt 600", so the 601st wrong password is still
# answered by the pool and the next request from the address gets the 429.
FLOOD_GUARD = 600
WRONG_PASSWORD = (("X-Echo-Status", "401"), ("Authorization", "Basic YWxpY2U6d3Jvbmc="))
# Credentials the echo pool accepts (200) unless HAProxy refuses first.
CREDENTIALS = (("Authorization", "Basic YWxpY2U6cmlnaHQ="),)
HAPROXY_429 = b"Too many failed authentication attempts"
# The stick table is type ipv6: IPv4 clients are stored as mapped addresses.
CLIENT = "::ffff:127.0.0.1"
TARGET = "/alice/proj.git/info/refs"
SYNC_SECONDS = 5.0


def settings_of(base: Path, name: str) -> Settings:
    """The settings of the load balancer named ``name``: its run directory (admin socket) and name."""
    return Settings(data_dir=base / name, lb_name=name)


@contextmanager
def load_balancers(
    base: Path, tls: TlsFiles, echo_backends: dict[str, EchoBackend], *, shared: bool, haproxy_dir: Path = HAPROXY_DIR
) -> Iterator[tuple[HAProxy, HAProxy]]:
    """lb1 and lb2 in front of the same pools; peers of each other when ``shared``."""
    listed = (Peer("lb1", "127.0.0.1", free_port()), Peer("lb2", "127.0.0.1", free_port()))
    pair = [
        HAProxy(haproxy_dir, settings_of(base, name).run_dir, tls, backend_addresses(echo_backends),
                lb_name=name, peers=listed if shared else ())
        for name in ("lb1", "lb2")
    ]
    with ExitStack() as running:
        for proxy in pair:
            running.enter_context(proxy)
        yield pair[0], pair[1]


def failed_logins(proxy: HAProxy) -> int | None:
    """gpc0 of 127.0.0.1 in the https table of ``proxy``'s worker."""
    match = re.search(rf" key={re.escape(CLIENT)} .*\bgpc0=(\d+)", proxy.admin("show table https"))
    return None if match is None else int(match[1])


def wait_for(what: str, condition: Callable[[], bool], timeout: float = SYNC_SECONDS) -> bool:
    """Poll ``condition`` until true (True) or ``timeout`` (False): the control cases wait it out."""
    try:
        wait_until(what, condition, timeout=timeout, interval=0.05)
    except AssertionError:
        return False
    return True


def connected_to(proxy: HAProxy, other: str) -> bool:
    """Whether ``show peers`` on ``proxy`` reports an established session with peer ``other``."""
    answer = proxy.admin("show peers")
    block = re.search(rf" id={other}\(remote,active\) .*?(?=\n  0x|\Z)", answer, re.DOTALL)
    return block is not None and "last_status=ESTA" in block[0] and "state=EST" in block[0]


# --- The sessions ---------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False], ids=["peers", "alone"])
def test_each_load_balancer_reports_the_other_connected(
    tmp_path: Path, tls: TlsFiles, echo_backends: dict[str, EchoBackend], shared: bool
) -> None:
    with load_balancers(tmp_path, tls, echo_backends, shared=shared) as (lb1, lb2):
        both = wait_for("lb1 and lb2 connected",
                        lambda: connected_to(lb1, "lb2") and connected_to(lb2, "lb1"))
        assert both == shared, lb1.admin("show peers") + lb2.admin("show peers")
        assert re.search(r" id=lb1\(local,", lb1.admin("show peers"))
        assert re.search(r" id=lb2\(local,", lb2.admin("show peers"))
        assert "Removing incomplete section" not in lb1.log() + lb2.log()


# --- Failed logins counted on one load balancer are refused on the other ------------


@pytest.mark.parametrize("shared", [True, False], ids=["peers", "alone"])
def test_failed_logins_on_lb1_are_refused_on_lb2(
    tmp_path: Path, tls: TlsFiles, echo_backends: dict[str, EchoBackend], shared: bool
) -> None:
    with load_balancers(tmp_path, tls, echo_backends, shared=shared) as (lb1, lb2):
        flood = h1_pipeline(lb1.https, [TARGET] * (FLOOD_GUARD + 1), WRONG_PASSWORD)
        assert [r.status for r in flood] == [401] * (FLOOD_GUARD + 1)
        learned = wait_for("lb2 has lb1's count", lambda: failed_logins(lb2) == FLOOD_GUARD + 1)
        assert learned == shared, lb2.admin("show table https")
        response = h1_request(lb2.https, "GET", TARGET, CREDENTIALS)
        if shared:
            assert (response.status, HAPROXY_429 in response.body) == (429, True)
            assert response.header("retry-after") == "60"
        else:
            assert response.status == 200
        # lb1 itself refuses either way: its own count.
        assert h1_request(lb1.https, "GET", TARGET, CREDENTIALS).status == 429


def _connection(proxy: HAProxy) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(proxy.tls.ca_cert))
    return http.client.HTTPSConnection("127.0.0.1", proxy.https_port, context=context, timeout=10)


def _get(connection: http.client.HTTPSConnection, headers: dict[str, str]) -> int:
    connection.request("GET", TARGET, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


@pytest.mark.parametrize("shared", [True, False], ids=["peers", "alone"])
def test_a_guesser_alternating_between_load_balancers_is_held(
    tmp_path: Path, tls: TlsFiles, echo_backends: dict[str, EchoBackend], shared: bool
) -> None:
    """Wrong passwords sent to lb1 and lb2 in turn, one at a time, until one answers 429.

    Alone, each load balancer counts its own: the 429 comes only after 601 on
    each. Shared, it comes well before: the peers share the count, although
    not every increment (the last value applied wins; see haproxy/peers.cfg).
    """
    alone_first_429 = 2 * (FLOOD_GUARD + 1) + 1
    with load_balancers(tmp_path, tls, echo_backends, shared=shared) as (lb1, lb2):
        if shared:
            assert wait_for("lb1 and lb2 connected", lambda: connected_to(lb1, "lb2") and connected_to(lb2, "lb1"))
        connections = [_connection(lb1), _connection(lb2)]
        headers = dict(WRONG_PASSWORD)
        try:
            sent, status = 0, 401
            while status == 401 and sent < alone_first_429:
                status = _get(connections[sent % 2], headers)
                sent += 1
        finally:
            for connection in connections:
                connection.close()
    assert status == 429
    if shared:
        # Measured: the first 429 after 602 to 606 requests. At least 2 in 3
        # counted, whatever the machine's load.
        assert sent < 1.5 * (FLOOD_GUARD + 1), sent
    else:
        assert sent == alone_first_429


# --- Reloads and restarts ------------------------------------------------------------


def test_a_reload_hands_the_shared_count_over_and_a_restart_learns_it(
    tmp_path: Path, tls: TlsFiles, echo_backends: dict[str, EchoBackend]
) -> None:
    """With remote peers configured, the reload handover still works, even with the other one down.

    lb2 is reloaded while lb1 is stopped, so only its old worker can teach
    the new one; then lb1 starts cold and learns the count from lb2.
    """
    with load_balancers(tmp_path, tls, echo_backends, shared=True) as (lb1, lb2):
        flood = h1_pipeline(lb1.https, [TARGET] * (FLOOD_GUARD + 1), WRONG_PASSWORD)
        assert [r.status for r in flood] == [401] * (FLOOD_GUARD + 1)
        assert wait_for("lb2 has lb1's count", lambda: failed_logins(lb2) == FLOOD_GUARD + 1)
        # A cold start's first worker hands nothing over for its first 5 s
        # (haproxy/peers.cfg); `make reload` waits the same way.
        assert wait_for("lb2 ready to hand over", lambda: peers_ready(settings_of(tmp_path, "lb2")), timeout=10)
        lb1.stop()
        lb2.reload()
        assert wait_for("lb2's new worker has the count", lambda: failed_logins(lb2) == FLOOD_GUARD + 1), \
            lb2.admin("show peers")
        assert h1_request(lb2.https, "GET", TARGET, CREDENTIALS).status == 429
        # The new worker learned from its predecessor: ready to hand on at once.
        assert peers_ready(settings_of(tmp_path, "lb2"))

        lb1.start()
        assert wait_for("lb1 learned the count from lb2", lambda: failed_logins(lb1) == FLOOD_GUARD + 1), \
            lb1.admin("show peers")
        assert h1_request(lb1.https, "GET", TARGET, CREDENTIALS).status == 429


def _unsynced_copy(base: Path) -> Path:
    """haproxy/ with the failed-login table no longer synced with the peers."""
    copy = base / "haproxy-unsynced"
    shutil.copytree(HAPROXY_DIR, copy)
    config = copy / "haproxy.cfg"
    text = config.read_text()
    synced = "store gpc0,gpc0_rate(60s) peers hostd\n"
    assert text.count(synced) == 1
    config.write_text(text.replace(synced, "store gpc0,gpc0_rate(60s)\n"))
    return copy


@pytest.mark.parametrize("synced", [True, False], ids=["peers", "table-not-synced"])
def test_a_reload_of_a_load_balancer_with_peers_keeps_its_count(
    tmp_path: Path, tls: TlsFiles, echo_backends: dict[str, EchoBackend], synced: bool
) -> None:
    """The control: without "peers hostd" on the table, the same reload forgets the count."""
    haproxy_dir = HAPROXY_DIR if synced else _unsynced_copy(tmp_path)
    with load_balancers(tmp_path, tls, echo_backends, shared=True, haproxy_dir=haproxy_dir) as (lb1, lb2):
        lb1.admin(f"set table https key {CLIENT} data.gpc0 {FLOOD_GUARD + 1} data.gpc0_rate {FLOOD_GUARD + 1}")
        assert failed_logins(lb1) == FLOOD_GUARD + 1
        assert wait_for("lb1 ready to hand over", lambda: peers_ready(settings_of(tmp_path, "lb1")), timeout=10)
        lb1.reload()
        kept = wait_for("lb1's new worker has the count", lambda: failed_logins(lb1) == FLOOD_GUARD + 1)
        assert kept == synced
        assert h1_request(lb1.https, "GET", TARGET, CREDENTIALS).status == (429 if synced else 200)
        assert lb2.admin("show table https")  # still answering


def test_a_reload_refuses_a_new_lb_name(
    tmp_path: Path, tls: TlsFiles, echo_backends: dict[str, EchoBackend]
) -> None:
    """HAProxy keeps the HOSTD_LB_NAME it started with; a peers.cfg for another would be dropped."""
    with load_balancers(tmp_path, tls, echo_backends, shared=True):
        settings = settings_of(tmp_path, "lb1")
        assert peer_files.running_name(settings) == "lb1"
        peer_files.check_reload(settings)
        renamed = Settings(data_dir=settings.data_dir, lb_name="lb3")
        with pytest.raises(StackError, match="'lb1', HOSTD_LB_NAME is 'lb3'"):
            peer_files.check_reload(renamed)


# --- What HAProxy 2.6 makes of the rendered section ----------------------------------


def _check(proxy: HAProxy, **environment: str) -> subprocess.CompletedProcess[str]:
    proxy.check()  # renders the run directory's files
    return subprocess.run([find_haproxy(), "-c", *proxy.config_arguments()],
                          env={**proxy.environment(), **environment},
                          capture_output=True, text=True, timeout=30, check=False)


PEER_LISTS = [
    pytest.param("hostd", (), id="single"),
    pytest.param("lb2", (Peer("lb1", "127.0.0.1", 1), Peer("lb2", "127.0.0.1", 2)), id="two"),
    pytest.param("lb1", (Peer("lb1", "::1", 1), Peer("lb2", "::1", 2)), id="ipv6"),
]


@pytest.mark.parametrize(("name", "listed"), PEER_LISTS)
def test_haproxy_reads_the_rendered_section_without_warnings(
    tmp_path: Path, tls: TlsFiles, name: str, listed: tuple[Peer, ...]
) -> None:
    proxy = HAProxy(HAPROXY_DIR, tmp_path, tls, {pool: "127.0.0.1:1" for pool in ("git", "hg", "web")},
                    lb_name=name, peers=listed)
    result = _check(proxy)
    assert (result.returncode, "WARNING" in result.stdout + result.stderr) == (0, False), result.stderr


def test_haproxy_silently_drops_a_section_without_its_localpeer(tmp_path: Path, tls: TlsFiles) -> None:
    """Why render_peers and check_reload refuse a name the section does not list: only a warning."""
    proxy = HAProxy(HAPROXY_DIR, tmp_path, tls, {pool: "127.0.0.1:1" for pool in ("git", "hg", "web")},
                    lb_name="lb1", peers=(Peer("lb1", "127.0.0.1", 1), Peer("lb2", "127.0.0.1", 2)))
    result = _check(proxy, HOSTD_LB_NAME="lb3")
    assert result.returncode == 0
    assert "Removing incomplete section 'peers hostd' (no peer named 'lb3')" in result.stderr


def test_haproxy_refuses_to_start_without_lb_name_or_peers_file(tmp_path: Path, tls: TlsFiles) -> None:
    proxy = HAProxy(HAPROXY_DIR, tmp_path, tls, {pool: "127.0.0.1:1" for pool in ("git", "hg", "web")})
    assert _check(proxy).returncode == 0
    unset = _check(proxy, HOSTD_LB_NAME="")
    assert unset.returncode != 0 and "'localpeer' expects a name" in unset.stderr
    proxy.peers_config.unlink()
    missing = subprocess.run([find_haproxy(), "-c", *proxy.config_arguments()], env=proxy.environment(),
                             capture_output=True, text=True, timeout=30, check=False)
    assert missing.returncode != 0 and peer_files.PEERS_FILE in missing.stderr
