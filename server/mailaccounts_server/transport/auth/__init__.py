"""Caller authentication and authorisation: who is calling (mTLS, JWT) and what the policy lets
it do. `build_authenticator` wires the pieces from the settings; app.py calls it once."""

from __future__ import annotations

from pathlib import Path

from mailaccounts_server.config import Settings
from mailaccounts_server.transport.auth.authenticator import Authenticator, peer_identity
from mailaccounts_server.transport.auth.jwt import JwtSettings, JwtVerifier
from mailaccounts_server.transport.auth.listener import (
    ReloadingServerCredentials,
    check_security,
    is_loopback,
)
from mailaccounts_server.transport.auth.policy import PolicyStore

__all__ = [
    "Authenticator",
    "PolicyStore",
    "ReloadingServerCredentials",
    "build_authenticator",
    "check_security",
    "is_loopback",
    "peer_identity",
]


def build_authenticator(settings: Settings) -> tuple[Authenticator, PolicyStore | None]:
    """The authenticator for `settings.auth`, and the policy store (when a policy is
    configured) so the server can reload it on SIGHUP and on change."""
    policy = PolicyStore(Path(settings.policy_file)) if settings.policy_file else None
    verifier = None
    if "jwt" in settings.auth:
        assert settings.jwt_jwks and settings.jwt_issuer and settings.jwt_audience
        verifier = JwtVerifier(
            JwtSettings(
                jwks=settings.jwt_jwks,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                tenant_claim=settings.jwt_tenant_claim,
                user_claim=settings.jwt_user_claim,
                roles_claim=settings.jwt_roles_claim,
                leeway_seconds=settings.jwt_leeway_seconds,
            )
        )
    return Authenticator(settings.auth, policy=policy, verifier=verifier), policy
