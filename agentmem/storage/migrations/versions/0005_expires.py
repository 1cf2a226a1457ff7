"""Facts that stop holding: each fact's expiry (Unix seconds; NULL: it holds until forgotten or replaced).

Facts recorded before this revision have none, as before.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("facts") as facts:
        facts.add_column(sa.Column("expires", sa.Float))
    op.create_index("facts_expires", "facts", ["expires"])


def downgrade() -> None:
    op.drop_index("facts_expires", "facts")
    with op.batch_alter_table("facts") as facts:
        facts.drop_column("expires")
