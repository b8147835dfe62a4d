"""JwtVerifier with real keys and signatures: what it accepts, refuses, caches and refetches."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.server
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from mailaccounts_server.credentials import ConfigurationError
from mailaccounts_server.domain.errors import UnauthenticatedError
from mailaccounts_server.transport.auth import jwt as jwt_auth
from mailaccounts_server.transport.auth.jwt import (
    MAX_TOKEN_BYTES,
    JwtSettings,
    JwtVerifier,
    TokenClaims,
)

NOW = 1_700_000_000.0  # the verifier's clock; far from real time, so only that clock counts
ISSUER = "https://idp.example.test"
AUDIENCE = "mailaccounts"

RsaKey = rsa.RSAPrivateKey
EcKey = ec.EllipticCurvePrivateKey
EdKey = ed25519.Ed25519PrivateKey
PrivateKey = RsaKey | EcKey | EdKey


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Keys:
    rsa: RsaKey
    ec: EcKey
    ed: EdKey
    other_rsa: RsaKey


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
        ed=ed25519.Ed25519PrivateKey.generate(),
        other_rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def public_jwk(key: PrivateKey, kid: str | None, **extra: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        data = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        data = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    assert isinstance(data, dict)
    if kid is not None:
        data["kid"] = kid
    return {**data, **extra}


def jwks_body(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(entries)}).encode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS built without PyJWT, for tokens PyJWT refuses to produce."""
    return ".".join(
        (b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature))
    )


def bearer(token: str) -> str:
    return f"Bearer {token}"


def base_claims(**changes: Any) -> dict[str, Any]:
    """Valid claims; a change to None removes that claim."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u1",
        "tenant_id": "t1",
        "iat": int(NOW),
        "exp": int(NOW) + 300,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


class Env:
    """Keys, a JWKS file holding their public halves, a settable clock and token factories."""

    def __init__(self, tmp_path: Path, keys: Keys) -> None:
        self.keys = keys
        self.clock = Clock()
        self.jwks_path = tmp_path / "jwks.json"
        self.jwks_path.write_bytes(
            jwks_body(
                public_jwk(keys.rsa, "rsa-1"),
                public_jwk(keys.ec, "ec-1"),
                public_jwk(keys.ed, "ed-1"),
            )
        )

    def verifier(self, jwks: str | None = None, **settings: Any) -> JwtVerifier:
        config = JwtSettings(
            jwks=jwks or str(self.jwks_path), issuer=ISSUER, audience=AUDIENCE, **settings
        )
        return JwtVerifier(config, clock=self.clock)

    def token(
        self,
        alg: str = "RS256",
        kid: str | None = "rsa-1",
        key: PrivateKey | None = None,
        **claims: Any,
    ) -> str:
        if key is None:
            key = (
                self.keys.ec
                if alg == "ES256"
                else self.keys.ed
                if alg == "EdDSA"
                else self.keys.rsa
            )
        claims = {"iat": int(self.clock.now), "exp": int(self.clock.now) + 300, **claims}
        headers = {"kid": kid} if kid is not None else None
        return jwt.encode(base_claims(**claims), key, algorithm=alg, headers=headers)


@pytest.fixture
def env(tmp_path: Path, keys: Keys) -> Env:
    return Env(tmp_path, keys)


def verify(verifier: JwtVerifier, authorization: str) -> TokenClaims:
    return asyncio.run(verifier.verify(authorization))


def refusal(verifier: JwtVerifier, authorization: str) -> str:
    with pytest.raises(UnauthenticatedError) as info:
        verify(verifier, authorization)
    return str(info.value)


# --- accepted tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "kid"), [("RS256", "rsa-1"), ("PS256", "rsa-1"), ("ES256", "ec-1"), ("EdDSA", "ed-1")]
)
def test_valid_token_gives_its_claims(env: Env, alg: str, kid: str) -> None:
    token = env.token(alg, kid, roles=["accounts"])
    claims = verify(env.verifier(), f"Bearer {token}")
    assert claims == TokenClaims(
        subject="u1",
        tenant_id="t1",
        user_id="u1",
        roles=("accounts",),
        expires_at=NOW + 300,
    )


def test_bearer_scheme_is_case_insensitive(env: Env) -> None:
    verifier = env.verifier()
    assert verify(verifier, f"bearer {env.token()}").tenant_id == "t1"
    assert verify(verifier, f"BEARER {env.token(sub='u2')}").user_id == "u2"


def test_expiry_and_not_before_within_leeway_are_accepted(env: Env) -> None:
    verifier = env.verifier(leeway_seconds=30)
    assert verify(verifier, f"Bearer {env.token(exp=int(NOW) - 29)}").expires_at == NOW - 29
    assert verify(verifier, f"Bearer {env.token(nbf=int(NOW) + 29)}").tenant_id == "t1"


def test_token_without_kid_uses_the_only_key_for_its_algorithm(env: Env) -> None:
    assert verify(env.verifier(), f"Bearer {env.token(kid=None)}").user_id == "u1"


def test_token_without_kid_is_refused_when_two_keys_fit(env: Env, keys: Keys) -> None:
    env.jwks_path.write_bytes(
        jwks_body(public_jwk(keys.rsa, "rsa-1"), public_jwk(keys.other_rsa, "rsa-2"))
    )
    message = refusal(env.verifier(), f"Bearer {env.token(kid=None)}")
    assert message == "token signing key is unknown"


def test_custom_tenant_and_user_claims(env: Env) -> None:
    verifier = env.verifier(tenant_claim="org", user_claim="uid")
    claims = verify(verifier, f"Bearer {env.token(org='acme', uid='alice', tenant_id=None)}")
    assert (claims.tenant_id, claims.user_id, claims.subject) == ("acme", "alice", "u1")
    assert refusal(verifier, f"Bearer {env.token(uid='alice')}") == (
        "token has no tenant claim 'org'"
    )
    assert refusal(verifier, f"Bearer {env.token(org='acme')}") == "token has no user claim 'uid'"


@pytest.mark.parametrize(
    ("value", "roles"),
    [
        (["accounts", "tenant_admin"], ("accounts", "tenant_admin")),
        ("accounts  sync_worker", ("accounts", "sync_worker")),
        ([], ()),
        (None, None),  # claim absent
    ],
)
def test_roles_claim_list_string_or_absent(
    env: Env, value: Any, roles: tuple[str, ...] | None
) -> None:
    assert verify(env.verifier(), f"Bearer {env.token(roles=value)}").roles == roles


def test_custom_roles_claim(env: Env) -> None:
    verifier = env.verifier(roles_claim="scope")
    claims = verify(verifier, f"Bearer {env.token(scope='accounts', roles=['tenant_admin'])}")
    assert claims.roles == ("accounts",)


def test_private_key_material_in_jwks_is_ignored_and_public_part_works(
    env: Env, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    private = RSAAlgorithm.to_jwk(keys.rsa, as_dict=True)
    assert isinstance(private, dict) and "d" in private
    env.jwks_path.write_bytes(jwks_body({**private, "kid": "rsa-1"}))
    with caplog.at_level(logging.WARNING):
        verifier = env.verifier()
    assert "private key material" in caplog.text
    assert verify(verifier, f"Bearer {env.token()}").tenant_id == "t1"


def test_oct_keys_are_skipped_with_a_warning(
    env: Env, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    secret = b64(b"s" * 32)
    env.jwks_path.write_bytes(
        jwks_body({"kty": "oct", "k": secret, "kid": "hmac"}, public_jwk(keys.rsa, "rsa-1"))
    )
    with caplog.at_level(logging.WARNING):
        verifier = env.verifier()
    assert "'oct'" in caplog.text and secret not in caplog.text
    assert verify(verifier, f"Bearer {env.token()}").tenant_id == "t1"
    hs = jwt.encode(base_claims(), b"s" * 32, algorithm="HS256", headers={"kid": "hmac"})
    assert refusal(verifier, f"Bearer {hs}") == "token algorithm HS256 is not allowed"


# --- refused tokens: each says what is wrong and never quotes the token ----------------------


def hs256_with_public_pem(env: Env) -> str:
    """The classic confusion attack: the RSA public key (which is public) as an HMAC secret."""
    pem = env.keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = b64(json.dumps(base_claims()).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def tampered(env: Env) -> str:
    header, _, signature = env.token().split(".")
    payload = b64(json.dumps(base_claims(tenant_id="someone-else")).encode())
    return f"{header}.{payload}.{signature}"


REFUSALS: list[tuple[str, Callable[[Env], str], str]] = [
    ("not-bearer", lambda e: "Basic dXNlcjpwYXNzd29yZA==", "'Bearer <token>'"),
    ("bearer-alone", lambda e: "Bearer", "'Bearer <token>'"),
    ("bearer-two-words", lambda e: f"Bearer {e.token()} extra", "'Bearer <token>'"),
    ("empty", lambda e: "", "'Bearer <token>'"),
    ("oversize", lambda e: "Bearer " + "A" * (MAX_TOKEN_BYTES + 1), "larger than 8 KiB"),
    ("oversize-header", lambda e: "x" * (MAX_TOKEN_BYTES + 100), "larger than 8 KiB"),
    ("oversize-valid-jws", lambda e: f"Bearer {e.token(pad='p' * 7000)}", "larger than 8 KiB"),
    ("garbage", lambda e: "Bearer not-a-jwt", "token is malformed"),
    ("bad-base64", lambda e: "Bearer a.b.c", "token is malformed"),
    ("non-ascii", lambda e: "Bearer é.é.é", "token is malformed"),
    (
        "alg-none",
        lambda e: bearer(hand_made({"alg": "none"}, base_claims())),
        "algorithm none is not",
    ),
    (
        "hs256-public-pem",
        lambda e: bearer(hs256_with_public_pem(e)),
        "token algorithm HS256 is not allowed",
    ),
    (
        "long-alg-truncated",
        lambda e: bearer(hand_made({"alg": "X" * 50}, base_claims())),
        f"token algorithm {'X' * 20} is not allowed",
    ),
    (
        "unprintable-alg-omitted",
        lambda e: bearer(hand_made({"alg": "R\u00e9S256"}, base_claims())),
        "token algorithm is not allowed",
    ),
    (
        "no-alg",
        lambda e: bearer(hand_made({"typ": "JWT"}, base_claims())),
        "token algorithm is not allowed",
    ),
    (
        "foreign-key-same-kid",
        lambda e: bearer(e.token(key=e.keys.other_rsa)),
        "token signature is invalid",
    ),
    ("tampered-payload", lambda e: bearer(tampered(e)), "token signature is invalid"),
    (
        "rsa-kid-with-es256",
        lambda e: bearer(e.token("ES256", kid="rsa-1")),
        "token signature is invalid",
    ),
    ("unknown-kid", lambda e: bearer(e.token(kid="nope")), "token signing key is unknown"),
    ("expired", lambda e: bearer(e.token(exp=int(NOW) - 31)), "token has expired"),
    ("not-yet-valid", lambda e: bearer(e.token(nbf=int(NOW) + 31)), "token is not yet valid"),
    ("issued-in-future", lambda e: bearer(e.token(iat=int(NOW) + 31)), "token is not yet valid"),
    ("no-exp", lambda e: bearer(e.token(exp=None)), "token has no exp claim"),
    ("exp-not-number", lambda e: bearer(e.token(exp="tomorrow")), "claim 'exp' is not a number"),
    (
        "wrong-audience",
        lambda e: bearer(e.token(aud="other-service")),
        "token has the wrong audience",
    ),
    ("no-audience", lambda e: bearer(e.token(aud=None)), "token has the wrong audience"),
    (
        "wrong-issuer",
        lambda e: bearer(e.token(iss="https://evil.test")),
        "token has the wrong issuer",
    ),
    ("no-issuer", lambda e: bearer(e.token(iss=None)), "token has the wrong issuer"),
    (
        "no-tenant",
        lambda e: bearer(e.token(tenant_id=None)),
        "token has no tenant claim 'tenant_id'",
    ),
    (
        "empty-tenant",
        lambda e: bearer(e.token(tenant_id="")),
        "token has no tenant claim 'tenant_id'",
    ),
    (
        "number-tenant",
        lambda e: bearer(e.token(tenant_id=7)),
        "token has no tenant claim 'tenant_id'",
    ),
    (
        "tenant-space",
        lambda e: bearer(e.token(tenant_id="t 1")),
        "claim 'tenant_id' is not a valid id",
    ),
    (
        "tenant-newline",
        lambda e: bearer(e.token(tenant_id="t1\n")),
        "claim 'tenant_id' is not a valid id",
    ),
    (
        "tenant-129",
        lambda e: bearer(e.token(tenant_id="t" * 129)),
        "claim 'tenant_id' is not a valid id",
    ),
    ("no-user", lambda e: bearer(e.token(sub=None)), "token has no user claim 'sub'"),
    ("user-not-string", lambda e: bearer(e.token(sub=["u1"])), "token has no user claim 'sub'"),
    (
        "roles-not-list",
        lambda e: bearer(e.token(roles=5)),
        "claim 'roles' must be a list of strings",
    ),
    (
        "roles-mixed",
        lambda e: bearer(e.token(roles=["a", 1])),
        "claim 'roles' must be a list of strings",
    ),
]


@pytest.mark.parametrize(
    ("build", "expected"), [(b, x) for _, b, x in REFUSALS], ids=[i for i, _, _ in REFUSALS]
)
def test_refused_token_says_why_and_never_quotes_the_token(
    env: Env, build: Callable[[Env], str], expected: str
) -> None:
    authorization = build(env)
    verifier = env.verifier()
    message = refusal(verifier, authorization)
    assert expected in message
    token = authorization.removeprefix("Bearer ")
    # No 12-character stretch of the token (a base64 segment or the filler) may be quoted back.
    for start in range(len(token) - 11):
        assert token[start : start + 12] not in message
    assert verifier.verify_cached(authorization) is None  # failures are not cached


def test_size_limit_is_checked_before_parsing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_parse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("parsed an oversize token")

    monkeypatch.setattr(jwt, "get_unverified_header", must_not_parse)
    message = refusal(env.verifier(), "Bearer " + "x.y.z" * (MAX_TOKEN_BYTES // 5 + 1))
    assert message == "token is larger than 8 KiB"


def test_key_declaring_an_alg_does_not_verify_another(env: Env, keys: Keys) -> None:
    env.jwks_path.write_bytes(jwks_body(public_jwk(keys.rsa, "rsa-1", alg="RS256")))
    verifier = env.verifier()
    assert verify(verifier, f"Bearer {env.token('RS256')}").tenant_id == "t1"
    assert refusal(verifier, f"Bearer {env.token('PS256')}") == "token signature is invalid"


def test_algorithm_outside_the_configured_ones_is_refused(env: Env) -> None:
    verifier = env.verifier(algorithms=("ES256",))
    assert verify(verifier, f"Bearer {env.token('ES256', 'ec-1')}").tenant_id == "t1"
    assert refusal(verifier, f"Bearer {env.token()}") == "token algorithm RS256 is not allowed"


# --- cache --------------------------------------------------------------------------------------


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def test_repeated_token_is_served_from_cache_without_a_signature_check(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_decodes(monkeypatch)
    verifier = env.verifier()
    authorization = f"Bearer {env.token()}"
    assert verifier.verify_cached(authorization) is None
    first = verify(verifier, authorization)
    second = verify(verifier, authorization)
    assert second is first
    assert verifier.verify_cached(authorization) is first
    assert len(calls) == 1


def test_failed_verification_is_checked_again_each_time(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_decodes(monkeypatch)
    verifier = env.verifier()
    authorization = f"Bearer {env.token(aud='other')}"
    refusal(verifier, authorization)
    refusal(verifier, authorization)
    assert len(calls) == 2


def test_cached_token_is_refused_once_clock_passes_exp_plus_leeway(env: Env) -> None:
    verifier = env.verifier(leeway_seconds=30)
    authorization = f"Bearer {env.token(exp=int(NOW) + 60)}"
    verify(verifier, authorization)
    env.clock.now = NOW + 89
    assert verifier.verify_cached(authorization) is not None
    env.clock.now = NOW + 90
    assert verifier.verify_cached(authorization) is None
    assert refusal(verifier, authorization) == "token has expired"


def test_full_cache_drops_expired_entries_then_the_oldest(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwt_auth, "_CACHE_SIZE", 4)
    monkeypatch.setattr(jwt_auth, "_CACHE_EVICT_TO", 3)
    verifier = env.verifier(leeway_seconds=0)
    short = f"Bearer {env.token(exp=int(NOW) + 10)}"
    older = [f"Bearer {env.token(jti=str(n))}" for n in range(3)]
    for authorization in (short, *older):
        verify(verifier, authorization)
    env.clock.now = NOW + 20  # 'short' has expired; the cache is full
    newest = f"Bearer {env.token(jti='new')}"
    verify(verifier, newest)
    assert all(verifier.verify_cached(a) is not None for a in (*older, newest))
    assert len(verifier._cache) == 4
    verify(verifier, f"Bearer {env.token(jti='newer')}")  # full of live entries: oldest goes
    assert verifier.verify_cached(older[0]) is None
    assert all(verifier.verify_cached(a) is not None for a in (*older[1:], newest))


# --- JWKS from a URL ----------------------------------------------------------------------------


class JwksServer:
    """A real HTTP server on 127.0.0.1 serving whatever body and status the test sets."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.requests = 0
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                state.requests += 1
                self.send_response(state.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(state.body)))
                self.end_headers()
                self.wfile.write(state.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(keys: Keys) -> Iterator[JwksServer]:
    jwks = JwksServer()
    jwks.body = jwks_body(public_jwk(keys.rsa, "rsa-1"))
    yield jwks
    jwks.close()


def test_jwks_from_url_verifies_tokens(env: Env, server: JwksServer) -> None:
    verifier = env.verifier(jwks=server.url)
    assert server.requests == 1
    assert verify(verifier, f"Bearer {env.token()}").tenant_id == "t1"
    assert server.requests == 1


def test_rotated_key_is_picked_up_by_a_refetch_at_most_every_30_s(
    env: Env, server: JwksServer, keys: Keys
) -> None:
    verifier = env.verifier(jwks=server.url)
    server.body = jwks_body(public_jwk(keys.rsa, "rsa-1"), public_jwk(keys.other_rsa, "rsa-2"))
    rotated = f"Bearer {env.token(kid='rsa-2', key=keys.other_rsa)}"
    # Within 30 s of the last fetch an unknown kid does not reach the server.
    assert refusal(verifier, rotated) == "token signing key is unknown"
    assert server.requests == 1
    env.clock.now = NOW + 31
    assert verify(verifier, rotated).tenant_id == "t1"
    assert server.requests == 2
    assert refusal(verifier, f"Bearer {env.token(kid='nope')}") == "token signing key is unknown"
    assert server.requests == 2
    env.clock.now = NOW + 62
    assert refusal(verifier, f"Bearer {env.token(kid='nope')}") == "token signing key is unknown"
    assert server.requests == 3


def test_concurrent_calls_with_a_new_kid_share_one_refetch(
    env: Env, server: JwksServer, keys: Keys
) -> None:
    verifier = env.verifier(jwks=server.url)
    server.body = jwks_body(public_jwk(keys.other_rsa, "rsa-2"))
    env.clock.now = NOW + 31
    tokens = [f"Bearer {env.token(kid='rsa-2', key=keys.other_rsa, jti=str(n))}" for n in range(5)]

    async def all_at_once() -> list[TokenClaims]:
        return await asyncio.gather(*(verifier.verify(t) for t in tokens))

    assert [c.tenant_id for c in asyncio.run(all_at_once())] == ["t1"] * 5
    assert server.requests == 2


def test_keys_older_than_the_refresh_interval_are_refetched(
    env: Env, server: JwksServer, keys: Keys
) -> None:
    verifier = env.verifier(jwks=server.url, jwks_refresh_seconds=600)
    server.body = jwks_body(public_jwk(keys.other_rsa, "rsa-2"))  # rsa-1 retired
    env.clock.now = NOW + 100
    assert verify(verifier, f"Bearer {env.token(jti='a')}").tenant_id == "t1"
    assert server.requests == 1
    env.clock.now = NOW + 601
    assert refusal(verifier, f"Bearer {env.token(jti='b')}") == "token signing key is unknown"
    assert server.requests == 2
    assert verify(verifier, f"Bearer {env.token(kid='rsa-2', key=keys.other_rsa)}").user_id == "u1"


def test_failed_refetch_keeps_the_old_keys(
    env: Env, server: JwksServer, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = env.verifier(jwks=server.url, jwks_refresh_seconds=600)
    server.status = 500
    env.clock.now = NOW + 601
    with caplog.at_level(logging.WARNING):
        assert verify(verifier, f"Bearer {env.token()}").tenant_id == "t1"
    assert server.requests == 2
    assert "keeping the 1 key(s)" in caplog.text


def test_unreachable_jwks_url_at_start_is_a_configuration_error(env: Env) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigurationError, match=r"^--jwt-jwks: cannot read http://127\.0\.0\.1"):
        env.verifier(jwks=f"http://127.0.0.1:{port}/jwks.json")


# --- configuration errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        (b"{not json", "is not valid JSON"),
        (b'{"keys": {}}', "is not a JWKS"),
        (b"[]", "is not a JWKS"),
        (b'{"keys": []}', "has no usable RSA, EC or OKP signing key"),
        (b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "has no usable RSA, EC or OKP"),
        (b'{"keys": [{"kty": "RSA", "n": "AQAB"}]}', "has no usable RSA, EC or OKP"),
    ],
    ids=["missing", "not-json", "keys-not-list", "not-object", "empty", "only-oct", "broken-rsa"],
)
def test_bad_jwks_file_is_a_configuration_error(
    env: Env, content: bytes | None, expected: str
) -> None:
    if content is None:
        env.jwks_path.unlink()
    else:
        env.jwks_path.write_bytes(content)
    with pytest.raises(ConfigurationError) as info:
        env.verifier()
    assert str(info.value).startswith("--jwt-jwks: ")
    assert expected in str(info.value)


def test_ec_key_alone_is_no_use_when_only_rsa_is_allowed(env: Env, keys: Keys) -> None:
    env.jwks_path.write_bytes(jwks_body(public_jwk(keys.ec, "ec-1")))
    with pytest.raises(ConfigurationError, match="no usable"):
        env.verifier(algorithms=("RS256",))


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        ({"issuer": ""}, "--jwt-issuer"),
        ({"audience": " "}, "--jwt-audience"),
        ({"algorithms": ("RS256", "HS256")}, "JWT algorithms"),
        ({"algorithms": ("none",)}, "JWT algorithms"),
        ({"algorithms": ()}, "JWT algorithms"),
        ({"tenant_claim": ""}, "--jwt-tenant-claim"),
        ({"leeway_seconds": -1.0}, "--jwt-leeway-seconds"),
    ],
)
def test_bad_settings_are_configuration_errors(
    env: Env, settings: dict[str, Any], flag: str
) -> None:
    values: dict[str, Any] = {"jwks": str(env.jwks_path), "issuer": ISSUER, "audience": AUDIENCE}
    with pytest.raises(ConfigurationError, match=f"^{flag}: "):
        JwtVerifier(JwtSettings(**{**values, **settings}), clock=env.clock)
