"""Plain data objects the domain works with: accounts, their changes, and the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailaccounts_server.domain.enums import Encryption, Protocol


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a call: taken from the x-tenant-id and x-user-id metadata."""

    tenant_id: str
    user_id: str


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
