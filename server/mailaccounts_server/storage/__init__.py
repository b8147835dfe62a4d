"""Storage adapter: SQLite or PostgreSQL on the event loop, owner-scoped repositories, and
the Alembic migrations. `sql_storage()` is what app.py plugs into the domain."""

from mailaccounts_server.domain.ports import Storage
from mailaccounts_server.storage.accounts import SqlAccounts
from mailaccounts_server.storage.audit import SqlAuditLog
from mailaccounts_server.storage.credentials import SqlCredentials
from mailaccounts_server.storage.database import Database, Limits, Reachability, open_database
from mailaccounts_server.storage.idempotency import SqlIdempotencyKeys


def sql_storage() -> Storage:
    """The repositories over this package's compiled SQL."""
    return Storage(
        accounts=SqlAccounts(),
        credentials=SqlCredentials(),
        audit=SqlAuditLog(),
        keys=SqlIdempotencyKeys(),
    )


__all__ = ["Database", "Limits", "Reachability", "SqlAccounts", "open_database", "sql_storage"]
