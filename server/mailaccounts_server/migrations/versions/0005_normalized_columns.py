"""normalised columns hold any normalised value: accounts.email_normalized becomes TEXT

Lower-casing can lengthen a string (U+0130 'İ' becomes 'i' and U+0307, two characters), so a
valid 254-character address may normalise to more than 254 characters: PostgreSQL refused such
rows (string data right truncation) while SQLite stored them. The address itself keeps its
254-character limit; only its normalised form grows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # PostgreSQL: VARCHAR to TEXT is binary-compatible, so no table rewrite and no index
    # rebuild. SQLite: batch mode copies the table and re-creates its indexes, the partial
    # unique index on the address included (its WHERE clause is reflected).
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.alter_column(
            "email_normalized",
            existing_type=sa.String(length=254),
            type_=sa.Text(),
            existing_nullable=False,
        )


def downgrade() -> None:
    # Fails on PostgreSQL while any address normalises to more than 254 characters.
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.alter_column(
            "email_normalized",
            existing_type=sa.Text(),
            type_=sa.String(length=254),
            existing_nullable=False,
        )
