"""Scopes: each fact's scope (a user id, or '' for the shared one) and the users' own published versions.

A ledger made before scopes keeps every fact in the shared scope, where its edits already are: an existing
home answers as before, and `agentmem move-to-users` moves its users' facts into their own scopes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("facts") as facts:
        facts.add_column(sa.Column("scope", sa.Text, nullable=False, server_default=sa.text("''")))
    op.create_index("facts_scope", "facts", ["scope", "status"])
    op.create_table(
        "user_versions",
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("adapter", sa.Text),
        sa.Column("detail", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("user_versions")
    op.drop_index("facts_scope", "facts")
    with op.batch_alter_table("facts") as facts:
        facts.drop_column("scope")
