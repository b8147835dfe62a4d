"""Throw-away X.509 CAs and leaf certificates for development and tests (never production)."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_CLIENT_IDENTITY = "spiffe://mailaccounts.local/dev/client"

# Backdate the start of validity so a peer whose clock is slightly behind still accepts the cert.
_CLOCK_SKEW = timedelta(minutes=5)
_KEY_MODE = 0o600
_CERT_MODE = 0o644
_DIR_MODE = 0o700


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as PEM and as objects (the latter for signing more)."""

    cert_pem: bytes
    key_pem: bytes  # PKCS8, unencrypted
    certificate: x509.Certificate = field(repr=False, compare=False)
    private_key: ec.EllipticCurvePrivateKey = field(repr=False, compare=False)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(
    not_before: datetime | None, not_after: datetime | None, days: int
) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else datetime.now(UTC) - _CLOCK_SKEW
    end = not_after if not_after is not None else start + timedelta(days=days)
    if end <= start:
        raise ValueError(f"not_after ({end}) must be later than not_before ({start})")
    return start, end


def _issued(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    return Issued(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate=cert,
        private_key=key,
    )


def new_ca(common_name: str, *, days: int = 30) -> Issued:
    """A self-signed EC P-256 CA that may sign leaf certificates (but no intermediate CAs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(None, None, days)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _issued(cert, key)


def issue(
    ca: Issued,
    common_name: str,
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    uris: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    days: int = 30,
) -> Issued:
    """An EC P-256 leaf certificate signed by `ca`; omits the SAN extension when no SAN is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(not_before, not_after, days)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    names: list[x509.GeneralName] = [
        *(x509.DNSName(name) for name in dns),
        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips),
        *(x509.UniformResourceIdentifier(uri) for uri in uris),
    ]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    usages = [
        *([ExtendedKeyUsageOID.SERVER_AUTH] if server else []),
        *([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []),
    ]
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return _issued(builder.sign(ca.private_key, hashes.SHA256()), key)


def _toml_string(value: str) -> str:
    # JSON string escapes (\" \\ \n \uXXXX ...) are all valid in a TOML basic string; without
    # ensure_ascii=False, JSON would emit surrogate pairs, which TOML rejects.
    return json.dumps(value, ensure_ascii=False)


def _policy_toml(identity: str) -> bytes:
    return (
        f"[identities.{_toml_string(identity)}]\n"
        'tenants = ["*"]\n'
        'roles = ["accounts", "tenant_admin"]\n'
    ).encode()


def _write(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, mode)
    try:
        # os.open's mode is masked by the umask and ignored for an existing file: force it.
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def write_dev_certs(
    directory: Path,
    *,
    client_identity: str = DEFAULT_CLIENT_IDENTITY,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write a dev CA, a localhost server cert, a client cert and a policy granting the client all.

    Returns paths keyed "ca", "server_cert", "server_key", "client_cert", "client_key", "policy".
    Raises FileExistsError, before writing anything, if a file exists and `overwrite` is false.
    """
    paths = {
        "ca": directory / "ca.pem",
        "server_cert": directory / "server.pem",
        "server_key": directory / "server.key",
        "client_cert": directory / "client.pem",
        "client_key": directory / "client.key",
        "policy": directory / "policy.toml",
    }
    if not overwrite:
        existing = [str(path) for path in paths.values() if path.exists()]
        if existing:
            raise FileExistsError(f"refusing to overwrite {', '.join(existing)}")
    if not directory.exists():
        directory.mkdir(mode=_DIR_MODE, parents=True)
        directory.chmod(_DIR_MODE)  # mkdir's mode is masked by the umask

    ca = new_ca("mailaccounts dev CA")
    server = issue(ca, "localhost", dns=["localhost"], ips=["127.0.0.1", "::1"], server=True)
    client = issue(ca, "mailaccounts dev client", uris=[client_identity], client=True)
    files = {
        "ca": (ca.cert_pem, _CERT_MODE),
        "server_cert": (server.cert_pem, _CERT_MODE),
        "server_key": (server.key_pem, _KEY_MODE),
        "client_cert": (client.cert_pem, _CERT_MODE),
        "client_key": (client.key_pem, _KEY_MODE),
        "policy": (_policy_toml(client_identity), _CERT_MODE),
    }
    for name, (data, mode) in files.items():
        _write(paths[name], data, mode, overwrite=overwrite)
    return paths
