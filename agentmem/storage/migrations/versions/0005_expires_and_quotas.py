"""Facts that stop holding, and a user's quota read cheaply.

Each fact's expiry (Unix seconds; NULL: it holds until forgotten or replaced; facts recorded before this revision
have none). The events' fact index also covers kind and time, so a user's facts handed over in the last hour are
read through that user's facts alone, not through every event of their kind.

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
    op.drop_index("events_fact", "events")
    op.create_index("events_fact", "events", ["fact_id", "kind", "ts"])


def downgrade() -> None:
    op.drop_index("events_fact", "events")
    op.create_index("events_fact", "events", ["fact_id"])
    op.drop_index("facts_expires", "facts")
    with op.batch_alter_table("facts") as facts:
        facts.drop_column("expires")
