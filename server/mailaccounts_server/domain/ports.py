"""What the domain needs from the outside, as small Protocols: transactions, the owner-scoped
repositories, encryption and the mail prober. The storage, credentials and mail packages
implement them; app.py plugs the implementations in."""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mailaccounts_server.domain.model import Account, AccountFilter, Owner

T = TypeVar("T")
Tx = Any
"""An open transaction of the storage adapter; the domain only passes it back to it."""


class UniqueViolation(Exception):
    """A write would break a uniqueness rule: `rule` is "email" (one live account per address)
    or "request_id" (a CreateAccount requestId already used). Raised by the storage adapter at
    the statement or at commit; the transaction is then rolled back."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


class StorageUnavailable(Exception):
    """The database could not be reached or answer in time (UNAVAILABLE: retry).
    `outcome_unknown` is True only when a COMMIT was sent and no answer came: the write may
    have happened, and only requestId / etags make a retry safe. Otherwise nothing changed."""

    def __init__(self, reason: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(reason)
        self.outcome_unknown = outcome_unknown


class StorageFull(Exception):
    """The database has no room left (a full disk): nothing was written."""


# When the call being served must be answered (event-loop time), set by the transport for
# each call: storage waits for connections, locks and statements no longer than that.
call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "call_deadline", default=None
)


class Lookup(enum.Enum):
    """Why a repository found no row for an owner: decided in SQL, in one place."""

    MISSING = "missing"  # no such row at all
    FOREIGN = "foreign"  # the row exists but belongs to someone else


class Transactions(Protocol):
    """Where database work runs (see execution.ExecutionPolicy)."""

    def read(self) -> AbstractAsyncContextManager[Tx]: ...

    def write(self) -> AbstractAsyncContextManager[Tx]: ...

    def scan(self) -> AbstractAsyncContextManager[Tx]: ...

    async def probe(self, fn: Callable[..., T], /, *args: Any) -> T: ...


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A credential row: its owner, its ciphertext and the host it is bound to (None: sealed
    before host binding)."""

    id: str
    tenant_id: str
    user_id: str
    ciphertext: str
    host: str | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit event as stored; changed_fields are proto JSON names."""

    id: str
    time_us: int
    tenant_id: str
    user_id: str
    account_id: str
    action: str
    changed_fields: list[str]
    outcome: str
    actor_identity: str = ""
    actor_subject: str = ""


@dataclass(frozen=True, slots=True)
class AccountCreation:
    """Everything a CreateAccount writes, so the adapter can write it in as few round trips as
    it can: the request id claim, a new credential (when a password was given), the account
    (with its owner's live count) and the audit event."""

    account: Account
    credential: StoredCredential | None
    audit: AuditRecord
    request_id: str | None
    request_hash: str
    now_us: int


class AccountRepository(Protocol):
    """Accounts, always scoped to an owner in SQL; the live counters move with the rows."""

    async def get(
        self, tx: Tx, owner: Owner, account_id: str, *, for_update: bool = False
    ) -> Account | Lookup: ...

    async def create(self, tx: Tx, creation: AccountCreation) -> None:
        """Writes a new account and what comes with it; UniqueViolation("request_id") when the
        request id was claimed before (the caller replays), ("email") for a duplicate."""
        ...

    async def update(
        self, tx: Tx, owner: Owner, account_id: str, expected_version: int, values: dict[str, Any]
    ) -> Account | None:
        """Compare-and-swap; the updated account, or None when the version moved on."""
        ...

    async def set_deleted(
        self, tx: Tx, owner: Owner, account_id: str, expected_version: int, *,
        deleted_at_us: int | None, now_us: int,
    ) -> Account | None:  # fmt: skip
        """Soft-deletes (a time) or restores (None), adjusting the owner's live count."""
        ...

    async def set_test_result(
        self, tx: Tx, owner: Owner, account_id: str, values: dict[str, Any]
    ) -> Account | None: ...

    async def page(
        self, tx: Tx, owner: Owner, flt: AccountFilter, *, restorable_after_us: int,
        after: tuple[int, str] | None, limit: int,
    ) -> list[Account]: ...  # fmt: skip

    async def count(
        self, tx: Tx, owner: Owner, flt: AccountFilter, *, restorable_after_us: int
    ) -> int: ...

    async def credential_in_use(
        self, tx: Tx, credential_id: str, *, restorable_after_us: int
    ) -> bool: ...

    async def credential_host_of(self, tx: Tx, credential_id: str) -> str | None: ...

    async def expired(self, tx: Tx, deleted_before_us: int, limit: int) -> list[tuple[str, str]]:
        """(id, credential_id) of soft-deleted accounts past retention, any owner."""
        ...

    async def delete_expired(
        self, tx: Tx, account_ids: Sequence[str], deleted_before_us: int
    ) -> None: ...


class CredentialRepository(Protocol):
    """Encrypted credential rows; only ciphertext passes through."""

    async def get(
        self, tx: Tx, credential_id: str, *, lock: str | None = None
    ) -> StoredCredential | None: ...

    async def insert(self, tx: Tx, credential: StoredCredential, now_us: int) -> None: ...

    async def set_ciphertext(
        self, tx: Tx, credential_id: str, ciphertext: str, host: str | None, now_us: int
    ) -> None: ...

    async def delete(self, tx: Tx, credential_id: str) -> None: ...

    async def page(self, tx: Tx, after_id: str, limit: int) -> list[StoredCredential]: ...


class AuditLog(Protocol):
    """Audit events, written in the change's own transaction."""

    async def record(self, tx: Tx, owner: Owner, event: AuditRecord) -> None: ...

    async def page(
        self, tx: Tx, owner: Owner, *, account_id: str | None, after: tuple[int, str] | None,
        limit: int,
    ) -> list[AuditRecord]: ...  # fmt: skip


class IdempotencyKeys(Protocol):
    """CreateAccount request ids -> the account each created."""

    async def claim(
        self, tx: Tx, owner: Owner, request_id: str, request_hash: str, account_id: str,
        now_us: int,
    ) -> bool: ...  # fmt: skip

    async def find(self, tx: Tx, owner: Owner, request_id: str) -> tuple[str, str] | None: ...

    async def delete_before(self, tx: Tx, before_us: int) -> int: ...


@dataclass(frozen=True)
class Storage:
    """The storage adapter's repositories, as the domain sees them."""

    accounts: AccountRepository
    credentials: CredentialRepository
    audit: AuditLog
    keys: IdempotencyKeys


class SecretBox(Protocol):
    """Encrypts credentials at rest; `aad` binds a ciphertext to its owner, row and host."""

    def encrypt(self, plaintext: str, *, aad: str) -> str: ...

    def decrypt(self, token: str, *, aad: str) -> str: ...

    def is_current(self, token: str) -> bool: ...
