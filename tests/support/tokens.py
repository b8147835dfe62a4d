"""Signing keys and caller tokens for tests: a real RSA key, a JWKS file, signed JWTs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://issuer.test"
AUDIENCE = "mailaccounts"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class TokenIssuer:
    """An issuer with an RSA and an EC key published in `jwks_file`."""

    jwks_file: Path
    rsa_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    ec_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def __post_init__(self) -> None:
        keys = []
        for kid, alg, public in (
            ("rsa-1", "RS256", self.rsa_key.public_key()),
            ("ec-1", "ES256", self.ec_key.public_key()),
        ):
            algorithm = jwt.get_algorithm_by_name(alg)
            jwk = json.loads(algorithm.to_jwk(public))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": alg})
        self.jwks_file.write_text(json.dumps({"keys": keys}))

    def claims(self, tenant: str, user: str, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user,
            "tenant_id": tenant,
            "iat": now,
            "exp": now + 300,
        }
        base.update(extra)
        return {k: v for k, v in base.items() if v is not None}

    def token(self, tenant: str, user: str, *, alg: str = "RS256", **extra: Any) -> str:
        key: Any = self.rsa_key if alg.startswith(("RS", "PS")) else self.ec_key
        kid = "rsa-1" if key is self.rsa_key else "ec-1"
        return jwt.encode(self.claims(tenant, user, **extra), key, algorithm=alg,
                          headers={"kid": kid})  # fmt: skip

    def unsigned_token(self, tenant: str, user: str) -> str:
        """`alg: none`: a token with no signature at all."""
        header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).encode())
        payload = _b64(json.dumps(self.claims(tenant, user)).encode())
        return f"{header}.{payload}."

    def hs256_with_public_key(self, tenant: str, user: str) -> str:
        """The classic confusion attack: HMAC-SHA256 keyed with the published RSA public key."""
        secret = self.rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        payload = _b64(json.dumps(self.claims(tenant, user)).encode())
        signing_input = f"{header}.{payload}".encode()
        signature = _b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"


@pytest.fixture(scope="session")
def token_issuer(tmp_path_factory: pytest.TempPathFactory) -> TokenIssuer:
    return TokenIssuer(tmp_path_factory.mktemp("jwks") / "jwks.json")
