"""Throw-away mTLS certificates, ES256 token key, JWKS and policy for the bench's secure mode."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from mailaccounts_server import devcerts

PLAINTEXT = "plaintext"
MTLS_JWT = "mtls+jwt"
SECURITY_MODES = (PLAINTEXT, MTLS_JWT)
CLIENT_IDENTITY = "spiffe://bench/client"
ISSUER = "https://issuer.bench.invalid"
AUDIENCE = "mailaccounts-bench"
KEY_ID = "bench-es256"
# Long enough for any run: the server caches the verified token until it expires.
TOKEN_LIFETIME_S = 24 * 3600


@dataclass(frozen=True)
class ClientTls:
    """What the load generator needs for mTLS channels; PEM bytes, so it pickles to the child."""

    root_certificates: bytes
    private_key: bytes
    certificate_chain: bytes

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


@dataclass(frozen=True)
class MtlsJwt:
    """The files and keys of one mtls+jwt setup, written under `directory`."""

    directory: Path
    client: ClientTls
    signing_key: ec.EllipticCurvePrivateKey

    @property
    def tls_args(self) -> list[str]:
        """Server flags for mutual TLS; the service and the TLS echo take the same ones."""
        d = self.directory
        return [
            "--tls-cert", str(d / "server.pem"),
            "--tls-key", str(d / "server.key"),
            "--client-ca", str(d / "ca.pem"),
        ]  # fmt: skip

    @property
    def service_args(self) -> list[str]:
        d = self.directory
        return [
            *self.tls_args,
            "--auth", MTLS_JWT,
            "--policy", str(d / "policy.toml"),
            "--jwt-jwks", str(d / "jwks.json"),
            "--jwt-issuer", ISSUER,
            "--jwt-audience", AUDIENCE,
        ]  # fmt: skip

    def token(self, tenant_id: str, user_id: str) -> str:
        """An ES256 bearer token naming the tenant (tenant_id) and user (sub)."""
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user_id,
            "tenant_id": tenant_id,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
        }
        return jwt.encode(claims, self.signing_key, algorithm="ES256", headers={"kid": KEY_ID})


def create_mtls_jwt(directory: Path) -> MtlsJwt:
    """A fresh CA, server and client certificates, token key, JWKS and policy in `directory`.

    The directory lives in the bench's mkdtemp workdir (mode 0700), so the keys stay private.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = devcerts.new_ca("mailaccounts bench CA", days=2)
    server = devcerts.issue(
        ca, "localhost", dns=["localhost"], ips=["127.0.0.1"], server=True, days=2
    )
    client = devcerts.issue(
        ca, "mailaccounts bench client", uris=[CLIENT_IDENTITY], client=True, days=2
    )
    signing_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.get_algorithm_by_name("ES256").to_jwk(signing_key.public_key()))
    jwk.update(kid=KEY_ID, use="sig", alg="ES256")
    policy = f'[identities."{CLIENT_IDENTITY}"]\ntenants = ["*"]\nroles = ["accounts"]\n'
    files = {
        "ca.pem": ca.cert_pem,
        "server.pem": server.cert_pem,
        "server.key": server.key_pem,
        "jwks.json": json.dumps({"keys": [jwk]}).encode(),
        "policy.toml": policy.encode(),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return MtlsJwt(
        directory=directory,
        client=ClientTls(ca.cert_pem, client.key_pem, client.cert_pem),
        signing_key=signing_key,
    )
