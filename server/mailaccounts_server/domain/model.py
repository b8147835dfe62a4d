"""Plain data objects the domain works with: accounts, their changes, and the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailaccounts_server.domain.enums import Encryption, Protocol

ROLE_ACCOUNTS = "accounts"
ROLE_TENANT_ADMIN = "tenant_admin"
ROLE_SYNC_WORKER = "sync_worker"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who authenticated a call, as the audit log records it: the service identity (a client
    certificate's SPIFFE id or DNS name, or a token's subject) and the end user's token subject
    where a token was given."""

    identity: str
    subject: str = ""


ANONYMOUS = Actor(identity="anonymous")
_ACCOUNTS_ONLY = frozenset({ROLE_ACCOUNTS})


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a call: the tenant and user it acts for (verified by transport.auth), the
    authenticated actor behind it, and the roles the policy grants that actor."""

    tenant_id: str
    user_id: str
    actor: Actor = ANONYMOUS
    roles: frozenset[str] = _ACCOUNTS_ONLY

    @property
    def is_tenant_admin(self) -> bool:
        """May list and read every user's accounts and audit events within the tenant."""
        return ROLE_TENANT_ADMIN in self.roles

    @property
    def owner(self) -> Owner:
        """The rows this caller owns: its own user's in its tenant."""
        return Owner(self.tenant_id, self.user_id)

    @property
    def reader(self) -> Owner:
        """The rows this caller may read: a tenant admin's whole tenant, else its own."""
        return Owner(self.tenant_id, None if self.is_tenant_admin else self.user_id)


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose rows a repository call may touch: one user of a tenant, or (user_id None) every
    user of the tenant. Every repository query filters on it in SQL."""

    tenant_id: str
    user_id: str | None


@dataclass(frozen=True, slots=True)
class ConnectionTestSummary:
    """Outcome of an account's most recent connection test."""

    time_us: int
    success: bool
    error_code: str | None
    message: str


@dataclass(slots=True)
class Account:
    """An email account as stored; times are microseconds since the Unix epoch."""

    id: str
    tenant_id: str
    user_id: str
    account_name: str
    email_address: str
    protocol: Protocol
    hostname: str
    port: int
    encryption: Encryption
    username: str
    credential_id: str
    is_sync_enabled: bool
    sync_interval: int
    last_sync_at_us: int | None
    is_syncing: bool
    is_enabled: bool
    created_at_us: int
    updated_at_us: int
    version: int
    deleted_at_us: int | None = None
    last_test: ConnectionTestSummary | None = None
    # The host the stored password was entered for (normalised); when the hostname has changed
    # since, the password is never sent anywhere until it is given again.
    credential_host: str | None = None

    @property
    def password_required(self) -> bool:
        """True when the hostname changed since the stored password was entered."""
        return self.credential_host is not None and self.credential_host != normalize_host(
            self.hostname
        )

    @property
    def etag(self) -> str:
        """Opaque version tag; changes on every write."""
        return f'W/"{self.version}"'


@dataclass(frozen=True, slots=True)
class NewAccount:
    """Validated input of CreateAccount, defaults applied."""

    account_name: str
    email_address: str
    protocol: Protocol
    hostname: str
    port: int
    encryption: Encryption
    username: str
    credential_id: str | None
    password: str | None = field(repr=False)
    is_sync_enabled: bool
    sync_interval: int
    request_id: str | None


@dataclass(frozen=True, slots=True)
class AccountPatch:
    """Validated input of UpdateAccount: only the fields that were present."""

    changes: dict[str, Any]
    password: str | None = field(default=None, repr=False)

    def changed_fields(self) -> list[str]:
        """Names of the fields this patch sets (password included, never its value)."""
        names = sorted(self.changes)
        return [*names, "password"] if self.password is not None else names


@dataclass(frozen=True, slots=True)
class AccountFilter:
    """ListAccounts filters; None means "any"."""

    protocol: Protocol | None = None
    is_enabled: bool | None = None
    is_sync_enabled: bool | None = None
    query: str | None = None
    show_deleted: bool = False
    # Every user's accounts of the caller's tenant (tenant_admin only), not just the caller's.
    all_users: bool = False


def normalize_host(hostname: str) -> str:
    """The form a credential is bound to: case and a trailing dot do not make another host."""
    return hostname.strip().rstrip(".").lower()
