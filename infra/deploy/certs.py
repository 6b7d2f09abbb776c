"""A private certificate authority and the certificates NATS TLS needs (``lintas infra certs``).

For local testing and small deployments: a CA, one server certificate for every node (its
names and addresses as subject alternative names, usable for client connections, for
routes between nodes and for leaf nodes, which is why it also carries the clientAuth
usage: a route's node presents it as a client), and client certificates for servers that
verify clients. Keys are ECDSA P-256, written 0600; nothing here is ever committed. A
production CA is an organisation's own: bring its certificates and point the configs at them.

Files in the output directory::

    ca.pem  ca-key.pem                the CA (reused if present, to issue more)
    server.pem  server-key.pem        the nodes' certificate
    client-<name>.pem  client-<name>-key.pem
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lintas.contracts.errors import PermanentError
from lintas.infra.files import write_private

__all__ = ["CertError", "IssuedCerts", "issue_certs"]

_CA_DAYS = 3650
_LEAF_DAYS = 825  # the longest a browser-era client still accepts; NATS does not mind
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


class CertError(PermanentError):
    """A certificate or key would be overwritten, or the CA found cannot be used."""


@dataclass(frozen=True, slots=True)
class IssuedCerts:
    ca: Path
    server: Path | None
    clients: dict[str, Path]
    made_ca: bool


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lintas"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _fresh(*paths: Path) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise CertError(f"{', '.join(existing)} exist: certificates and keys are never overwritten")


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if not cert_path.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CertError(f"cannot use the CA in {directory}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{key_path} is not an EC key made by lintas")
    return cert, key


def _make_ca(
    directory: Path, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    _fresh(directory / "ca.pem", directory / "ca-key.pem")
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("lintas private CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / "ca-key.pem", key)
    _write_cert(directory / "ca.pem", cert)
    return cert, key


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _issue(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    common_name: str,
    hosts: Sequence[str],
    usages: list[x509.ObjectIdentifier],
    cert_path: Path,
    key_path: Path,
    now: dt.datetime,
) -> None:
    _fresh(cert_path, key_path)
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    _write_key(key_path, key)
    _write_cert(cert_path, builder.sign(ca_key, hashes.SHA256()))


def issue_certs(
    directory: Path,
    *,
    hosts: Sequence[str] = (),
    clients: Sequence[str] = (),
    server: bool = True,
    now: dt.datetime | None = None,
) -> IssuedCerts:
    """Make (or reuse) the CA in ``directory``; issue the server certificate for
    ``hosts`` (plus localhost and the loopback addresses) and a certificate per client."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    moment = now or dt.datetime.now(dt.UTC)
    ca = _load_ca(directory)
    made_ca = ca is None
    if ca is None:
        ca = _make_ca(directory, moment)
    server_path: Path | None = None
    if server:
        server_path = directory / "server.pem"
        _issue(
            ca,
            "lintas nats server",
            [*DEFAULT_HOSTS, *hosts],
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            server_path,
            directory / "server-key.pem",
            moment,
        )
    issued: dict[str, Path] = {}
    for client in clients:
        path = directory / f"client-{client}.pem"
        _issue(
            ca,
            client,
            [],
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            path,
            directory / f"client-{client}-key.pem",
            moment,
        )
        issued[client] = path
    return IssuedCerts(directory / "ca.pem", server_path, issued, made_ca)
