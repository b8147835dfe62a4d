"""Alembic environment: runs on the connection handed in by storage.migrate (or the URL)."""

from __future__ import annotations

from alembic import context
from mailaccounts_server.storage.models import Base
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

config = context.config
target_metadata = Base.metadata
# Several replicas may start at once: on PostgreSQL one migrates, the others wait on this lock.
_PG_LOCK_KEY = 0x6D61696C  # "mail"


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
