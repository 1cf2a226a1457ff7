"""Bearer tokens issued to users while the services run.

Each token's id, the user it acts for, its SHA-256 (never the token) and when it was issued. Tokens set in
AGENTMEM_API_TOKENS stay in the settings; these are issued and revoked without a restart.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("digest", sa.Text, nullable=False, unique=True),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("tokens_user", "tokens", ["user_id"])


def downgrade() -> None:
    op.drop_index("tokens_user", "tokens")
    op.drop_table("tokens")
