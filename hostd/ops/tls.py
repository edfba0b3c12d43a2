"""The certificate HAProxy presents: a local certificate authority's, or the operator's.

Without ``HOSTD_TLS_CERT``/``HOSTD_TLS_KEY`` the stack makes its own CA and
server certificate; clients trust ``ca.pem`` (``hostd trust``, :mod:`hostd.ops.trust`).
The server certificate names ``localhost`` as a DNS name and each IP
address twice, as an *IP address* subject alternative name (what OpenSSL,
and so git and curl, match for an IP host) and as a *DNS* name: Mercurial
does its own host matching and only reads DNS entries, so without the DNS
form it refuses ``https://127.0.0.1/...`` ("certificate is for localhost").
The CA is name-constrained to those same names, so a machine that trusts it
(its system store, say) trusts it for this stack and nothing else.

With them, HAProxy's one PEM file is built from the operator's chain and key
at every start and reload (:func:`build_served_pem`), after checking that the
key is the certificate's and the chain is in order and current.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hostd.ops.haproxy import StackError
from hostd.settings import Settings

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


def _constraints(hosts: tuple[str, ...]) -> x509.NameConstraints:
    """The CA may vouch for these names alone: a CA in a system trust store is trusted for every site otherwise."""
    permitted: list[x509.GeneralName] = []
    for host in hosts:
        try:
            permitted.append(x509.IPAddress(ipaddress.ip_network(host)))
        except ValueError:
            pass
        permitted.append(x509.DNSName(host))
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)


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
        .add_extension(_constraints(hosts), critical=True)
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


def served_pem(settings: Settings) -> Path:
    """HAProxy's certificate file (``HOSTD_TLS_PEM``): the operator's, combined, or the stack's own."""
    return settings.tls_dir / ("operator.pem" if settings.tls_cert is not None else "server.pem")


def environment(settings: Settings) -> dict[str, str]:
    """HAProxy's ``HOSTD_TLS_PEM``, and the operator's files it is built from (for ``stack env``'s units)."""
    env = {"HOSTD_TLS_PEM": str(served_pem(settings))}
    if settings.tls_cert is not None and settings.tls_key is not None:
        env.update(HOSTD_TLS_CERT=str(settings.tls_cert), HOSTD_TLS_KEY=str(settings.tls_key))
    return env


def build_served_pem(settings: Settings) -> Path:
    """Write HAProxy's file from ``HOSTD_TLS_CERT`` and ``HOSTD_TLS_KEY``, if given; its path either way.

    At every start and reload, so a renewed certificate is served from then on. StackError, in
    one line naming the variable, for a file that cannot be read or parsed, a key that is not
    the certificate's, a chain out of order, or an expired certificate: HAProxy would start and
    every client would fail.
    """
    target = served_pem(settings)
    if settings.tls_cert is None or settings.tls_key is None:
        return target
    chain = _operator_chain(settings.tls_cert)
    key = _operator_key(settings.tls_key)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise StackError(f"HOSTD_TLS_KEY ({settings.tls_key}) is not the key of HOSTD_TLS_CERT's certificate "
                         f"({chain[0].subject.rfc4514_string()})")
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    settings.tls_dir.mkdir(parents=True, exist_ok=True)
    staged = target.with_suffix(".tmp")
    _write_private(staged, b"".join(cert.public_bytes(pem) for cert in chain) + key_pem)
    staged.replace(target)
    return target


def _read(name: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise StackError(f"{name}: cannot read {path}: {error.strerror}") from None


def _operator_chain(path: Path) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(_read("HOSTD_TLS_CERT", path))
    except ValueError:
        raise StackError(f"HOSTD_TLS_CERT: {path} holds no PEM certificate") from None
    for cert, issuer in zip(chain, chain[1:], strict=False):
        if cert.issuer != issuer.subject:
            raise StackError(f"HOSTD_TLS_CERT: {path} is out of order: the server's certificate first, "
                             f"then each one's issuer ({cert.issuer.rfc4514_string()} is not next)")
    if chain[0].not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        raise StackError(f"HOSTD_TLS_CERT: {path} expired on {chain[0].not_valid_after_utc:%Y-%m-%d}")
    return chain


def _operator_key(path: Path) -> PrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(_read("HOSTD_TLS_KEY", path), password=None)
    except TypeError:
        raise StackError(f"HOSTD_TLS_KEY: {path} is encrypted; HAProxy needs the key without a passphrase") from None
    except ValueError:
        raise StackError(f"HOSTD_TLS_KEY: {path} holds no PEM private key") from None
    return key


def client_context(settings: Settings) -> ssl.SSLContext:
    """How the stack checks its own HAProxy: against its CA, or pinned to the operator's certificate.

    The check dials the bind address, which the operator's certificate need not name: what it
    asks is that HAProxy presents that very certificate, so the chain's own certificates are the
    trust anchors (a partial chain) and the host name is not matched.
    """
    if settings.tls_cert is None:
        return ssl.create_default_context(cafile=str(tls_files(settings.tls_dir).ca_cert))
    context = ssl.create_default_context(cafile=str(settings.tls_cert))
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def verify_problem(settings: Settings, cafile: Path | None = None) -> str | None:
    """Why a client would refuse the certificate the stack serves, for its public host; None if it accepts it.

    The client trusts this machine's default store (as git, hg and curl do), or ``cafile`` alone.
    Checked in memory, with OpenSSL on both ends of a handshake: no socket, no stack running.
    """
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if settings.tls_cert is not None and settings.tls_key is not None:
        server.load_cert_chain(settings.tls_cert, settings.tls_key)
    else:
        server.load_cert_chain(tls_files(settings.tls_dir).server_pem)
    client = ssl.create_default_context(cafile=None if cafile is None else str(cafile))
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, to_server, server_hostname=settings.public_host)
    server_end = server.wrap_bio(to_server, to_client, server_side=True)
    for _ in range(8):
        finished = 0
        for end in (client_end, server_end):
            try:
                end.do_handshake()
                finished += 1
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as error:
                return str(error.verify_message)
            except ssl.SSLError as error:
                return error.reason or str(error)
        if finished == 2:
            return None
    return "the TLS handshake did not finish"


def ca_is_scoped(ca_cert: Path) -> bool:
    """Whether the CA in ``ca_cert`` can vouch only for the names it lists (name constraints).

    CAs made before hostd constrained them cannot say so, and stay out of system-wide trust stores.
    """
    cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bool(constraints.permitted_subtrees)
