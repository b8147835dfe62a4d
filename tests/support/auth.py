"""Helpers for authentication tests: policy files, TLS servers and clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from mailaccounts_client import AccountClient, Credentials

from support.pki import CertFiles, Pki, channel_credentials


def write_policy(path: Path, grants: dict[str, dict[str, list[str]]]) -> Path:
    """A policy TOML file: identity -> {"tenants": [...], "roles": [...]}."""
    lines = []
    for identity, grant in grants.items():
        lines.append(f'[identities."{identity}"]')
        lines.append(f"tenants = {grant['tenants']!r}".replace("'", '"'))
        lines.append(f"roles = {grant['roles']!r}".replace("'", '"'))
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def tls_settings(pki: Pki, *, mtls: bool = True) -> dict[str, Any]:
    """Settings overrides for a TLS listener with the pki's server certificate."""
    overrides: dict[str, Any] = {
        "tls_cert": str(pki.server.cert),
        "tls_key": str(pki.server.key),
    }
    if mtls:
        overrides["client_ca"] = str(pki.ca)
    return overrides


def tls_client(
    target: str, pki: Pki, cert: CertFiles | None, caller: Credentials | None
) -> AccountClient:
    """A client over TLS trusting the pki's CA, presenting `cert` when given."""
    return AccountClient(target, caller, channel_credentials=channel_credentials(pki, cert))


def status_of(call: Any) -> tuple[grpc.StatusCode, str]:
    """(code, details) of a call that must fail."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")
