"""The owner-scoped account repository: every query filters on the owner in SQL, rows are
mapped by column name, and the live counters change in the same statements' transaction."""

from __future__ import annotations

import dataclasses
import typing
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
from mailaccounts_server.domain.model import (
    Account,
    AccountFilter,
    ConnectionTestSummary,
    Owner,
)
from mailaccounts_server.domain.ports import AccountCreation, Lookup, UniqueViolation
from mailaccounts_server.storage import counts
from mailaccounts_server.storage.creation import create_account
from mailaccounts_server.storage.models import AccountRow
from mailaccounts_server.storage.sql import Row, Statement, StatementCache, Tx

_T = cast(Table, AccountRow.__table__)
_LIVE_OR_RESTORABLE = or_(
    _T.c.deleted_at.is_(None), _T.c.deleted_at > bindparam("restorable_after")
)

# -- rows <-> Account, by name -----------------------------------------------------------------
# The Account dataclass is the one definition of the fields: a field `x_us` is column `x`, the
# enums are stored by value, `last_test` is the four last_test_* columns, and the normalised
# columns are derived. The reader is generated once from that rule, so a read costs what a
# hand-written constructor call costs.

_ENUMS: dict[type, dict[Any, Any]] = {
    Protocol: {p.value: p for p in Protocol},
    Encryption: {e.value: e for e in Encryption},
}
_HINTS = typing.get_type_hints(Account)
_DERIVED = {"last_test"}


def _column_of(field: str) -> str:
    return field[: -len("_us")] if field.endswith("_us") else field


def _reader_source() -> str:
    args = []
    for f in dataclasses.fields(Account):
        if f.name in _DERIVED:
            continue
        column = _column_of(f.name)
        assert column in _T.c, f"Account.{f.name} has no column {column}"
        hint = _HINTS[f.name]
        if hint in _ENUMS:
            args.append(f"{f.name}=_enums[{hint.__name__}][r[{column!r}]]")
        elif hint is bool:
            args.append(f"{f.name}=bool(r[{column!r}])")
        else:
            args.append(f"{f.name}=r[{column!r}]")
    args.append("last_test=_summary(r)")
    return "def read(r):\n    return Account(" + ", ".join(args) + ")\n"


def _summary(r: Row) -> ConnectionTestSummary | None:
    if r["last_test_at"] is None:
        return None
    return ConnectionTestSummary(
        time_us=r["last_test_at"],
        success=bool(r["last_test_success"]),
        error_code=r["last_test_error"],
        message=r["last_test_message"] or "",
    )


_namespace: dict[str, Any] = {
    "Account": Account, "_summary": _summary, "_enums": _ENUMS,
    "Protocol": Protocol, "Encryption": Encryption,
}  # fmt: skip
exec(_reader_source(), _namespace)  # noqa: S102 - source built above from the dataclass
to_account: typing.Callable[[Row], Account] = _namespace["read"]


_WRITTEN = tuple(
    (f.name, _column_of(f.name), _HINTS[f.name] in _ENUMS)
    for f in dataclasses.fields(Account)
    if f.name not in _DERIVED
)


def to_values(account: Account) -> dict[str, Any]:
    """The columns of a new row."""
    values: dict[str, Any] = {}
    for name, column, is_enum in _WRITTEN:
        value = getattr(account, name)
        values[column] = value.value if is_enum else value
    values.update(normalized(values))
    values.update(last_test_at=None, last_test_success=None, last_test_error=None,
                  last_test_message=None)  # fmt: skip
    return values


def normalized(values: dict[str, Any]) -> dict[str, Any]:
    """The derived search and uniqueness columns of the given values."""
    derived: dict[str, Any] = {}
    if "email_address" in values:
        derived["email_normalized"] = values["email_address"].lower()
    if "account_name" in values:
        derived["account_name_normalized"] = values["account_name"].lower()
    return derived


# -- statements --------------------------------------------------------------------------------


def _owned(all_users: bool) -> list[ColumnElement[bool]]:
    conditions = [_T.c.tenant_id == bindparam("tenant_id")]
    if not all_users:
        conditions.append(_T.c.user_id == bindparam("user_id"))
    return conditions


def _owner_params(owner: Owner) -> dict[str, Any]:
    if owner.user_id is None:
        return {"tenant_id": owner.tenant_id}
    return {"tenant_id": owner.tenant_id, "user_id": owner.user_id}


_INSERT = Statement(insert(_T))
_EXISTS = Statement(select(literal(1)).where(_T.c.id == bindparam("account_id")))
_gets = StatementCache()
_updates = StatementCache()
_lists = StatementCache()
_counts = StatementCache()
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
_CREDENTIAL_HOST = Statement(
    select(_T.c.credential_host)
    .where(_T.c.credential_id == bindparam("credential_id"), _T.c.credential_host.is_not(None))
    .order_by(_T.c.created_at)
    .limit(1)
)
_COUNT_RESTORABLE = Statement(
    select(func.count())
    .select_from(_T)
    .where(*_owned(False), _T.c.deleted_at > bindparam("restorable_after"))
)


def _get_statement(all_users: bool, for_update: bool) -> Statement:
    def build() -> Any:
        stmt = select(*_T.c).where(_T.c.id == bindparam("account_id"), *_owned(all_users))
        # PostgreSQL locks the row for a read-modify-write, so concurrent writers queue
        # instead of losing their compare-and-swap; SQLite compiles it away (its write
        # transactions hold the database lock already).
        return stmt.with_for_update() if for_update else stmt

    return _gets.get((all_users, for_update), build)


def _update_statement(columns: frozenset[str], *, compare_version: bool) -> Statement:
    def build() -> Any:
        stmt = update(_T).where(_T.c.id == bindparam("b_account_id"), *_owned(False))
        if compare_version:
            stmt = stmt.where(_T.c.version == bindparam("b_version"))
        values: dict[str, Any] = {name: bindparam(name) for name in sorted(columns)}
        return stmt.values(values).returning(*_T.c)

    return _updates.get((columns, compare_version), build)


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
    conditions = _owned(all_users)
    conditions.append(_LIVE_OR_RESTORABLE if show_deleted else _T.c.deleted_at.is_(None))
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


def _filter_params(owner: Owner, flt: AccountFilter, restorable_after_us: int) -> dict[str, Any]:
    params = _owner_params(owner)
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


class SqlAccounts:
    """AccountRepository over SQLAlchemy-compiled statements."""

    async def get(
        self, tx: Tx, owner: Owner, account_id: str, *, for_update: bool = False
    ) -> Account | Lookup:
        """The owner's account, else whether the id is unknown or someone else's."""
        params = {"account_id": account_id, **_owner_params(owner)}
        row = await tx.first(_get_statement(owner.user_id is None, for_update), params)
        if row is not None:
            return to_account(row)
        exists = await tx.first(_EXISTS, {"account_id": account_id})
        return Lookup.FOREIGN if exists is not None else Lookup.MISSING

    async def create(self, tx: Tx, creation: AccountCreation) -> None:
        """A new account with its claim, credential, count and audit row (see creation.py)."""
        await create_account(tx, creation, to_values(creation.account))

    async def insert_many(self, tx: Tx, owner: Owner, accounts: Sequence[Account]) -> None:
        """Bulk insert of one owner's new accounts (imports, benchmark seeding)."""
        await tx.execute_many(_INSERT, [to_values(a) for a in accounts])
        await counts.add_live(tx, owner, len(accounts))

    async def update(
        self, tx: Tx, owner: Owner, account_id: str, expected_version: int, values: dict[str, Any]
    ) -> Account | None:
        values = {**values, **normalized(values)}
        statement = _update_statement(frozenset(values), compare_version=True)
        params = {**values, **_owner_params(owner), "b_account_id": account_id,
                  "b_version": expected_version}  # fmt: skip
        try:
            row = await tx.first(statement, params)
        except tx.integrity_error as exc:
            raise UniqueViolation("email") from exc
        return to_account(row) if row is not None else None

    async def set_deleted(
        self, tx: Tx, owner: Owner, account_id: str, expected_version: int, *,
        deleted_at_us: int | None, now_us: int,
    ) -> Account | None:  # fmt: skip
        values = {"deleted_at": deleted_at_us, "updated_at": now_us,
                  "version": expected_version + 1}  # fmt: skip
        changed = await self.update(tx, owner, account_id, expected_version, values)
        if changed is not None:
            await counts.add_live(tx, owner, -1 if deleted_at_us is not None else +1)
        return changed

    async def set_test_result(
        self, tx: Tx, owner: Owner, account_id: str, values: dict[str, Any]
    ) -> Account | None:
        statement = _update_statement(frozenset(values), compare_version=False)
        params = {**values, **_owner_params(owner), "b_account_id": account_id}
        row = await tx.first(statement, params)
        return to_account(row) if row is not None else None

    async def page(
        self, tx: Tx, owner: Owner, flt: AccountFilter, *, restorable_after_us: int,
        after: tuple[int, str] | None, limit: int,
    ) -> list[Account]:  # fmt: skip
        """One page, newest first, strictly after the keyset `after`."""
        shape = _filter_shape(flt)

        def build() -> Any:
            conditions = _conditions(shape)
            if after is not None:
                created: Any = bindparam("after_created")
                last_id: Any = bindparam("after_id")
                conditions.append(
                    or_(
                        _T.c.created_at < created,
                        and_(_T.c.created_at == created, _T.c.id < last_id),
                    )
                )
            return (
                select(*_T.c)
                .where(*conditions)
                .order_by(_T.c.created_at.desc(), _T.c.id.desc())
                .limit(bindparam("limit"))
            )

        statement = _lists.get((shape, after is not None), build)
        params = _filter_params(owner, flt, restorable_after_us)
        params["limit"] = limit
        if after is not None:
            params["after_created"], params["after_id"] = after
        return [to_account(row) for row in await tx.rows(statement, params)]

    async def count(
        self, tx: Tx, owner: Owner, flt: AccountFilter, *, restorable_after_us: int
    ) -> int:
        """How many of the owner's accounts match. Unfiltered, the live count comes from the
        counters (plus, with show_deleted, a count over the deleted rows' own index), so it
        costs the same at 100 or 100,000 accounts."""
        shape = _filter_shape(flt)
        if not any(shape[1:5]):
            if owner.user_id is None and not flt.show_deleted:
                return await counts.tenant_live_count(tx, owner.tenant_id)
            if owner.user_id is not None:
                live = await counts.live_count(tx, owner)
                if not flt.show_deleted:
                    return live
                params = {**_owner_params(owner), "restorable_after": restorable_after_us}
                return live + int(await tx.scalar(_COUNT_RESTORABLE, params))
        statement = _counts.get(
            shape, lambda: select(func.count()).select_from(_T).where(*_conditions(shape))
        )
        return int(await tx.scalar(statement, _filter_params(owner, flt, restorable_after_us)))

    async def credential_in_use(
        self, tx: Tx, credential_id: str, *, restorable_after_us: int
    ) -> bool:
        """Whether a live or still-restorable account refers to the credential."""
        params = {"credential_id": credential_id, "restorable_after": restorable_after_us}
        return await tx.first(_CREDENTIAL_IN_USE, params) is not None

    async def credential_host_of(self, tx: Tx, credential_id: str) -> str | None:
        """The host an account using this credential recorded for it (binds legacy ones)."""
        value = await tx.scalar(_CREDENTIAL_HOST, {"credential_id": credential_id})
        return str(value) if value is not None else None

    async def expired(self, tx: Tx, deleted_before_us: int, limit: int) -> list[tuple[str, str]]:
        rows = await tx.rows(_EXPIRED, {"deleted_before": deleted_before_us, "limit": limit})
        return [(r["id"], r["credential_id"]) for r in rows]

    async def delete_expired(
        self, tx: Tx, account_ids: Sequence[str], deleted_before_us: int
    ) -> None:
        """Removes accounts for good (the purge), each only if still deleted before the cutoff."""
        for account_id in account_ids:
            params = {"account_id": account_id, "deleted_before": deleted_before_us}
            await tx.execute(_DELETE_EXPIRED, params)
