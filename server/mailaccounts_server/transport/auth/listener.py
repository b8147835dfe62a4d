"""What the listener may be: start-up refusals of unsafe configurations, and TLS credentials
whose certificate files are re-read when they change (rotation without a restart)."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from pathlib import Path

import grpc

from mailaccounts_server.config import Settings
from mailaccounts_server.credentials import ConfigurationError

_LOG = logging.getLogger(__name__)
AUTH_MODES = ("none", "mtls", "jwt", "mtls+jwt")


def listen_host(address: str) -> str:
    """The host part of a gRPC listen address ("[::1]:50051" -> "::1")."""
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host.strip("[]")


def is_loopback(address: str) -> bool:
    """True when only this machine can reach `address` (localhost, 127.0.0.0/8, ::1)."""
    host = listen_host(address).lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_security(settings: Settings) -> list[str]:
    """Refuses (ConfigurationError) any configuration where a network caller could act for a
    tenant without authenticating, or that cannot work; returns warnings to log."""
    s = settings
    warnings: list[str] = []
    if s.auth not in AUTH_MODES:
        raise ConfigurationError(f"--auth must be one of {', '.join(AUTH_MODES)}, not {s.auth!r}")
    if bool(s.tls_cert) != bool(s.tls_key):
        raise ConfigurationError("--tls-cert and --tls-key go together: give both or neither")
    tls = bool(s.tls_cert)
    if s.client_ca and not tls:
        raise ConfigurationError("--client-ca needs --tls-cert and --tls-key (mutual TLS)")
    if "mtls" in s.auth:
        if not s.client_ca:
            raise ConfigurationError(
                f"--auth {s.auth} needs --client-ca (and --tls-cert/--tls-key)"
            )
        if not s.policy_file:
            raise ConfigurationError(
                f"--auth {s.auth} needs --policy: the file that maps client identities to tenants"
            )
    if "jwt" in s.auth:
        missing = [
            flag
            for flag, value in (
                ("--jwt-jwks", s.jwt_jwks),
                ("--jwt-issuer", s.jwt_issuer),
                ("--jwt-audience", s.jwt_audience),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(f"--auth {s.auth} needs {', '.join(missing)}")
    loopback = is_loopback(s.listen)
    if not tls and not loopback:
        if not s.allow_plaintext:
            raise ConfigurationError(
                f"plaintext on {s.listen} is reachable from the network: give --tls-cert and "
                "--tls-key, listen on loopback, or pass --allow-plaintext behind a proxy or mesh "
                "sidecar that terminates (m)TLS"
            )
        warnings.append(
            f"serving plaintext on non-loopback {s.listen} (--allow-plaintext): only safe "
            "behind a sidecar or proxy that terminates mTLS"
        )
    if s.auth == "none":
        if s.production:
            raise ConfigurationError(
                "--production refuses --auth none (anyone reaching the port could act for any "
                "tenant): use --auth mtls, jwt or mtls+jwt"
            )
        if not loopback and not s.allow_plaintext:
            raise ConfigurationError(
                f"--auth none on {s.listen} lets any network caller act for any tenant: use "
                "--auth mtls, jwt or mtls+jwt, or --allow-plaintext behind an authenticating proxy"
            )
        if not loopback:
            warnings.append("--auth none: x-tenant-id and x-user-id are believed as sent")
    if s.production and s.reflection_on:
        warnings.append("reflection is on in production (--reflection)")
    return warnings


class ReloadingServerCredentials:
    """grpc dynamic server credentials over certificate files: each new handshake checks the
    files' modification times and, when they changed, serves the new certificate (and client
    CA). A half-written pair (key and certificate not matching yet) keeps the old one."""

    def __init__(self, cert: str, key: str, client_ca: str | None) -> None:
        self._paths = [Path(p) for p in (cert, key, client_ca) if p]
        self._cert, self._key = Path(cert), Path(key)
        self._client_ca = Path(client_ca) if client_ca else None
        self._lock = threading.Lock()
        self._stamp = self._stat()
        initial = self._load()
        self.credentials = grpc.dynamic_ssl_server_credentials(
            initial,
            self._fetch,  # type: ignore[arg-type]  # grpc accepts None: "keep the current one"
            require_client_authentication=self._client_ca is not None,
        )

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        try:
            return tuple(
                (st.st_mtime_ns, st.st_size, st.st_ino) for st in (os.stat(p) for p in self._paths)
            )
        except OSError as exc:
            raise ConfigurationError(f"TLS file unreadable: {exc}") from None

    def _load(self) -> grpc.ServerCertificateConfiguration:
        try:
            cert, key = self._cert.read_bytes(), self._key.read_bytes()
            ca = self._client_ca.read_bytes() if self._client_ca else None
        except OSError as exc:
            raise ConfigurationError(f"TLS file unreadable: {exc}") from None
        _check_pair(cert, key)
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Runs in a gRPC core thread on each handshake; None keeps the current configuration.
        with self._lock:
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return None
                config = self._load()
            except ConfigurationError as exc:
                _LOG.warning("TLS files changed but cannot be used yet (%s); keeping the old", exc)
                return None
            self._stamp = stamp
            _LOG.info("TLS certificate files changed: serving the new certificate")
            return config


def _check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """Refuses a certificate whose public key is not the key's (a rotation caught halfway)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise ConfigurationError(f"TLS certificate or key is not valid PEM: {exc}") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, pub) != key.public_key().public_bytes(der, pub):
        raise ConfigurationError("the TLS certificate does not match the TLS key")
