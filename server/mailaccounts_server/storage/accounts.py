"""Account queries. Functions take the request's session and never commit: the caller does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailaccounts_server.domain.enums import Encryption, Protocol
from mailaccounts_server.domain.errors import AlreadyExistsError
from mailaccounts_server.domain.model import Account, AccountFilter, Caller, ConnectionTestSummary
from mailaccounts_server.storage.models import AccountRow

_T = cast(Table, AccountRow.__table__)
_COLUMNS = tuple(_T.c)
_DUPLICATE_EMAIL = "an account for this emailAddress already exists"


def _to_account(row: Any) -> Account:
    """Maps a result row (all account columns) to the domain object."""
    m = row._mapping
    last_test = None
    if m["last_test_at"] is not None:
        last_test = ConnectionTestSummary(
            time_us=m["last_test_at"],
            success=bool(m["last_test_success"]),
            error_code=m["last_test_error"],
            message=m["last_test_message"] or "",
        )
    return Account(
        id=m["id"],
        tenant_id=m["tenant_id"],
        user_id=m["user_id"],
        account_name=m["account_name"],
        email_address=m["email_address"],
        protocol=Protocol(m["protocol"]),
        hostname=m["hostname"],
        port=m["port"],
        encryption=Encryption(m["encryption"]),
        username=m["username"],
        credential_id=m["credential_id"],
        is_sync_enabled=m["is_sync_enabled"],
        sync_interval=m["sync_interval"],
        last_sync_at_us=m["last_sync_at"],
        is_syncing=m["is_syncing"],
        is_enabled=m["is_enabled"],
        created_at_us=m["created_at"],
        updated_at_us=m["updated_at"],
        version=m["version"],
        deleted_at_us=m["deleted_at"],
        last_test=last_test,
    )


def _to_values(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "tenant_id": account.tenant_id,
        "user_id": account.user_id,
        "account_name": account.account_name,
        "account_name_normalized": account.account_name.lower(),
        "email_address": account.email_address,
        "email_normalized": account.email_address.lower(),
        "protocol": account.protocol.value,
        "hostname": account.hostname,
        "port": account.port,
        "encryption": account.encryption.value,
        "username": account.username,
        "credential_id": account.credential_id,
        "is_sync_enabled": account.is_sync_enabled,
        "sync_interval": account.sync_interval,
        "last_sync_at": account.last_sync_at_us,
        "is_syncing": account.is_syncing,
        "is_enabled": account.is_enabled,
        "created_at": account.created_at_us,
        "updated_at": account.updated_at_us,
        "version": account.version,
        "deleted_at": account.deleted_at_us,
    }


def insert_account(session: Session, account: Account) -> None:
    """Inserts a new account; ALREADY_EXISTS when the owner has a live one for the address."""
    try:
        session.execute(insert(_T).values(_to_values(account)))
    except IntegrityError as exc:
        raise AlreadyExistsError(_DUPLICATE_EMAIL) from exc


def get_account(session: Session, account_id: str, *, for_update: bool = False) -> Account | None:
    """The account with this id whoever owns it; callers check ownership.

    `for_update` locks the row until the transaction ends (PostgreSQL; SQLite's write
    transactions already hold the database lock), so a read-modify-write cannot lose its
    compare-and-swap to a concurrent writer.
    """
    stmt = select(*_COLUMNS).where(_T.c.id == account_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).first()
    return _to_account(row) if row else None


def update_account(
    session: Session, account_id: str, expected_version: int, values: dict[str, Any]
) -> bool:
    """Compare-and-swap update: applies only if the row still has `expected_version`.

    Returns False when a concurrent write got there first. `values` uses column names and must
    include the new `version`.
    """
    if "email_address" in values:
        values = {**values, "email_normalized": values["email_address"].lower()}
    if "account_name" in values:
        values = {**values, "account_name_normalized": values["account_name"].lower()}
    stmt = update(_T).where(_T.c.id == account_id, _T.c.version == expected_version).values(values)
    try:
        result = session.execute(stmt)
    except IntegrityError as exc:
        raise AlreadyExistsError(_DUPLICATE_EMAIL) from exc
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _filters(
    caller: Caller, flt: AccountFilter, restorable_after_us: int
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        _T.c.tenant_id == caller.tenant_id,
        _T.c.user_id == caller.user_id,
    ]
    if flt.show_deleted:
        conditions.append(or_(_T.c.deleted_at.is_(None), _T.c.deleted_at > restorable_after_us))
    else:
        conditions.append(_T.c.deleted_at.is_(None))
    if flt.protocol is not None:
        conditions.append(_T.c.protocol == flt.protocol.value)
    if flt.is_enabled is not None:
        conditions.append(_T.c.is_enabled == flt.is_enabled)
    if flt.is_sync_enabled is not None:
        conditions.append(_T.c.is_sync_enabled == flt.is_sync_enabled)
    if flt.query:
        conditions.append(
            or_(
                _T.c.email_normalized.contains(flt.query.lower(), autoescape=True),
                _T.c.account_name_normalized.contains(flt.query.lower(), autoescape=True),
            )
        )
    return conditions


def list_accounts(
    session: Session,
    caller: Caller,
    flt: AccountFilter,
    *,
    restorable_after_us: int,
    after: tuple[int, str] | None,
    limit: int,
) -> list[Account]:
    """One page of the caller's accounts, newest first, strictly after the keyset `after`."""
    conditions = _filters(caller, flt, restorable_after_us)
    if after is not None:
        created, last_id = after
        conditions.append(
            or_(_T.c.created_at < created, and_(_T.c.created_at == created, _T.c.id < last_id))
        )
    stmt = (
        select(*_COLUMNS)
        .where(*conditions)
        .order_by(_T.c.created_at.desc(), _T.c.id.desc())
        .limit(limit)
    )
    return [_to_account(row) for row in session.execute(stmt)]


def count_accounts(
    session: Session, caller: Caller, flt: AccountFilter, *, restorable_after_us: int
) -> int:
    """How many of the caller's accounts match the filter."""
    stmt = select(func.count()).select_from(_T).where(*_filters(caller, flt, restorable_after_us))
    return int(session.execute(stmt).scalar_one())


def expired_deleted_accounts(session: Session, deleted_before_us: int, limit: int) -> Sequence[Any]:
    """(id, tenant_id, user_id, credential_id) of soft-deleted accounts past retention."""
    stmt = (
        select(_T.c.id, _T.c.tenant_id, _T.c.user_id, _T.c.credential_id)
        .where(_T.c.deleted_at.is_not(None), _T.c.deleted_at <= deleted_before_us)
        .limit(limit)
    )
    return session.execute(stmt).all()


def delete_rows(session: Session, account_ids: Sequence[str]) -> None:
    """Removes accounts for good (the purge)."""
    session.execute(delete(_T).where(_T.c.id.in_(account_ids)))


def credential_in_use(session: Session, credential_id: str, *, restorable_after_us: int) -> bool:
    """Whether a live or still-restorable account refers to the credential."""
    stmt = select(_T.c.id).where(
        _T.c.credential_id == credential_id,
        or_(_T.c.deleted_at.is_(None), _T.c.deleted_at > restorable_after_us),
    )
    return session.execute(stmt.limit(1)).first() is not None


def set_test_result(session: Session, account_id: str, values: dict[str, Any]) -> None:
    """Stores a connection test outcome without touching the version (settings are unchanged)."""
    session.execute(update(_T).where(_T.c.id == account_id).values(values))
