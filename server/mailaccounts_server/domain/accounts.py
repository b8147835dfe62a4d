"""The account use cases: ownership, idempotency, optimistic concurrency, soft delete, audit.

Each method is one transaction. They block (database I/O), so the transport runs them off the
event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol as TypingProtocol

from mailaccounts_server.credentials import CredentialDecryptError
from mailaccounts_server.domain.errors import (
    ConflictError,
    FailedPreconditionError,
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    invalid,
)
from mailaccounts_server.domain.model import (
    Account,
    AccountFilter,
    AccountPatch,
    Caller,
    NewAccount,
    normalize_host,
)
from mailaccounts_server.domain.pagination import PageTokenCodec
from mailaccounts_server.storage import accounts as account_store
from mailaccounts_server.storage import audit as audit_store
from mailaccounts_server.storage import counts
from mailaccounts_server.storage import credentials as credential_store
from mailaccounts_server.storage import idempotency as key_store
from mailaccounts_server.storage.database import Database
from mailaccounts_server.storage.sql import Tx

_LOG = logging.getLogger(__name__)
_UPDATE_ATTEMPTS = 5
_JSON_NAMES = {
    "account_name": "accountName",
    "email_address": "emailAddress",
    "hostname": "hostname",
    "port": "port",
    "encryption": "encryption",
    "username": "username",
    "is_sync_enabled": "isSyncEnabled",
    "sync_interval": "syncInterval",
    "is_enabled": "isEnabled",
    "password": "password",
}
_CREATED_FIELDS = [
    "accountName", "emailAddress", "protocol", "hostname", "port", "encryption",
    "username", "credentialId", "isSyncEnabled", "syncInterval",
]  # fmt: skip


class SecretBox(TypingProtocol):
    """Encrypts credentials at rest; `aad` binds a ciphertext to its owner and row."""

    def encrypt(self, plaintext: str, *, aad: str) -> str: ...

    def decrypt(self, token: str, *, aad: str) -> str: ...


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
    """A concurrent writer committed first (a twin CreateAccount, or an update's
    compare-and-swap): the transaction is rolled back and the caller re-reads or retries."""


def credential_aad(tenant_id: str, user_id: str, credential_id: str, host: str | None) -> str:
    """Associated data of a credential's ciphertext: it only decrypts on its own row and for
    the host it was entered for (None: a credential sealed before host binding)."""
    base = f"{tenant_id}/{user_id}/{credential_id}"
    return base if host is None else f"{base}@{host}"


def password_required_error() -> FailedPreconditionError:
    """The stored password was entered for another host: it is not sent to this one."""
    return FailedPreconditionError(
        "the account's hostname changed since its password was stored: enter the password "
        "again for the new server (UpdateAccount with password)",
        violations=[FieldViolation("password", "enter the password again for the new server")],
        reason="PASSWORD_REQUIRED",
    )


def now_us() -> int:
    import time

    return time.time_ns() // 1000


class AccountManager:
    """Account operations on behalf of one caller at a time."""

    def __init__(
        self,
        db: Database,
        secrets: SecretBox,
        tokens: PageTokenCodec,
        *,
        retention_us: int,
        clock: Callable[[], int] = now_us,
        request_hash_keys: list[bytes],
    ) -> None:
        self._db = db
        self._secrets = secrets
        self._tokens = tokens
        self._retention_us = retention_us
        self._clock = clock
        self._hash_keys = request_hash_keys

    # -- reads ---------------------------------------------------------------------------------

    def get(self, caller: Caller, account_id: str) -> Account:
        """GetAccount: the caller's own account, or any of its tenant's for a tenant admin."""
        with self._db.transaction(write=False) as s:
            return self._owned(s, caller, account_id, read=True)

    def get_own(self, caller: Caller, account_id: str) -> Account:
        """An account the caller itself owns (to act on it, as TestConnection does)."""
        with self._db.transaction(write=False) as s:
            return self._owned(s, caller, account_id)

    def list_page(
        self, caller: Caller, flt: AccountFilter, page_size: int, page_token: str
    ) -> Page:
        _check_all_users(caller, flt.all_users)
        scope = repr(flt)
        after = self._tokens.decode(page_token, caller, scope) if page_token else None
        restorable_after = self._clock() - self._retention_us
        with self._db.transaction(write=False) as s:
            rows = account_store.list_accounts(
                s, caller, flt, restorable_after_us=restorable_after, after=after,
                limit=page_size + 1,
            )  # fmt: skip
            total = account_store.count_accounts(
                s, caller, flt, restorable_after_us=restorable_after
            )
        token = ""
        if len(rows) > page_size:
            rows = rows[:page_size]
            token = self._tokens.encode(caller, scope, (rows[-1].created_at_us, rows[-1].id))
        return Page(accounts=rows, next_page_token=token, total_size=total)

    def password_for(self, caller: Caller, account: Account) -> str:
        """Decrypts the stored credential of an account the caller owns, only for the host it
        was entered for: the account's present hostname is sealed into the associated data, so
        a hostname changed behind the service's back (even in the database) cannot decrypt."""
        if account.password_required:
            raise password_required_error()
        with self._db.transaction(write=False) as s:
            found = credential_store.get_credential(s, account.credential_id)
        if found is None or (found.tenant_id, found.user_id) != (caller.tenant_id, caller.user_id):
            raise invalid("password", "the account has no stored credential; give a password")
        host = normalize_host(account.hostname)
        if found.host is not None and found.host != host:
            raise password_required_error()
        aad = credential_aad(
            caller.tenant_id, caller.user_id, account.credential_id,
            None if found.host is None else host,
        )  # fmt: skip
        try:
            return self._secrets.decrypt(found.ciphertext, aad=aad)
        except CredentialDecryptError as exc:
            # A configuration problem (e.g. a retired key), not a server fault: say so cleanly.
            _LOG.warning("stored credential of account %s cannot be decrypted: %s", account.id, exc)
            raise FailedPreconditionError(
                "the stored credential cannot be decrypted with this server's credential keys; "
                "give a password in the request or set a new one with UpdateAccount"
            ) from None

    # -- writes --------------------------------------------------------------------------------

    def create(self, caller: Caller, new: NewAccount) -> Account:
        request_hash = self._request_hashes(new)[0] if new.request_id else ""
        try:
            return self._create_once(caller, new, request_hash)
        except _LostRace:
            # The winner has committed by now; the retry returns its account.
            with self._db.transaction(write=False) as s:
                return self._replay(s, caller, new)

    def _create_once(self, caller: Caller, new: NewAccount, request_hash: str) -> Account:
        now = self._clock()
        account_id = str(uuid.uuid4())
        with self._db.transaction() as s:
            if new.request_id:
                if key_store.find_key(s, caller, new.request_id) is not None:
                    return self._replay(s, caller, new)
                # Claimed before the insert, so a concurrent twin waits here, not on the email.
                if not key_store.claim_key(
                    s, caller, new.request_id, request_hash, account_id, now
                ):
                    raise _LostRace
            credential_id, credential_host = self._credential_for_create(s, caller, new, now)
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
                credential_host=credential_host,
            )
            account_store.insert_account(s, account)
            counts.add_live(s, caller, +1)
            self._audit(s, caller, account_id, "CREATE", _CREATED_FIELDS, now)
        _LOG.info(
            "account created tenant=%s user=%s account=%s",
            caller.tenant_id, caller.user_id, account_id,
        )  # fmt: skip
        return account

    def update(self, caller: Caller, account_id: str, patch: AccountPatch, etag: str) -> Account:
        fields = _json_names(patch)
        for _ in range(_UPDATE_ATTEMPTS):
            try:
                with self._db.transaction() as s:
                    current = self._owned(s, caller, account_id, for_update=True)
                    if etag and etag != current.etag:
                        raise ConflictError(
                            "the account changed since etag was read; read it again"
                        )
                    now = max(self._clock(), current.updated_at_us + 1)
                    values = {**patch.changes, "updated_at": now, "version": current.version + 1}
                    if "encryption" in values:
                        values["encryption"] = values["encryption"].value
                    old_credential = None
                    if patch.password is not None:
                        old_credential = current.credential_id
                        # Bound to the host the password is given for: the new one when this
                        # update also changes it.
                        host = normalize_host(values.get("hostname", current.hostname))
                        values["credential_id"] = self._store_password(
                            s, caller, patch.password, host, now
                        )
                        values["credential_host"] = host
                    if not account_store.update_account(s, account_id, current.version, values):
                        if etag:
                            raise ConflictError(
                                "the account changed since etag was read; read it again"
                            )
                        # Roll back (the new credential included) and re-apply on the fresh row.
                        raise _LostRace
                    if old_credential:
                        self._drop_credential_if_unused(s, old_credential, now)
                    self._audit(s, caller, account_id, "UPDATE", fields, now)
                    updated = account_store.get_account(s, account_id)
            except _LostRace:
                continue
            assert updated is not None
            _LOG.info(
                "account updated tenant=%s user=%s account=%s fields=%s",
                caller.tenant_id, caller.user_id, account_id, fields,
            )  # fmt: skip
            return updated
        raise ConflictError("the account is being changed concurrently; retry")

    def delete(self, caller: Caller, account_id: str, etag: str) -> Deletion:
        with self._db.transaction() as s:
            current = self._owned(s, caller, account_id, for_update=True)
            if etag and etag != current.etag:
                raise ConflictError("the account changed since etag was read; read it again")
            now = max(self._clock(), current.updated_at_us + 1)
            values = {"deleted_at": now, "updated_at": now, "version": current.version + 1}
            if not account_store.update_account(s, account_id, current.version, values):
                raise ConflictError("the account changed concurrently; read it again")
            counts.add_live(s, caller, -1)
            self._audit(s, caller, account_id, "DELETE", [], now)
        _LOG.info(
            "account deleted tenant=%s user=%s account=%s",
            caller.tenant_id, caller.user_id, account_id,
        )  # fmt: skip
        return Deletion(account_id, now, now + self._retention_us)

    def undelete(self, caller: Caller, account_id: str) -> Account:
        with self._db.transaction() as s:
            current = self._owned(s, caller, account_id, include_deleted=True, for_update=True)
            if current.deleted_at_us is None:
                raise FailedPreconditionError("the account is not deleted")
            now = max(self._clock(), current.updated_at_us + 1)
            values = {"deleted_at": None, "updated_at": now, "version": current.version + 1}
            if not account_store.update_account(s, account_id, current.version, values):
                raise ConflictError("the account changed concurrently; retry")
            counts.add_live(s, caller, +1)
            self._audit(s, caller, account_id, "UNDELETE", [], now)
            restored = account_store.get_account(s, account_id)
        assert restored is not None
        _LOG.info(
            "account undeleted tenant=%s user=%s account=%s",
            caller.tenant_id, caller.user_id, account_id,
        )  # fmt: skip
        return restored

    def record_test(
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
        with self._db.transaction() as s:
            # No version bump: a test result is not a settings change and must not make a
            # caller's etag stale.
            account_store.set_test_result(s, account.id, values)
            self._audit(
                s, caller, account.id, "TEST_CONNECTION", [], now,
                outcome="SUCCESS" if success else "FAILURE",
            )  # fmt: skip
            refreshed = account_store.get_account(s, account.id)
        return refreshed or account

    def list_audit(
        self,
        caller: Caller,
        account_id: str,
        page_size: int,
        page_token: str,
        *,
        all_users: bool = False,
    ) -> tuple[list[audit_store.AuditEvent], str]:
        _check_all_users(caller, all_users)
        scope = f"audit:{account_id}:{'all' if all_users else 'own'}"
        after = self._tokens.decode(page_token, caller, scope) if page_token else None
        with self._db.transaction(write=False) as s:
            events = audit_store.list_events(
                s, caller, account_id=account_id or None, after=after, limit=page_size + 1,
                all_users=all_users,
            )  # fmt: skip
        token = ""
        if len(events) > page_size:
            events = events[:page_size]
            token = self._tokens.encode(caller, scope, (events[-1].time_us, events[-1].id))
        return events, token

    # -- helpers -------------------------------------------------------------------------------

    def _owned(
        self, s: Tx, caller: Caller, account_id: str, *, include_deleted: bool = False,
        for_update: bool = False, read: bool = False,
    ) -> Account:  # fmt: skip
        """The account if the caller owns it (or, for `read` by a tenant admin, if it is in the
        caller's tenant); PERMISSION_DENIED when it belongs to someone else."""
        account = account_store.get_account(s, account_id, for_update=for_update)
        if account is None:
            raise NotFoundError(f"account {account_id} not found")
        if account.tenant_id != caller.tenant_id or (
            account.user_id != caller.user_id and not (read and caller.is_tenant_admin)
        ):
            raise PermissionDeniedError(f"account {account_id} belongs to another owner")
        if account.deleted_at_us is not None:
            restorable = account.deleted_at_us + self._retention_us > self._clock()
            if not (include_deleted and restorable):
                raise NotFoundError(f"account {account_id} not found")
        return account

    def _replay(self, s: Tx, caller: Caller, new: NewAccount) -> Account:
        assert new.request_id is not None
        found = key_store.find_key(s, caller, new.request_id)
        assert found is not None
        stored_hash, account_id = found
        if not any(hmac.compare_digest(stored_hash, h) for h in self._request_hashes(new)):
            raise invalid("requestId", "requestId was already used with different content")
        account = account_store.get_account(s, account_id)
        if account is None:
            raise NotFoundError(f"account {account_id} created by this requestId was purged")
        return account

    def _credential_for_create(
        self, s: Tx, caller: Caller, new: NewAccount, now: int
    ) -> tuple[str, str | None]:
        """(credential id, the host its secret is bound to) for a new account."""
        if new.password is not None:
            host = normalize_host(new.hostname)
            return self._store_password(s, caller, new.password, host, now), host
        assert new.credential_id is not None
        found = credential_store.get_credential(s, new.credential_id, lock="share")
        if found is None or (found.tenant_id, found.user_id) != (caller.tenant_id, caller.user_id):
            # One message for unknown and foreign ids: nothing leaks about other tenants.
            raise invalid("credentialId", "credentialId does not name one of your credentials")
        # A reused credential stays bound to its own host: an account on another host shows
        # password_required until a password is given for it.
        return new.credential_id, found.host

    def _store_password(self, s: Tx, caller: Caller, password: str, host: str, now: int) -> str:
        credential_id = str(uuid.uuid4())
        aad = credential_aad(caller.tenant_id, caller.user_id, credential_id, host)
        credential_store.insert_credential(
            s, credential_id=credential_id, tenant_id=caller.tenant_id, user_id=caller.user_id,
            ciphertext=self._secrets.encrypt(password, aad=aad), host=host, now_us=now,
        )  # fmt: skip
        return credential_id

    def _drop_credential_if_unused(self, s: Tx, credential_id: str, now: int) -> None:
        drop_credentials_if_unused(s, [credential_id], restorable_after_us=now - self._retention_us)

    def _audit(
        self, s: Tx, caller: Caller, account_id: str, action: str, fields: list[str],
        now: int, *, outcome: str = "SUCCESS",
    ) -> None:  # fmt: skip
        audit_store.record(
            s, caller, account_id=account_id, action=action, changed_fields=fields,
            outcome=outcome, now_us=now,
        )  # fmt: skip

    def _request_hashes(self, new: NewAccount) -> list[str]:
        """Keyed hashes of a create request's content under each key, current key first; the
        password only ever enters an HMAC."""
        content = replace(new, request_id=None)
        material = repr(content).encode() + b"\x00" + (new.password or "").encode()
        return [hmac.new(k, material, hashlib.sha256).hexdigest() for k in self._hash_keys]


def drop_credentials_if_unused(
    s: Tx, credential_ids: list[str], *, restorable_after_us: int
) -> None:
    """Deletes each credential that no live or still-restorable account uses. The row lock
    keeps an account from taking it into use in between (see credential_store.get_credential)."""
    for credential_id in sorted(set(credential_ids)):
        if credential_store.get_credential(s, credential_id, lock="update") is None:
            continue
        if not account_store.credential_in_use(
            s, credential_id, restorable_after_us=restorable_after_us
        ):
            credential_store.delete_credentials(s, [credential_id])


def _check_all_users(caller: Caller, all_users: bool) -> None:
    if all_users and not caller.is_tenant_admin:
        raise PermissionDeniedError("allUsers needs the tenant_admin role")


def _json_names(patch: AccountPatch) -> list[str]:
    return [_JSON_NAMES.get(name, name) for name in patch.changed_fields()]
