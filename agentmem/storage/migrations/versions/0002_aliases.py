"""The aliases: the person each user's relation word names ("aunt" -> "Wilhelmina Fairweather"), per user.

A ledger that already holds facts naming a user's people gets their aliases from them: of each (user, word),
the one named last among the facts not refused, replaced or forgotten.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from agentmem.extract.people import alias_word
from agentmem.facts.perspective import user_subject

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NAMED = ("spooled", "queued", "pending", "active", "failed")


def upgrade() -> None:
    aliases = op.create_table(
        "aliases",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("word", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("fact_id", sa.Text, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )
    op.create_index("aliases_fact", "aliases", ["fact_id"])
    facts = sa.table("facts", *map(sa.column, ("id", "user_id", "subject", "relation", "object", "status",
                                               "created", "updated")))
    q = sa.select(facts).where(facts.c.status.in_(NAMED)).order_by(facts.c.created, facts.c.id)
    found = {}
    for row in op.get_bind().execute(q).mappings():
        if row["subject"] == user_subject(row["user_id"]) and (word := alias_word(row["relation"])):
            found[row["user_id"], word] = {"user_id": row["user_id"], "word": word, "name": row["object"],
                                           "fact_id": row["id"], "updated": row["updated"]}
    if found:
        op.bulk_insert(aliases, list(found.values()))


def downgrade() -> None:
    op.drop_table("aliases")
