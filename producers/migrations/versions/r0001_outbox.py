"""lintas_outbox as the code before migrations made it (SQLModel's create_all).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lintas_outbox",
        # BIGINT, but INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=36), nullable=False, unique=True),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stream_seq", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sqlite_autoincrement=True,  # positions never reused, even after pruning
    )
    op.create_index(
        "ix_lintas_outbox_pending",
        "lintas_outbox",
        ["position"],
        sqlite_where=sa.text("sent_at IS NULL"),
        postgresql_where=sa.text("sent_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_lintas_outbox_pending", table_name="lintas_outbox")
    op.drop_table("lintas_outbox")
