"""caller identity: audit actor columns, tenant audit index, credentials bound to their host

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 17:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    # Plain ADD COLUMNs: no batch table copy on SQLite (see 0002).
    op.add_column("accounts", sa.Column("credential_host", sa.String(length=253), nullable=True))
    op.add_column("credentials", sa.Column("host", sa.String(length=253), nullable=True))
    op.add_column(
        "audit_events", sa.Column("actor_identity", sa.Text(), server_default="", nullable=False)
    )
    op.add_column(
        "audit_events", sa.Column("actor_subject", sa.Text(), server_default="", nullable=False)
    )
    op.create_index("ix_audit_tenant_time", "audit_events", ["tenant_id", "time", "id"])
    # Existing passwords were entered for the account's present host: bind them to it (in
    # Python, as the domain normalises it). Their ciphertexts keep the legacy associated data
    # until `rotate-keys` re-seals them with the host.
    accounts = sa.table(
        "accounts",
        sa.column("id", sa.String),
        sa.column("hostname", sa.String),
        sa.column("credential_host", sa.String),
    )
    conn = op.get_bind()
    after = ""
    while True:
        rows = conn.execute(
            sa.select(accounts.c.id, accounts.c.hostname)
            .where(accounts.c.id > after)
            .order_by(accounts.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        conn.execute(
            sa.update(accounts)
            .where(accounts.c.id == sa.bindparam("row_id"))
            .values(credential_host=sa.bindparam("host")),
            [{"row_id": r.id, "host": r.hostname.strip().rstrip(".").lower()} for r in rows],
        )
        after = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_audit_tenant_time", table_name="audit_events")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("actor_subject")
        batch_op.drop_column("actor_identity")
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_column("host")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("credential_host")
