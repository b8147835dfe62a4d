"""Who is calling: the verified identity (client certificate, token) and the tenant, user and
roles the policy lets it act with. One object per server, called once per call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import grpc

from mailaccounts_server.domain.errors import PermissionDeniedError, UnauthenticatedError
from mailaccounts_server.domain.model import (
    ROLE_ACCOUNTS,
    ROLE_TENANT_ADMIN,
    Actor,
    Caller,
)
from mailaccounts_server.transport.auth.jwt import JwtVerifier, TokenClaims
from mailaccounts_server.transport.auth.policy import ROLES, Grant, PolicyStore
from mailaccounts_server.transport.caller import TENANT_KEY, USER_KEY, caller_from_metadata

AUTHORIZATION_KEY = "authorization"
# The roles that may call AccountService; sync_worker alone is for the sync RPCs.
_ACCOUNT_ROLES = frozenset({ROLE_ACCOUNTS, ROLE_TENANT_ADMIN})
_DEFAULT_TOKEN_ROLES = frozenset({ROLE_ACCOUNTS})

Metadata = Sequence[tuple[str, Any]]


def peer_identity(auth_context: Mapping[str, Any]) -> str | None:
    """The client certificate's identity: its SPIFFE id, else its first URI SAN, else its first
    DNS SAN (grpc puts them under these auth-context keys, values as lists of bytes)."""
    for key in ("peer_spiffe_id", "peer_uri", "peer_dns"):
        values = auth_context.get(key)
        if values:
            return cast(bytes, values[0]).decode("utf-8", "replace")
    return None


_AUTH_KEYS = frozenset({AUTHORIZATION_KEY, TENANT_KEY, USER_KEY})


def _auth_metadata(metadata: Metadata) -> dict[str, str]:
    """authorization, x-tenant-id and x-user-id in one pass; each at most once (a proxy that
    appends instead of replacing must not let a client pick its identity)."""
    found: dict[str, str] = {}
    for k, v in metadata:
        if k in _AUTH_KEYS:
            if k in found:
                raise UnauthenticatedError(f"metadata {k} must be given once")
            found[k] = v if isinstance(v, str) else ""
    return found


class Authenticator:
    """Turns a call's TLS peer and metadata into a Caller, or refuses it.

    Modes: `none` believes x-tenant-id / x-user-id (loopback or behind an authenticating
    proxy only); `mtls` takes the identity from the client certificate and the tenant and user
    from metadata, within what the policy allows; `jwt` takes tenant and user from a verified
    token; `mtls+jwt` takes the service from the certificate and the end user from the token.
    """

    def __init__(
        self,
        mode: str,
        *,
        policy: PolicyStore | None = None,
        verifier: JwtVerifier | None = None,
    ) -> None:
        self.mode = mode
        self._policy = policy
        self._verifier = verifier
        self._use_cert = "mtls" in mode
        self._use_token = "jwt" in mode
        if self._use_token and verifier is None:
            raise ValueError(f"auth mode {mode} needs a JWT verifier")
        if self._use_cert and policy is None:
            raise ValueError(f"auth mode {mode} needs a policy")

    async def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        metadata: Metadata = context.invocation_metadata() or ()  # type: ignore[assignment]
        if self.mode == "none":
            return caller_from_metadata(metadata)
        identity = None
        if self._use_cert:
            identity = peer_identity(context.auth_context())
            if identity is None:
                raise UnauthenticatedError(
                    "no client certificate identity: connect with a client certificate whose "
                    "SAN carries a URI (SPIFFE id) or DNS name"
                )
        if not self._use_token:
            assert identity is not None
            return self._certificate_caller(identity, metadata)
        sent = _auth_metadata(metadata)
        header = sent.get(AUTHORIZATION_KEY)
        if not header:
            raise UnauthenticatedError("missing authorization metadata: 'Bearer <token>'")
        assert self._verifier is not None
        # A token seen before costs a dictionary look-up, not a coroutine and a signature check.
        claims = self._verifier.verify_cached(header) or await self._verifier.verify(header)
        return self._token_caller(identity, claims, sent)

    def _grant(self, identity: str) -> Grant | None:
        return self._policy.current.grant_for(identity) if self._policy is not None else None

    def _certificate_caller(self, identity: str, metadata: Metadata) -> Caller:
        """mtls: the certificate says who calls; metadata says for which tenant and user."""
        grant = self._grant(identity)
        if grant is None:
            raise PermissionDeniedError(f"identity {identity} is not allowed by the policy")
        claimed = caller_from_metadata(metadata)
        return self._authorise(identity, grant, claimed.tenant_id, claimed.user_id, Actor(identity))

    def _token_caller(
        self, identity: str | None, claims: TokenClaims, sent: dict[str, str]
    ) -> Caller:
        """jwt / mtls+jwt: the token is the authority for tenant and user; metadata, if sent,
        must agree with it."""
        for key, value in ((TENANT_KEY, claims.tenant_id), (USER_KEY, claims.user_id)):
            claimed = sent.get(key)
            if claimed is not None and claimed.strip() != value:
                raise PermissionDeniedError(f"metadata {key} does not match the token")
        if identity is not None:  # mtls+jwt: the service must be allowed for the token's tenant
            grant = self._grant(identity)
            if grant is None:
                raise PermissionDeniedError(f"identity {identity} is not allowed by the policy")
            actor = Actor(identity, claims.subject)
            return self._authorise(identity, grant, claims.tenant_id, claims.user_id, actor)
        subject = claims.subject or claims.user_id
        grant = self._grant(subject)
        if grant is None:
            roles = (
                frozenset(claims.roles) & ROLES
                if claims.roles is not None
                else _DEFAULT_TOKEN_ROLES
            )
            grant = Grant(tenants=None, roles=roles)
        return self._authorise(
            subject, grant, claims.tenant_id, claims.user_id, Actor(subject, claims.subject)
        )

    @staticmethod
    def _authorise(identity: str, grant: Grant, tenant: str, user: str, actor: Actor) -> Caller:
        if not grant.allows_tenant(tenant):
            raise PermissionDeniedError(f"identity {identity} may not act for tenant {tenant}")
        if not grant.roles & _ACCOUNT_ROLES:
            raise PermissionDeniedError(
                f"identity {identity} has no role for AccountService (needs accounts or "
                "tenant_admin)"
            )
        return Caller(tenant_id=tenant, user_id=user, actor=actor, roles=grant.roles)
