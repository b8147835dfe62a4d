"""accounts.account_name_normalized: Unicode-aware case-insensitive name search

SQL lower() only folds ASCII on SQLite and on PostgreSQL databases with the C locale, so the
ListAccounts query compares against a name lower-cased in Python, as it already does for the
email address.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    # A plain ADD COLUMN (no batch table copy on SQLite, which would have to re-create the
    # partial unique index on the email address).
    op.add_column(
        "accounts",
        sa.Column("account_name_normalized", sa.Text(), server_default="", nullable=False),
    )
    accounts = sa.table(
        "accounts",
        sa.column("id", sa.String),
        sa.column("account_name", sa.String),
        sa.column("account_name_normalized", sa.Text),
    )
    conn = op.get_bind()
    after = ""
    while True:
        rows = conn.execute(
            sa.select(accounts.c.id, accounts.c.account_name)
            .where(accounts.c.id > after)
            .order_by(accounts.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        conn.execute(
            sa.update(accounts)
            .where(accounts.c.id == sa.bindparam("row_id"))
            .values(account_name_normalized=sa.bindparam("normalized")),
            [{"row_id": r.id, "normalized": r.account_name.lower()} for r in rows],
        )
        after = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("account_name_normalized")
