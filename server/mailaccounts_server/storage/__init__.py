"""Storage adapter: SQLite or PostgreSQL on the event loop, owner-scoped repositories, and
the Alembic migrations. `sql_storage()` is what app.py plugs into the domain."""

from sqlalchemy.engine import make_url

from mailaccounts_server.domain.ports import Storage
from mailaccounts_server.storage.accounts import SqlAccounts
from mailaccounts_server.storage.audit import SqlAuditLog
from mailaccounts_server.storage.credentials import SqlCredentials
from mailaccounts_server.storage.database import Database, Limits, Reachability
from mailaccounts_server.storage.idempotency import SqlIdempotencyKeys
from mailaccounts_server.storage.postgres import PostgresDatabase
from mailaccounts_server.storage.sqlite import SqliteDatabase


async def open_database(url: str, *, limits: Limits, scan_threads: int = 2) -> Database:
    """The database behind a SQLAlchemy URL (sqlite:///FILE or postgresql+psycopg://...);
    StorageUnavailable when it cannot be reached now."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SqliteDatabase(url, limits=limits, scan_threads=scan_threads)
    if backend == "postgresql":
        db = PostgresDatabase(url, limits=limits)
        await db.open()
        return db
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")


def sql_storage() -> Storage:
    """The repositories over this package's compiled SQL."""
    return Storage(
        accounts=SqlAccounts(),
        credentials=SqlCredentials(),
        audit=SqlAuditLog(),
        keys=SqlIdempotencyKeys(),
    )


__all__ = ["Database", "Limits", "Reachability", "SqlAccounts", "open_database", "sql_storage"]
