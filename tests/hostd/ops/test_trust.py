"""``hostd trust``: the decision as a table, and install/remove into temporary places with the real tools.

The system store is a temporary one: the real ``update-ca-certificates`` with
its directories moved (``--localcertsdir``, ``--etccertsdir``, no hooks), so
nothing of the machine's trust changes. The proof that a setting works is the
real git and hg verifying a real TLS server that presents the stack's
certificate, with ``GIT_SSL_CAINFO`` naming a bundle, as on CI images.
"""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hostd.ops import tls, trust
from hostd.ops.truststeps import Copy, Delete, HgBlock, Places, Run, Write
from hostd.settings import Settings

UPDATE = shutil.which("update-ca-certificates", path="/usr/sbin:/sbin:/usr/bin")
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HG = str(Path(sys.executable).parent / "hg")

SETTINGS = Settings(data_dir=Path("/srv/hostd"))
PLACES = Places(home=Path("/home/alice"))
#: The stack's own CA, not trusted yet, no root: what a new user meets.
NEW = trust.Facts(problem="self-signed certificate in certificate chain", own_ca=True, scoped=True, root=False,
                  in_system=False, for_user=False, user_traces=False)


def kind(plan: trust.Plan) -> str:
    if plan.refusal is not None:
        return "refused"
    if not plan.needed:
        return "nothing"
    return "system" if any(isinstance(a, Copy) and a.target.parent == PLACES.system_certs for a in plan.install) \
        else "user"


CASES = {
    "root, a constrained CA: the system store": (replace(NEW, root=True), "system"),
    "root, an older unconstrained CA: this user only": (replace(NEW, root=True, scoped=False), "user"),
    "not root: this user only": (NEW, "user"),
    "in the system store already": (replace(NEW, root=True, in_system=True, problem=None), "nothing"),
    "in the system store, but the CA was made anew": (replace(NEW, root=True, in_system=True), "system"),
    "the CA in the system store, its hg file gone": (replace(NEW, root=True, problem=None, system_traces=True),
                                                      "system"),
    "the system trusts the CA another way: hg still needs its file": (replace(NEW, root=True, problem=None), "system"),
    "set up for this user already": (replace(NEW, for_user=True, user_traces=True), "nothing"),
    "an operator's certificate the system verifies": (replace(NEW, own_ca=False, problem=None), "nothing"),
    "an operator's certificate of a private CA": (replace(NEW, own_ca=False, root=True), "refused"),
}


@pytest.mark.parametrize(("found", "expected"), CASES.values(), ids=CASES.keys())
def test_what_hostd_trust_decides(found: trust.Facts, expected: str) -> None:
    assert kind(trust.plan(SETTINGS, found, PLACES)) == expected


def test_the_system_steps() -> None:
    plan = trust.plan(SETTINGS, replace(NEW, root=True), PLACES)
    name = trust.name(SETTINGS)
    assert plan.install == (Copy(Path("/srv/hostd/tls/ca.pem"), Path(f"/usr/local/share/ca-certificates/{name}.crt")),
                            Write(Path(f"/etc/mercurial/hgrc.d/{name}.rc"), trust.hg_system_text(SETTINGS, PLACES)),
                            Run(("update-ca-certificates", "--hooksdir", "/dev/null")))
    assert "127.0.0.1:verifycertsfile = /etc/ssl/certs/ca-certificates.crt" in trust.hg_system_text(SETTINGS, PLACES)
    assert "  update-ca-certificates --hooksdir /dev/null" in plan.says


def test_the_user_steps_are_scoped_to_this_server() -> None:
    plan = trust.plan(SETTINGS, NEW, PLACES)
    capath = Path("/srv/hostd/tls/trusted")
    assert plan.install == (
        Copy(Path("/srv/hostd/tls/ca.pem"), capath / "hostd-ca.pem"), Run(("openssl", "rehash", str(capath))),
        Run(("git", "config", "--global", "--replace-all", "http.https://127.0.0.1:8443/.sslCAPath", str(capath))),
        HgBlock(Path("/home/alice/.hgrc"), trust.hg_user_block(SETTINGS), add=True))
    assert trust.hg_user_block(SETTINGS).endswith(
        "[hostsecurity]\n127.0.0.1:verifycertsfile = /srv/hostd/tls/ca.pem\n")
    assert any(line.startswith("curl reads no per-host setting") for line in plan.says)
    # Without openssl, no hash link: GnuTLS (Debian's git) reads every file of the directory anyway.
    assert not any(isinstance(a, Run) and a.argv[0] == "openssl"
                   for a in trust.plan(SETTINGS, replace(NEW, openssl=False), PLACES).install)


REMOVALS = {
    "nothing of ours": (NEW, []),
    "in the system store, as root": (replace(NEW, root=True, system_traces=True), ["crt", "rc", "update"]),
    "in the system store, not root: cannot": (replace(NEW, system_traces=True), []),
    "in this user's configuration": (replace(NEW, user_traces=True), ["git", "hgrc", "capath"]),
}


@pytest.mark.parametrize(("found", "expected"), REMOVALS.values(), ids=REMOVALS.keys())
def test_what_remove_takes_out(found: trust.Facts, expected: list[str]) -> None:
    def label(action: object) -> str:
        if isinstance(action, Delete):
            return {".crt": "crt", ".rc": "rc"}.get(action.target.suffix, "capath")
        if isinstance(action, HgBlock):
            assert not action.add
            return "hgrc"
        assert isinstance(action, Run)
        return "git" if action.argv[0] == "git" else "update"
    assert [label(a) for a in trust.plan(SETTINGS, found, PLACES).remove] == expected


class NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Settings]:
    """A TLS server presenting a new stack's certificate on a free port (every path: 404), and its settings."""
    pending = Settings(data_dir=tmp_path / "var")
    tls.ensure_certificates(pending.tls_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pending.tls_dir / "server.pem")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield replace(pending, ports=replace(pending.ports, https=httpd.server_address[1]))
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def places(tmp_path: Path) -> Places:
    """A home and a system store of the test's own; the real update-ca-certificates rebuilds its bundle.

    Its hooks directory holds one hook that records being run: hostd's steps must run none.
    """
    if UPDATE is None:
        pytest.skip("update-ca-certificates is not installed (Debian: ca-certificates)")
    local, etc, hooks = tmp_path / "local-certs", tmp_path / "etc-ssl-certs", tmp_path / "hooks"
    for directory in (local, etc, hooks, tmp_path / "home"):
        directory.mkdir()
    (hooks / "record").write_text(f"#!/bin/sh\ncat >> {tmp_path / 'hook-ran'}\n")
    (hooks / "record").chmod(0o755)
    return Places(home=tmp_path / "home", system_certs=local, system_bundle=etc / "ca-certificates.crt",
                  hg_system=tmp_path / "etc-mercurial" / "hgrc.d",
                  update=(UPDATE, "--localcertsdir", str(local), "--etccertsdir", str(etc), "--hooksdir", str(hooks)))


def clients(settings: Settings, places: Places, bundle: Path, hgrc: Path | None = None) -> tuple[str, str]:
    """What real git and hg say when they reach the server (a 404 once TLS is verified)."""
    env = dict(os.environ, HOME=str(places.home), GIT_SSL_CAINFO=str(bundle), GIT_TERMINAL_PROMPT="0")
    for name in ("HGRCPATH", "GIT_CONFIG_GLOBAL", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        env.pop(name, None)
    if hgrc is not None:
        env["HGRCPATH"] = str(hgrc)
    url = f"{settings.base_url}/demo/hello"
    git = subprocess.run(["git", "ls-remote", url + ".git"], env=env, capture_output=True, text=True, timeout=60)
    hg = subprocess.run([HG, "identify", url], env=env, capture_output=True, text=True, timeout=60)
    return git.stderr, hg.stderr + hg.stdout


def test_install_for_this_user_survives_git_ssl_cainfo_and_remove_undoes_it(server: Settings,
                                                                            places: Places) -> None:
    git, hg = clients(server, places, SYSTEM_BUNDLE)
    assert "certificate" in git and "CERTIFICATE_VERIFY_FAILED" in hg
    for _ in range(2):  # twice: the second changes nothing
        found = trust.facts(server, places, root=False)
        trust.apply(trust.plan(server, found, places).install, places)
    assert trust.facts(server, places, root=False).for_user
    assert (places.home / ".hgrc").read_text() == trust.hg_user_block(server)
    assert (places.home / ".gitconfig").read_text().count("sslCAPath") == 1
    git, hg = clients(server, places, SYSTEM_BUNDLE)
    assert "certificate" not in git and "not found" in git
    assert "HTTP Error 404" in hg
    trust.apply(trust.plan(server, trust.facts(server, places, root=False), places).remove, places)
    assert (places.home / ".hgrc").read_text() == "" and "sslCAPath" not in (places.home / ".gitconfig").read_text()
    assert not trust.capath(server).exists()
    git, hg = clients(server, places, SYSTEM_BUNDLE)
    assert "certificate" in git and "CERTIFICATE_VERIFY_FAILED" in hg


def test_install_into_a_system_store_and_remove_only_ours(server: Settings, places: Places) -> None:
    neighbour = places.system_certs / "site.crt"  # another administrator's certificate stays
    shutil.copy(tls.ensure_certificates(server.data_dir / "other").ca_cert, neighbour)
    ca = tls.tls_files(server.tls_dir).ca_cert.read_text()
    for _ in range(2):
        found = trust.facts(server, places, root=True)
        assert found.scoped
        trust.apply(trust.plan(server, found, places).install, places)
    assert places.system_bundle.read_text().count(ca) == 1
    rc = places.hg_system / f"{trust.name(server)}.rc"
    assert rc.read_text() == trust.hg_system_text(server, places)
    assert tls.verify_problem(server, cafile=places.system_bundle) is None
    # hg with certifi (this virtualenv has it) reads the bundle through the hg file; git through GIT_SSL_CAINFO.
    git, hg = clients(server, places, places.system_bundle, hgrc=rc)
    assert "certificate" not in git and "not found" in git and "HTTP Error 404" in hg
    found = trust.facts(server, places, root=True)
    trust.apply(trust.plan(server, found, places).remove, places)
    assert sorted(p.name for p in places.system_certs.iterdir()) == ["site.crt"]
    assert not places.hg_system.parent.exists()  # hostd made /etc/mercurial/hgrc.d: it goes with the file
    etc = places.system_bundle.parent
    assert [p.name for p in etc.iterdir() if p.is_symlink() and not p.exists()] == []  # no link to our file is left
    assert not (server.data_dir.parent / "hook-ran").exists()  # Java's keystore would keep a removed CA
    assert ca not in places.system_bundle.read_text() and neighbour.read_text() in places.system_bundle.read_text()
    assert tls.verify_problem(server, cafile=places.system_bundle) is not None
