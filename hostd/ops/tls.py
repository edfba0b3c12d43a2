"""A local certificate authority and the server certificate HAProxy presents.

Clients verify the server against ``ca.pem`` (git: ``http.sslCAInfo``, hg:
``web.cacerts``). The server certificate names ``localhost`` as a DNS name and each IP
address twice, as an *IP address* subject alternative name (what OpenSSL,
and so git and curl, match for an IP host) and as a *DNS* name: Mercurial
does its own host matching and only reads DNS entries, so without the DNS
form it refuses ``https://127.0.0.1/...`` ("certificate is for localhost").
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the CA certificate and HAProxy's combined certificate+key live."""

    ca_cert: Path
    server_pem: Path


def tls_files(tls_dir: Path) -> TlsFiles:
    """The fixed file names inside a TLS directory."""
    return TlsFiles(ca_cert=tls_dir / "ca.pem", server_pem=tls_dir / "server.pem")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hostd local CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            pass
        names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_certificates(tls_dir: Path, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> TlsFiles:
    """Create the CA and a server certificate once; later calls reuse them.

    The CA key stays in ``ca.key`` (0600) so a server certificate for more
    host names can be issued later without asking clients to trust a new CA.
    """
    files = tls_files(tls_dir)
    if files.ca_cert.exists() and files.server_pem.exists():
        return files
    tls_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    now = datetime.datetime.now(datetime.UTC)
    start = now - datetime.timedelta(minutes=5)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("hostd local CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    key_pem = serialization.PrivateFormat.PKCS8
    nocrypt = serialization.NoEncryption()
    _write_private(tls_dir / "ca.key", ca_key.private_bytes(pem, key_pem, nocrypt))
    _write_private(
        files.server_pem,
        cert.public_bytes(pem) + ca_cert.public_bytes(pem) + key.private_bytes(pem, key_pem, nocrypt),
    )
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    return files
