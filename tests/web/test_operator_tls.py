"""TLS in production: the stack serves the operator's certificate (``HOSTD_TLS_CERT``/``HOSTD_TLS_KEY``).

A real stack started with an operator's chain and key: HAProxy presents that
certificate (the stack's own health check is pinned to it), a plain clone
verifies it against the operator's CA, a renewed certificate is served from
the next reload, and a key that is not the certificate's stops ``make up`` in
one line before anything starts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hostd.ops import stack
from hostd.settings import Settings
from tests.e2e.stackfixture import start_stack, stop_stack
from tests.ports import free_ports

PEM = serialization.Encoding.PEM
NOW = datetime.datetime.now(datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class OperatorCA:
    """An operator's private PKI: a root, and server certificates for 127.0.0.1 issued by it."""

    def __init__(self, root: Path) -> None:
        self.dir = root
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (x509.CertificateBuilder().subject_name(_name("Operator Root")).issuer_name(_name("Operator Root"))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(NOW - datetime.timedelta(days=1))
                     .not_valid_after(NOW + datetime.timedelta(days=90))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        (root / "root.pem").write_bytes(self.cert.public_bytes(PEM))

    def issue(self, serial: int) -> tuple[Path, Path, x509.Certificate]:
        """A server certificate (and its new key) written as certbot would: fullchain.pem, privkey.pem."""
        key = ec.generate_private_key(ec.SECP256R1())
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        cert = (x509.CertificateBuilder().subject_name(_name(f"hostd {serial}")).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(serial)
                .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .sign(self.key, hashes.SHA256()))
        chain, private = self.dir / "fullchain.pem", self.dir / "privkey.pem"
        chain.write_bytes(cert.public_bytes(PEM) + self.cert.public_bytes(PEM))
        private.write_bytes(_key_pem(key))
        return chain, private, cert


def served(settings: Settings) -> x509.Certificate:
    """The certificate HAProxy presents on the HTTPS port."""
    pem = ssl.get_server_certificate((settings.bind, settings.ports.https), timeout=10)
    return x509.load_pem_x509_certificate(pem.encode())


def test_the_stack_serves_the_operators_certificate_and_a_renewal_after_reload(tmp_path: Path) -> None:
    ca = OperatorCA(tmp_path)
    chain, key, first = ca.issue(1)
    (tmp_path / "stack").mkdir()
    running = start_stack(tmp_path / "stack", HOSTD_TLS_CERT=str(chain), HOSTD_TLS_KEY=str(key))
    try:
        settings = running.settings
        assert served(settings) == first
        home = tmp_path / "home"
        home.mkdir()
        env = dict(os.environ, HOME=str(home), GIT_SSL_CAINFO=str(tmp_path / "root.pem"), GIT_TERMINAL_PROMPT="0")
        subprocess.run(["git", "clone", "-q", f"{settings.base_url}/demo/hello.git", str(tmp_path / "hello")],
                       env=env, check=True, capture_output=True, timeout=120)
        assert (tmp_path / "hello" / "README.md").exists()
        _, _, renewed = ca.issue(2)  # certbot renews in place; its deploy hook reloads
        stack.reload_haproxy(settings)
        stack.wait_healthy(settings, timeout=60)
        assert served(settings) == renewed
    finally:
        stop_stack(running)


def test_a_key_that_is_not_the_certificates_stops_make_up_in_one_line(tmp_path: Path) -> None:
    chain, _, _ = OperatorCA(tmp_path).issue(1)
    other = tmp_path / "other.pem"
    other.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    names = [f"HOSTD_{name}_PORT" for name in ("HTTPS", "HTTP", "STATS", "PEERS", "GIT", "HG", "WEB", "MEMCACHED",
                                                 "SSH", "SSH_RELAY", "QUEUE")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTD_")}
    env.update(zip(names, map(str, free_ports(len(names))), strict=True))
    env.update(HOSTD_DATA=str(tmp_path / "var"), HOSTD_TLS_CERT=str(chain), HOSTD_TLS_KEY=str(other))
    done = subprocess.run([sys.executable, "-m", "hostd.ops.stack", "up"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stderr) == (1, f"hostd: HOSTD_TLS_KEY ({other}) is not the key of HOSTD_TLS_CERT's "
                                                 "certificate (CN=hostd 1)\n")
    assert stack.supervisord_pid(Settings.from_env(env)) is None
