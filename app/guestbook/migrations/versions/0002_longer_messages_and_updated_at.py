"""Allow long messages, add updated_at (backfilled from created_at), index created_at.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column("entries", "message", type_=sa.Text(), existing_type=sa.String(length=500))
    # Add, backfill, then constrain: existing rows get their creation time, not the migration's.
    op.add_column("entries", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE entries SET updated_at = created_at")
    op.alter_column(
        "entries",
        "updated_at",
        nullable=False,
        server_default=sa.text("now()"),
        existing_type=sa.DateTime(timezone=True),
    )
    op.create_index("ix_entries_created_at", "entries", ["created_at"])


def downgrade():
    op.drop_index("ix_entries_created_at", table_name="entries")
    op.drop_column("entries", "updated_at")
    # Messages longer than the old limit are cut so the column can narrow again.
    op.alter_column(
        "entries",
        "message",
        type_=sa.String(length=500),
        existing_type=sa.Text(),
        postgresql_using="left(message, 500)",
    )
