"""The ledger's tables: facts, events, meta (fence, live_version), versions, nights.

Each table and index is created only where it is missing, as CREATE ... IF NOT EXISTS did before migrations:
a ledger made then (perhaps before nights or events_kind existed) keeps its rows and gains what it lacks.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = {
    "facts": [
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("relation", sa.Text, nullable=False),
        sa.Column("object", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("stage", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("scale", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.Column("reason", sa.Text),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.Column("version_added", sa.Integer),
        sa.Column("version_removed", sa.Integer),
    ],
    "events": [
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fact_id", sa.Text),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    ],
    "meta": [
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    ],
    "versions": [
        sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    ],
    "nights": [
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("finished", sa.Float),
        sa.Column("report", sa.Text),
    ],
}
INDEXES = {"facts_user": ("facts", "user_id"), "facts_status": ("facts", "status"),
           "events_fact": ("events", "fact_id"), "events_kind": ("events", "kind")}


def upgrade() -> None:
    have = sa.inspect(op.get_bind())
    tables = set(have.get_table_names())
    for name, columns in TABLES.items():
        if name not in tables:
            # seq numbers are never reused on SQLite, even after the newest event is deleted
            op.create_table(name, *columns, **({"sqlite_autoincrement": True} if name == "events" else {}))
    for name, (table, column) in INDEXES.items():
        if name not in {i["name"] for i in have.get_indexes(table)}:
            op.create_index(name, table, [column])


def downgrade() -> None:
    for name in TABLES:
        op.drop_table(name)
