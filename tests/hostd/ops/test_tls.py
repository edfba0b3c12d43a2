"""The certificate HAProxy serves: the local CA's limits, and the operator's files checked before they are used."""

from __future__ import annotations

import datetime
import os
import ssl
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hostd.ops import tls
from hostd.ops.haproxy import StackError
from hostd.settings import Settings

PEM = serialization.Encoding.PEM
NOW = datetime.datetime.now(datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(cn: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey, *,
          ca: bool = False, expires: datetime.datetime | None = None) -> x509.Certificate:
    """A certificate for ``cn`` (also its DNS name, unless a CA), signed by ``issuer_key``."""
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(days=2))
               .not_valid_after(expires or NOW + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    crypt = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, crypt)


@pytest.fixture
def operator(tmp_path: Path) -> Settings:
    """Settings serving an operator's chain for git.example.com: leaf, intermediate; root in ``root.pem``."""
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = issue("Example Root", root_key, "Example Root", root_key, ca=True)
    mid = issue("Example Intermediate", mid_key, "Example Root", root_key, ca=True)
    leaf = issue("git.example.com", leaf_key, "Example Intermediate", mid_key)
    (tmp_path / "root.pem").write_bytes(root.public_bytes(PEM))
    (tmp_path / "fullchain.pem").write_bytes(leaf.public_bytes(PEM) + mid.public_bytes(PEM))
    (tmp_path / "privkey.pem").write_bytes(key_pem(leaf_key))
    return Settings.from_env({"HOSTD_DATA": str(tmp_path / "var"), "HOSTD_PUBLIC_HOST": "git.example.com",
                              "HOSTD_TLS_CERT": str(tmp_path / "fullchain.pem"),
                              "HOSTD_TLS_KEY": str(tmp_path / "privkey.pem")})


def test_the_local_ca_vouches_for_the_stacks_names_alone(tmp_path: Path) -> None:
    """Trusting the stack's CA (a system store does, for every program) trusts it for its names only:
    a certificate its key signs for another site is refused. Without the name constraints it would pass."""
    files = tls.ensure_certificates(tmp_path / "tls", ("git.internal", "localhost", "127.0.0.1", "::1"))
    assert tls.ca_is_scoped(files.ca_cert)
    ca_key = serialization.load_pem_private_key((tmp_path / "tls" / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_name = x509.load_pem_x509_certificate(files.ca_cert.read_bytes()).subject
    forged_key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("bank.example")).issuer_name(ca_name)
            .public_key(forged_key.public_key()).serial_number(1).not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("bank.example")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "forged.pem").write_bytes(cert.public_bytes(PEM))
    (tmp_path / "forged.key").write_bytes(key_pem(forged_key))
    base = Settings(data_dir=tmp_path, public_host="bank.example")
    forging = replace(base, tls_cert=tmp_path / "forged.pem", tls_key=tmp_path / "forged.key")
    assert tls.verify_problem(forging, cafile=files.ca_cert) == "permitted subtree violation"
    # Its own names verify, the IP addresses too.
    for host in ("git.internal", "localhost", "127.0.0.1"):
        assert tls.verify_problem(replace(base, public_host=host), cafile=files.ca_cert) is None


def test_a_ca_made_before_the_constraints_is_not_scoped(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "old.pem").write_bytes(issue("hostd local CA", key, "hostd local CA", key, ca=True).public_bytes(PEM))
    assert not tls.ca_is_scoped(tmp_path / "old.pem")


def test_the_own_certificate_is_not_trusted_by_the_system_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    tls.ensure_certificates(settings.tls_dir)
    assert tls.build_served_pem(settings) == tls.served_pem(settings) == settings.tls_dir / "server.pem"
    assert tls.environment(settings) == {"HOSTD_TLS_PEM": str(settings.tls_dir / "server.pem")}
    assert tls.verify_problem(settings) == "self-signed certificate in certificate chain"
    assert tls.verify_problem(settings, cafile=settings.tls_dir / "ca.pem") is None


def test_the_operators_chain_and_key_make_haproxys_file(operator: Settings, tmp_path: Path) -> None:
    built = tls.build_served_pem(operator)
    assert built == tls.served_pem(operator) == operator.tls_dir / "operator.pem"
    assert tls.environment(operator) == {"HOSTD_TLS_PEM": str(built), "HOSTD_TLS_CERT": str(operator.tls_cert),
                                         "HOSTD_TLS_KEY": str(operator.tls_key)}
    assert os.stat(built).st_mode & 0o777 == 0o600
    text = built.read_bytes()
    assert text.startswith((tmp_path / "fullchain.pem").read_bytes()) and b"PRIVATE KEY" in text
    # What a client of that CA sees for the public host; the system store does not know the CA.
    assert tls.verify_problem(operator, cafile=tmp_path / "root.pem") is None
    assert tls.verify_problem(operator) == "unable to get local issuer certificate"


def test_the_health_check_is_pinned_to_the_operators_certificate(operator: Settings, tmp_path: Path) -> None:
    """It dials the bind address, which the certificate does not name, and still verifies what HAProxy presents."""
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(tls.build_served_pem(operator))
    assert _handshake(tls.client_context(operator), served, "127.0.0.1") is None
    other = Settings(data_dir=tmp_path / "other")
    tls.ensure_certificates(other.tls_dir)
    impostor = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    impostor.load_cert_chain(other.tls_dir / "server.pem")
    assert _handshake(tls.client_context(operator), impostor, "127.0.0.1") is not None


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, host: str) -> str | None:
    up, down = ssl.MemoryBIO(), ssl.MemoryBIO()
    ends = client.wrap_bio(down, up, server_hostname=host), server.wrap_bio(up, down, server_side=True)
    for _ in range(8):
        done = 0
        for end in ends:
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as error:
                return str(error)
        if done == 2:
            return None
    return "unfinished"


def _rewrite(settings: Settings, name: str, data: bytes) -> None:
    path = settings.tls_cert if name == "cert" else settings.tls_key
    assert path is not None
    path.write_bytes(data)


def test_a_key_of_another_certificate_is_refused_in_one_line(operator: Settings) -> None:
    _rewrite(operator, "key", key_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(StackError) as refused:
        tls.build_served_pem(operator)
    assert str(refused.value) == (f"HOSTD_TLS_KEY ({operator.tls_key}) is not the key of HOSTD_TLS_CERT's "
                                  "certificate (CN=git.example.com)")
    assert not tls.served_pem(operator).exists()


def _chain_reversed(settings: Settings) -> bytes:
    assert settings.tls_cert is not None
    leaf, mid = x509.load_pem_x509_certificates(settings.tls_cert.read_bytes())
    return mid.public_bytes(PEM) + leaf.public_bytes(PEM)


def _expired(settings: Settings) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    assert settings.tls_key is not None
    settings.tls_key.write_bytes(key_pem(key))
    expired = issue("git.example.com", key, "git.example.com", key, expires=NOW - datetime.timedelta(days=1))
    return expired.public_bytes(PEM)


REFUSALS = {
    "no certificate": ("cert", lambda s: b"not a certificate\n", "HOSTD_TLS_CERT: {cert} holds no PEM certificate"),
    "no key": ("key", lambda s: b"", "HOSTD_TLS_KEY: {key} holds no PEM private key"),
    "encrypted key": ("key", lambda s: key_pem(ec.generate_private_key(ec.SECP256R1()), b"secret"),
                      "HOSTD_TLS_KEY: {key} is encrypted; HAProxy needs the key without a passphrase"),
    "out of order": ("cert", _chain_reversed, "HOSTD_TLS_CERT: {cert} is out of order: the server's certificate "
                     "first, then each one's issuer (CN=Example Root is not next)"),
    "expired": ("cert", _expired, f"HOSTD_TLS_CERT: {{cert}} expired on {NOW - datetime.timedelta(days=1):%Y-%m-%d}"),
}


@pytest.mark.parametrize(("which", "content", "message"), REFUSALS.values(), ids=REFUSALS.keys())
def test_unusable_operator_files_are_refused_in_one_line(operator: Settings, which: str, content: object,
                                                         message: str) -> None:
    assert callable(content)
    _rewrite(operator, which, content(operator))
    with pytest.raises(StackError) as refused:
        tls.build_served_pem(operator)
    assert str(refused.value) == message.format(cert=operator.tls_cert, key=operator.tls_key)


def test_an_unreadable_file_is_named(operator: Settings) -> None:
    assert operator.tls_key is not None
    operator.tls_key.unlink()
    with pytest.raises(StackError, match=f"HOSTD_TLS_KEY: cannot read {operator.tls_key}: No such file"):
        tls.build_served_pem(operator)
