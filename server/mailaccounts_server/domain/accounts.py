"""The account use cases: create (idempotent), read, list, update (compare-and-swap), soft
delete and undelete, each one transaction through the ports; audit in the same transaction."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailaccounts_server.domain import fields
from mailaccounts_server.domain.audit import AuditTrail
from mailaccounts_server.domain.errors import (
    AlreadyExistsError,
    ConflictError,
    FailedPreconditionError,
    NotFoundError,
    PermissionDeniedError,
    invalid,
)
from mailaccounts_server.domain.idempotency import RequestHasher
from mailaccounts_server.domain.model import (
    Account,
    AccountFilter,
    AccountPatch,
    Caller,
    NewAccount,
    Owner,
    normalize_host,
)
from mailaccounts_server.domain.pagination import PageTokenCodec
from mailaccounts_server.domain.ports import (
    AccountCreation,
    AuditRecord,
    Lookup,
    Storage,
    Transactions,
    Tx,
    UniqueViolation,
)
from mailaccounts_server.domain.vault import CredentialVault

_LOG = logging.getLogger(__name__)
_UPDATE_ATTEMPTS = 5
_DUPLICATE_EMAIL = "an account for this emailAddress already exists"
_STALE_ETAG = "the account changed since etag was read; read it again"


@dataclass(frozen=True, slots=True)
class Page:
    """One page of accounts."""

    accounts: list[Account]
    next_page_token: str
    total_size: int


@dataclass(frozen=True, slots=True)
class Deletion:
    """What DeleteAccount did."""

    account_id: str
    deleted_at_us: int
    expires_at_us: int


class _LostRace(Exception):
    """A concurrent writer committed first: the transaction is rolled back and retried."""


def now_us() -> int:
    return time.time_ns() // 1000


class AccountManager:
    """Account operations on behalf of one caller at a time."""

    def __init__(
        self,
        transactions: Transactions,
        storage: Storage,
        vault: CredentialVault,
        tokens: PageTokenCodec,
        hasher: RequestHasher,
        *,
        retention_us: int,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self._tx = transactions
        self._accounts = storage.accounts
        self._keys = storage.keys
        self._audit_log = storage.audit
        self._audit = AuditTrail(storage.audit)
        self._vault = vault
        self._tokens = tokens
        self._hasher = hasher
        self._retention_us = retention_us
        self._clock = clock

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, caller: Caller, account_id: str) -> Account:
        """GetAccount: the caller's own account, or any of its tenant's for a tenant admin."""
        async with self._tx.read() as tx:
            return await self._owned(tx, caller.reader, account_id)

    async def get_own(self, caller: Caller, account_id: str) -> Account:
        """An account the caller itself owns (to act on it, as TestConnection does)."""
        async with self._tx.read() as tx:
            return await self._owned(tx, caller.owner, account_id)

    async def password_for(self, caller: Caller, account: Account) -> str:
        """The stored password of the caller's account, for its present host only."""
        async with self._tx.read() as tx:
            return await self._vault.password_for(tx, caller.owner, account)

    async def list_page(
        self, caller: Caller, flt: AccountFilter, page_size: int, page_token: str
    ) -> Page:
        scope = _scope(caller, flt.all_users)
        key = repr(flt)
        after = self._tokens.decode(page_token, caller, key) if page_token else None
        restorable_after = self._clock() - self._retention_us
        # A filtered list counts (and may walk) all of the owner's rows: that is a scan.
        unfiltered = flt == AccountFilter(show_deleted=flt.show_deleted)
        async with self._tx.read() if unfiltered else self._tx.scan() as tx:
            rows = await self._accounts.page(
                tx, scope, flt, restorable_after_us=restorable_after, after=after,
                limit=page_size + 1,
            )  # fmt: skip
            total = await self._accounts.count(tx, scope, flt, restorable_after_us=restorable_after)
        token = ""
        if len(rows) > page_size:
            rows = rows[:page_size]
            token = self._tokens.encode(caller, key, (rows[-1].created_at_us, rows[-1].id))
        return Page(accounts=rows, next_page_token=token, total_size=total)

    async def list_audit(
        self, caller: Caller, account_id: str, page_size: int, page_token: str, *,
        all_users: bool = False,
    ) -> tuple[list[AuditRecord], str]:  # fmt: skip
        scope = _scope(caller, all_users)
        key = f"audit:{account_id}:{'all' if all_users else 'own'}"
        after = self._tokens.decode(page_token, caller, key) if page_token else None
        async with self._tx.read() as tx:
            events = await self._audit_log.page(
                tx, scope, account_id=account_id or None, after=after, limit=page_size + 1
            )
        token = ""
        if len(events) > page_size:
            events = events[:page_size]
            token = self._tokens.encode(caller, key, (events[-1].time_us, events[-1].id))
        return events, token

    # -- writes --------------------------------------------------------------------------------

    async def create(self, caller: Caller, new: NewAccount) -> Account:
        now = self._clock()
        account_id = str(uuid.uuid4())
        owner = caller.owner
        try:
            async with self._tx.write() as tx:
                credential = None
                if new.password is not None:
                    host: str | None = normalize_host(new.hostname)
                    assert host is not None
                    credential = self._vault.seal(owner, new.password, host)
                    credential_id = credential.id
                else:
                    assert new.credential_id is not None
                    credential_id = new.credential_id
                    # A reused credential stays bound to its own host: an account on another
                    # host shows password_required until a password is given for it.
                    host = await self._vault.take_into_use(tx, owner, credential_id)
                account = Account(
                    id=account_id,
                    tenant_id=caller.tenant_id,
                    user_id=caller.user_id,
                    account_name=new.account_name,
                    email_address=new.email_address,
                    protocol=new.protocol,
                    hostname=new.hostname,
                    port=new.port,
                    encryption=new.encryption,
                    username=new.username,
                    credential_id=credential_id,
                    is_sync_enabled=new.is_sync_enabled,
                    sync_interval=new.sync_interval,
                    last_sync_at_us=None,
                    is_syncing=False,
                    is_enabled=True,
                    created_at_us=now,
                    updated_at_us=now,
                    version=1,
                    credential_host=host,
                )
                await self._accounts.create(
                    tx,
                    AccountCreation(
                        account=account,
                        credential=credential,
                        audit=self._audit.event(caller, account_id, "CREATE", fields.CREATED, now),
                        request_id=new.request_id,
                        request_hash=self._hasher.current(new) if new.request_id else "",
                        now_us=now,
                    ),
                )
        except UniqueViolation as exc:
            # A retry, or a twin that committed first (the insert waited for it), breaks the
            # request id's rule or, with the same address, the address's (which one a
            # database reports first is its choice): a recorded request id means a replay.
            if new.request_id:
                async with self._tx.read() as tx:
                    if await self._keys.find(tx, owner, new.request_id) is not None:
                        return await self._replay(tx, owner, new)
            if exc.rule == "request_id":
                raise ConflictError("a concurrent request used this requestId; retry") from None
            raise AlreadyExistsError(_DUPLICATE_EMAIL) from None
        _LOG.info(
            "account created tenant=%s user=%s account=%s",
            caller.tenant_id, caller.user_id, account_id,
        )  # fmt: skip
        return account

    async def update(
        self, caller: Caller, account_id: str, patch: AccountPatch, etag: str
    ) -> Account:
        changed = [fields.json_name(name) for name in patch.changed_fields()]
        for _ in range(_UPDATE_ATTEMPTS):
            try:
                updated = await self._update_once(caller, account_id, patch, etag, changed)
            except _LostRace:
                continue
            except UniqueViolation:
                raise AlreadyExistsError(_DUPLICATE_EMAIL) from None
            _LOG.info(
                "account updated tenant=%s user=%s account=%s fields=%s",
                caller.tenant_id, caller.user_id, account_id, changed,
            )  # fmt: skip
            return updated
        raise ConflictError("the account is being changed concurrently; retry")

    async def _update_once(
        self, caller: Caller, account_id: str, patch: AccountPatch, etag: str, changed: list[str]
    ) -> Account:
        owner = caller.owner
        async with self._tx.write() as tx:
            current = await self._owned(tx, owner, account_id, for_update=True)
            if etag and etag != current.etag:
                raise ConflictError(_STALE_ETAG)
            now = max(self._clock(), current.updated_at_us + 1)
            values: dict[str, Any] = {
                **patch.changes, "updated_at": now, "version": current.version + 1
            }  # fmt: skip
            if "encryption" in values:
                values["encryption"] = values["encryption"].value
            if patch.password is not None:
                # Bound to the host the password is given for: the new one when this update
                # also changes it.
                host = normalize_host(values.get("hostname", current.hostname))
                values["credential_id"] = await self._vault.store(
                    tx, owner, patch.password, host, now
                )
                values["credential_host"] = host
            updated = await self._accounts.update(tx, owner, account_id, current.version, values)
            if updated is None:
                if etag:
                    raise ConflictError(_STALE_ETAG)
                raise _LostRace  # rolls back (the new credential too) and re-applies
            if patch.password is not None:
                await self._vault.drop_if_unused(
                    tx, [current.credential_id], restorable_after_us=now - self._retention_us
                )
            await self._audit.record(tx, caller, account_id, "UPDATE", changed, now)
        return updated

    async def delete(self, caller: Caller, account_id: str, etag: str) -> Deletion:
        async with self._tx.write() as tx:
            current = await self._owned(tx, caller.owner, account_id, for_update=True)
            if etag and etag != current.etag:
                raise ConflictError(_STALE_ETAG)
            now = max(self._clock(), current.updated_at_us + 1)
            deleted = await self._accounts.set_deleted(
                tx, caller.owner, account_id, current.version, deleted_at_us=now, now_us=now
            )
            if deleted is None:
                raise ConflictError("the account changed concurrently; read it again")
            await self._audit.record(tx, caller, account_id, "DELETE", [], now)
        _LOG.info(
            "account deleted tenant=%s user=%s account=%s",
            caller.tenant_id, caller.user_id, account_id,
        )  # fmt: skip
        return Deletion(account_id, now, now + self._retention_us)

    async def undelete(self, caller: Caller, account_id: str) -> Account:
        async with self._tx.write() as tx:
            current = await self._owned(
                tx, caller.owner, account_id, include_deleted=True, for_update=True
            )
            if current.deleted_at_us is None:
                raise FailedPreconditionError("the account is not deleted")
            now = max(self._clock(), current.updated_at_us + 1)
            try:
                restored = await self._accounts.set_deleted(
                    tx, caller.owner, account_id, current.version, deleted_at_us=None, now_us=now
                )
            except UniqueViolation:
                raise AlreadyExistsError(_DUPLICATE_EMAIL) from None
            if restored is None:
                raise ConflictError("the account changed concurrently; retry")
            await self._audit.record(tx, caller, account_id, "UNDELETE", [], now)
        _LOG.info(
            "account undeleted tenant=%s user=%s account=%s",
            caller.tenant_id, caller.user_id, account_id,
        )  # fmt: skip
        return restored

    async def record_test(
        self, caller: Caller, account: Account, *, success: bool, error: str | None, message: str
    ) -> Account:
        """Stores a connection test's outcome on the account and in the audit log."""
        now = self._clock()
        values = {
            "last_test_at": now,
            "last_test_success": success,
            "last_test_error": error,
            "last_test_message": message[:512],
        }
        async with self._tx.write() as tx:
            # No version bump: a test result is not a settings change and must not make a
            # caller's etag stale.
            refreshed = await self._accounts.set_test_result(tx, caller.owner, account.id, values)
            await self._audit.record(
                tx, caller, account.id, "TEST_CONNECTION", [], now,
                outcome="SUCCESS" if success else "FAILURE",
            )  # fmt: skip
        return refreshed or account

    # -- helpers -------------------------------------------------------------------------------

    async def _owned(
        self, tx: Tx, owner: Owner, account_id: str, *, include_deleted: bool = False,
        for_update: bool = False,
    ) -> Account:  # fmt: skip
        """The owner's account; PERMISSION_DENIED when it is someone else's (as the Flask API
        answered), NOT_FOUND when it does not exist or is deleted (restorable ones only with
        `include_deleted`)."""
        found = await self._accounts.get(tx, owner, account_id, for_update=for_update)
        if found is Lookup.FOREIGN:
            raise PermissionDeniedError(f"account {account_id} belongs to another owner")
        if found is Lookup.MISSING:
            raise NotFoundError(f"account {account_id} not found")
        assert isinstance(found, Account)
        if found.deleted_at_us is not None:
            restorable = found.deleted_at_us + self._retention_us > self._clock()
            if not (include_deleted and restorable):
                raise NotFoundError(f"account {account_id} not found")
        return found

    async def _replay(self, tx: Tx, owner: Owner, new: NewAccount) -> Account:
        assert new.request_id is not None
        found = await self._keys.find(tx, owner, new.request_id)
        assert found is not None, "a claimed key is visible once its claimer committed"
        stored_hash, account_id = found
        if not self._hasher.matches(new, stored_hash):
            raise invalid("requestId", "requestId was already used with different content")
        account = await self._accounts.get(tx, owner, account_id)
        if not isinstance(account, Account):
            raise NotFoundError(f"account {account_id} created by this requestId was purged")
        return account


def _scope(caller: Caller, all_users: bool) -> Owner:
    """Whose rows a list may show: `all_users` needs the tenant_admin role."""
    if not all_users:
        return caller.owner
    if not caller.is_tenant_admin:
        raise PermissionDeniedError("allUsers needs the tenant_admin role")
    return Owner(caller.tenant_id, None)
