"""statistics: per-contact and per-conversation figures kept by the stats worker

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stats_counter", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("stats_seq", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.create_index("ix_conversations_stats", ["tenant", "stats_seq"])
    op.create_table(
        "stats_checkpoints",
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("commission", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name="pk_stats_checkpoints"),
    )
    op.create_table(
        "contact_figures",
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("conversation_id", sa.String(length=200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("respondent", sa.String(length=200), nullable=False),
        sa.Column("group_id", sa.String(length=200), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.Column("transferred", sa.Integer(), nullable=False),
        sa.Column("transferred_to", sa.String(length=200), nullable=True),
        sa.Column("snoozes", sa.Integer(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("commission", sa.Float(), nullable=False),
        sa.Column("first_response_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "conversation_id", "number", name="pk_contact_figures"),
    )
    op.create_index(
        "ix_contact_figures_started", "contact_figures", ["tenant", "started_at"], unique=False
    )
    op.create_table(
        "conversation_figures",
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("conversation_id", sa.String(length=200), nullable=False),
        sa.Column("group_id", sa.String(length=200), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("wait_s", sa.Float(), nullable=True),
        sa.Column("unrouted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "conversation_id", name="pk_conversation_figures"),
    )
    op.create_index(
        "ix_conversation_figures_started",
        "conversation_figures",
        ["tenant", "started_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_conversation_figures_started", table_name="conversation_figures")
    op.drop_table("conversation_figures")
    op.drop_index("ix_contact_figures_started", table_name="contact_figures")
    op.drop_table("contact_figures")
    op.drop_table("stats_checkpoints")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_stats")
        batch_op.drop_column("stats_seq")
        batch_op.drop_column("queued_at")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("stats_counter")
