"""A migration that fails on purpose (the testbed's guestbook-broken image, for tests only).

Revision ID: 9999
Revises: 0002
"""

from alembic import op

revision = "9999"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("SELECT 1 / 0")


def downgrade():
    pass
