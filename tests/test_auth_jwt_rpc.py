"""Signed caller tokens over gRPC: jwt mode (the token names tenant and user) and mtls+jwt
(the certificate names the service, the token the end user)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from mailaccounts_client import AccountClient, Credentials
from support.auth import status_of, tls_client, tls_settings, write_policy
from support.factories import account_fields
from support.grpc_server import ServerThread
from support.pki import BILLING_ID, Pki
from support.tokens import AUDIENCE, ISSUER, TokenIssuer


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # Authentication happens before any storage work; storage is covered on both databases
    # by the other suites.
    return f"sqlite:///{tmp_path / 'accounts.db'}"


def _jwt_settings(issuer: TokenIssuer) -> dict[str, Any]:
    return {
        "jwt_jwks": str(issuer.jwks_file),
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_leeway_seconds": 5.0,
    }


@pytest.fixture
def jwt_server(
    make_server: Callable[..., ServerThread], token_issuer: TokenIssuer, pki: Pki
) -> ServerThread:
    # Server TLS (no client certificates): tokens are not sent in the clear.
    return make_server(auth="jwt", **_jwt_settings(token_issuer), **tls_settings(pki, mtls=False))


def _client(server: ServerThread, pki: Pki, token: str | None, **ids: str) -> AccountClient:
    caller = Credentials(ids.get("tenant", ""), ids.get("user", ""), token=token)
    return tls_client(server.target, pki, None, caller)


def test_valid_token_names_tenant_and_user(
    jwt_server: ServerThread, pki: Pki, token_issuer: TokenIssuer
) -> None:
    with _client(jwt_server, pki, token_issuer.token("t1", "alice")) as c:
        created = c.create_account(**account_fields())
    assert (created.tenant_id, created.user_id) == ("t1", "alice")


def test_es256_token_is_accepted(
    jwt_server: ServerThread, pki: Pki, token_issuer: TokenIssuer
) -> None:
    with _client(jwt_server, pki, token_issuer.token("t1", "bob", alg="ES256")) as c:
        assert c.list_accounts().count == 0


def test_matching_metadata_is_accepted(
    jwt_server: ServerThread, pki: Pki, token_issuer: TokenIssuer
) -> None:
    token = token_issuer.token("t1", "alice")
    with _client(jwt_server, pki, token, tenant="t1", user="alice") as c:
        assert c.list_accounts().count == 0


@pytest.mark.parametrize("ids", [{"tenant": "t2"}, {"user": "mallory"}])
def test_metadata_that_contradicts_the_token_is_refused(
    jwt_server: ServerThread, pki: Pki, token_issuer: TokenIssuer, ids: dict[str, str]
) -> None:
    with _client(jwt_server, pki, token_issuer.token("t1", "alice"), **ids) as c:
        code, details = status_of(lambda: c.list_accounts())
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "does not match the token" in details


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda i: i.token("t1", "a", exp=int(time.time()) - 60), "expired"),
        (lambda i: i.token("t1", "a", nbf=int(time.time()) + 600), "not yet valid"),
        (lambda i: i.token("t1", "a", aud="someone-else"), "audience"),
        (lambda i: i.token("t1", "a", iss="https://evil.test"), "issuer"),
        (lambda i: i.token("t1", "a", tenant_id=None), "tenant claim"),
        (lambda i: i.unsigned_token("t1", "a"), "algorithm"),
        (lambda i: i.hs256_with_public_key("t1", "a"), "algorithm"),
        (lambda i: i.token("t1", "a")[:-8] + "AAAAAAAA", "signature"),
        (lambda i: "x" * 9000, "8 KiB"),
        (lambda i: "not-a-jwt", "malformed"),
    ],
    ids=[
        "expired", "not-yet-valid", "wrong-audience", "wrong-issuer", "no-tenant",
        "alg-none", "hs256-with-public-key", "bad-signature", "oversized", "garbage",
    ],
)  # fmt: skip
def test_bad_tokens_are_unauthenticated_and_never_echoed(
    jwt_server: ServerThread,
    pki: Pki,
    token_issuer: TokenIssuer,
    make: Callable[[TokenIssuer], str],
    expected: str,
) -> None:
    token = make(token_issuer)
    with _client(jwt_server, pki, token) as c:
        code, details = status_of(lambda: c.list_accounts())
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert expected in details
    assert token not in details and token[-16:] not in details


def test_missing_token_is_unauthenticated(jwt_server: ServerThread, pki: Pki) -> None:
    with _client(jwt_server, pki, None, tenant="t1", user="alice") as c:
        code, details = status_of(lambda: c.list_accounts())
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization" in details


def test_token_roles_claim_grants_tenant_admin(
    jwt_server: ServerThread, pki: Pki, token_issuer: TokenIssuer
) -> None:
    with _client(jwt_server, pki, token_issuer.token("t1", "u1")) as c:
        c.create_account(**account_fields())
    with _client(jwt_server, pki, token_issuer.token("t1", "u2")) as c:
        code, _ = status_of(lambda: c.list_accounts(all_users=True))
        assert code == grpc.StatusCode.PERMISSION_DENIED
    admin = token_issuer.token("t1", "boss", roles=["tenant_admin"])
    with _client(jwt_server, pki, admin) as c:
        assert c.list_accounts(all_users=True).total_size == 1


@pytest.fixture
def mtls_jwt_server(
    make_server: Callable[..., ServerThread], token_issuer: TokenIssuer, pki: Pki, tmp_path: Path
) -> ServerThread:
    policy = write_policy(
        tmp_path / "policy.toml", {BILLING_ID: {"tenants": ["t1"], "roles": ["accounts"]}}
    )
    return make_server(
        auth="mtls+jwt", policy_file=str(policy), **_jwt_settings(token_issuer), **tls_settings(pki)
    )


def test_mtls_jwt_takes_service_from_certificate_and_user_from_token(
    mtls_jwt_server: ServerThread, pki: Pki, token_issuer: TokenIssuer
) -> None:
    caller = Credentials("", "", token=token_issuer.token("t1", "alice"))
    with tls_client(mtls_jwt_server.target, pki, pki.billing, caller) as c:
        created = c.create_account(**account_fields())
        events = c.list_audit_events(account_id=created.id).events
    assert created.user_id == "alice"
    assert events[0].actor.identity == BILLING_ID
    assert events[0].actor.subject == "alice"


def test_mtls_jwt_refuses_a_token_tenant_the_certificate_may_not_serve(
    mtls_jwt_server: ServerThread, pki: Pki, token_issuer: TokenIssuer
) -> None:
    caller = Credentials("", "", token=token_issuer.token("t2", "alice"))
    with tls_client(mtls_jwt_server.target, pki, pki.billing, caller) as c:
        code, _ = status_of(lambda: c.list_accounts())
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_mtls_jwt_needs_both(
    mtls_jwt_server: ServerThread, pki: Pki, token_issuer: TokenIssuer
) -> None:
    with tls_client(mtls_jwt_server.target, pki, pki.billing, Credentials("t1", "a")) as c:
        code, _ = status_of(lambda: c.list_accounts())
        assert code == grpc.StatusCode.UNAUTHENTICATED
    caller = Credentials("", "", token=token_issuer.token("t1", "alice"))
    with tls_client(mtls_jwt_server.target, pki, pki.unknown, caller) as c:
        code, _ = status_of(lambda: c.list_accounts())
        assert code == grpc.StatusCode.PERMISSION_DENIED
