"""Account queries. Functions run inside the caller's transaction and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from mailaccounts_server.domain.enums import Encryption, Protocol
from mailaccounts_server.domain.errors import AlreadyExistsError
from mailaccounts_server.domain.model import Account, AccountFilter, Caller, ConnectionTestSummary
from mailaccounts_server.storage import counts
from mailaccounts_server.storage.models import AccountRow
from mailaccounts_server.storage.sql import Statement, StatementCache, Tx

_T = cast(Table, AccountRow.__table__)
_COLUMNS = tuple(_T.c)
_DUPLICATE_EMAIL = "an account for this emailAddress already exists"
_LIVE_OR_RESTORABLE = or_(
    _T.c.deleted_at.is_(None), _T.c.deleted_at > bindparam("restorable_after")
)

_INSERT = Statement(insert(_T))
_GET = Statement(select(*_COLUMNS).where(_T.c.id == bindparam("account_id")))
# PostgreSQL locks the row for a read-modify-write, so concurrent writers queue instead of
# losing their compare-and-swap; SQLite compiles it away (its write transactions hold the
# database lock already).
_GET_FOR_UPDATE = Statement(
    select(*_COLUMNS).where(_T.c.id == bindparam("account_id")).with_for_update()
)
_EXPIRED = Statement(
    select(_T.c.id, _T.c.credential_id)
    .where(_T.c.deleted_at.is_not(None), _T.c.deleted_at <= bindparam("deleted_before"))
    .limit(bindparam("limit"))
)
# Only a row that is still deleted and expired: an undelete that committed after the purge
# picked its batch must win.
_DELETE_EXPIRED = Statement(
    delete(_T).where(
        _T.c.id == bindparam("account_id"),
        _T.c.deleted_at.is_not(None),
        _T.c.deleted_at <= bindparam("deleted_before"),
    )
)
_CREDENTIAL_IN_USE = Statement(
    select(literal(1))
    .where(_T.c.credential_id == bindparam("credential_id"), _LIVE_OR_RESTORABLE)
    .limit(1)
)
_updates = StatementCache()
_lists = StatementCache()
_counts = StatementCache()


# Dict lookups: Enum(value) costs ten times as much, twice per row of a 50-row page.
_PROTOCOLS = {p.value: p for p in Protocol}
_ENCRYPTIONS = {e.value: e for e in Encryption}


def _to_account(r: Sequence[Any]) -> Account:
    """Maps a row of all account columns, in table order, to the domain object."""
    last_test = None
    if r[22] is not None:
        last_test = ConnectionTestSummary(
            time_us=r[22], success=bool(r[23]), error_code=r[24], message=r[25] or ""
        )
    return Account(
        id=r[0],
        tenant_id=r[1],
        user_id=r[2],
        account_name=r[3],
        email_address=r[5],
        protocol=_PROTOCOLS[r[7]],
        hostname=r[8],
        port=r[9],
        encryption=_ENCRYPTIONS[r[10]],
        username=r[11],
        credential_id=r[12],
        is_sync_enabled=bool(r[13]),
        sync_interval=r[14],
        last_sync_at_us=r[15],
        is_syncing=bool(r[16]),
        is_enabled=bool(r[17]),
        created_at_us=r[18],
        updated_at_us=r[19],
        version=r[20],
        deleted_at_us=r[21],
        last_test=last_test,
        credential_host=r[26],
    )


_COLUMN_NAMES = [c.name for c in _COLUMNS]
assert _COLUMN_NAMES == [
    "id", "tenant_id", "user_id", "account_name", "account_name_normalized", "email_address",
    "email_normalized",
    "protocol", "hostname", "port", "encryption", "username", "credential_id",
    "is_sync_enabled", "sync_interval", "last_sync_at", "is_syncing", "is_enabled",
    "created_at", "updated_at", "version", "deleted_at", "last_test_at", "last_test_success",
    "last_test_error", "last_test_message", "credential_host",
], "_to_account reads columns by position"  # fmt: skip


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
        "last_test_at": None,
        "last_test_success": None,
        "last_test_error": None,
        "last_test_message": None,
        "credential_host": account.credential_host,
    }


def insert_account(tx: Tx, account: Account) -> None:
    """Inserts a new account; ALREADY_EXISTS when the owner has a live one for the address."""
    try:
        tx.execute(_INSERT, _to_values(account))
    except tx.integrity_error as exc:
        raise AlreadyExistsError(_DUPLICATE_EMAIL) from exc


def insert_accounts(tx: Tx, owner: Caller, accounts: Sequence[Account]) -> None:
    """Bulk insert of one owner's new accounts (imports, benchmark seeding), counter included."""
    tx.execute_many(_INSERT, [_to_values(a) for a in accounts])
    counts.add_live(tx, owner, len(accounts))


def get_account(tx: Tx, account_id: str, *, for_update: bool = False) -> Account | None:
    """The account with this id whoever owns it; callers check ownership.

    `for_update` locks the row until the transaction ends (see _GET_FOR_UPDATE).
    """
    row = tx.first(_GET_FOR_UPDATE if for_update else _GET, {"account_id": account_id})
    return _to_account(row) if row else None


def _update_statement(columns: frozenset[str], *, compare_version: bool) -> Statement:
    def build() -> Any:
        stmt = update(_T).where(_T.c.id == bindparam("b_account_id"))
        if compare_version:
            stmt = stmt.where(_T.c.version == bindparam("b_version"))
        return stmt.values({name: bindparam(name) for name in sorted(columns)})

    return _updates.get((columns, compare_version), build)


def update_account(tx: Tx, account_id: str, expected_version: int, values: dict[str, Any]) -> bool:
    """Compare-and-swap update: applies only if the row still has `expected_version`.

    Returns False when a concurrent write got there first. `values` uses column names and must
    include the new `version`.
    """
    if "email_address" in values:
        values = {**values, "email_normalized": values["email_address"].lower()}
    if "account_name" in values:
        values = {**values, "account_name_normalized": values["account_name"].lower()}
    statement = _update_statement(frozenset(values), compare_version=True)
    try:
        cursor = tx.execute(
            statement, {**values, "b_account_id": account_id, "b_version": expected_version}
        )
    except tx.integrity_error as exc:
        raise AlreadyExistsError(_DUPLICATE_EMAIL) from exc
    return bool(cursor.rowcount)


def set_test_result(tx: Tx, account_id: str, values: dict[str, Any]) -> None:
    """Stores a connection test outcome without touching the version (settings are unchanged)."""
    statement = _update_statement(frozenset(values), compare_version=False)
    tx.execute(statement, {**values, "b_account_id": account_id})


def _filter_shape(flt: AccountFilter) -> tuple[bool, ...]:
    """(show_deleted, the four filters..., all_users): which statement a list or count needs."""
    return (
        flt.show_deleted,
        flt.protocol is not None,
        flt.is_enabled is not None,
        flt.is_sync_enabled is not None,
        bool(flt.query),
        flt.all_users,
    )


def _conditions(shape: tuple[bool, ...]) -> list[ColumnElement[bool]]:
    show_deleted, by_protocol, by_enabled, by_sync, by_query, all_users = shape
    conditions: list[ColumnElement[bool]] = [
        _T.c.tenant_id == bindparam("tenant_id"),
        _LIVE_OR_RESTORABLE if show_deleted else _T.c.deleted_at.is_(None),
    ]
    if not all_users:
        conditions.append(_T.c.user_id == bindparam("user_id"))
    if by_protocol:
        conditions.append(_T.c.protocol == bindparam("protocol"))
    if by_enabled:
        conditions.append(_T.c.is_enabled == bindparam("is_enabled"))
    if by_sync:
        conditions.append(_T.c.is_sync_enabled == bindparam("is_sync_enabled"))
    if by_query:
        pattern: Any = bindparam("pattern")
        conditions.append(
            or_(
                _T.c.email_normalized.like(pattern, escape="\\"),
                _T.c.account_name_normalized.like(pattern, escape="\\"),
            )
        )
    return conditions


def _filter_params(caller: Caller, flt: AccountFilter, restorable_after_us: int) -> dict[str, Any]:
    params: dict[str, Any] = {"tenant_id": caller.tenant_id}
    if not flt.all_users:
        params["user_id"] = caller.user_id
    if flt.show_deleted:
        params["restorable_after"] = restorable_after_us
    if flt.protocol is not None:
        params["protocol"] = flt.protocol.value
    if flt.is_enabled is not None:
        params["is_enabled"] = flt.is_enabled
    if flt.is_sync_enabled is not None:
        params["is_sync_enabled"] = flt.is_sync_enabled
    if flt.query:
        escaped = flt.query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["pattern"] = f"%{escaped}%"
    return params


def list_accounts(
    tx: Tx,
    caller: Caller,
    flt: AccountFilter,
    *,
    restorable_after_us: int,
    after: tuple[int, str] | None,
    limit: int,
) -> list[Account]:
    """One page of the caller's accounts, newest first, strictly after the keyset `after`."""
    shape = _filter_shape(flt)

    def build() -> Any:
        conditions = _conditions(shape)
        if after is not None:
            created: Any = bindparam("after_created")
            last_id: Any = bindparam("after_id")
            conditions.append(
                or_(_T.c.created_at < created, and_(_T.c.created_at == created, _T.c.id < last_id))
            )
        return (
            select(*_COLUMNS)
            .where(*conditions)
            .order_by(_T.c.created_at.desc(), _T.c.id.desc())
            .limit(bindparam("limit"))
        )

    statement = _lists.get((shape, after is not None), build)
    params = _filter_params(caller, flt, restorable_after_us)
    params["limit"] = limit
    if after is not None:
        params["after_created"], params["after_id"] = after
    return [_to_account(row) for row in tx.rows(statement, params)]


_COUNT_RESTORABLE = Statement(
    select(func.count())
    .select_from(_T)
    .where(
        _T.c.tenant_id == bindparam("tenant_id"),
        _T.c.user_id == bindparam("user_id"),
        _T.c.deleted_at > bindparam("restorable_after"),
    )
)


def count_accounts(tx: Tx, caller: Caller, flt: AccountFilter, *, restorable_after_us: int) -> int:
    """How many of the caller's accounts match the filter.

    Without filters the live count comes from the owner's counter (plus, with show_deleted, a
    count over the deleted rows' own index), so it costs the same at 100 or 100,000 accounts.
    """
    shape = _filter_shape(flt)
    if flt.all_users and not any(shape[:5]):
        return counts.tenant_live_count(tx, caller.tenant_id)
    if not any(shape[1:]):
        live = counts.live_count(tx, caller)
        if not flt.show_deleted:
            return live
        params = {
            "tenant_id": caller.tenant_id,
            "user_id": caller.user_id,
            "restorable_after": restorable_after_us,
        }
        return live + int(tx.scalar(_COUNT_RESTORABLE, params))
    statement = _counts.get(
        shape, lambda: select(func.count()).select_from(_T).where(*_conditions(shape))
    )
    return int(tx.scalar(statement, _filter_params(caller, flt, restorable_after_us)))


def expired_deleted_accounts(tx: Tx, deleted_before_us: int, limit: int) -> list[Any]:
    """(id, credential_id) of soft-deleted accounts past retention."""
    return tx.rows(_EXPIRED, {"deleted_before": deleted_before_us, "limit": limit})


def delete_expired(tx: Tx, account_ids: Sequence[str], deleted_before_us: int) -> None:
    """Removes accounts for good (the purge), each only if still deleted before the cutoff."""
    for account_id in account_ids:
        tx.execute(_DELETE_EXPIRED, {"account_id": account_id, "deleted_before": deleted_before_us})


def credential_in_use(tx: Tx, credential_id: str, *, restorable_after_us: int) -> bool:
    """Whether a live or still-restorable account refers to the credential."""
    params = {"credential_id": credential_id, "restorable_after": restorable_after_us}
    return tx.first(_CREDENTIAL_IN_USE, params) is not None


_CREDENTIAL_HOST = Statement(
    select(_T.c.credential_host)
    .where(_T.c.credential_id == bindparam("credential_id"), _T.c.credential_host.is_not(None))
    .order_by(_T.c.created_at)
    .limit(1)
)


def credential_host_of(tx: Tx, credential_id: str) -> str | None:
    """The host an account using this credential recorded for it (binding legacy credentials)."""
    value = tx.scalar(_CREDENTIAL_HOST, {"credential_id": credential_id})
    return str(value) if value is not None else None
