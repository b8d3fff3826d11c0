"""routing policy v2: declared groups, rule targets, priorities, sticky routing, deadlines,
idle close

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("group_id", sa.String(length=200), nullable=False),
        sa.Column("hours", sa.JSON(), nullable=True),
        sa.Column("max_queue", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "group_id", name=op.f("pk_groups")),
    )
    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("targets", sa.JSON(), nullable=True))
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("rule_targets", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("target", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("excluded", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("active_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("unrouted_code", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("close_cause", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("overflows", sa.JSON(), nullable=True))
        batch_op.create_index("ix_conversations_visitor", ["tenant", "visitor"], unique=False)
    # joined_at: existing entries joined their queue when they were queued.
    with op.batch_alter_table("queue_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("joined_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("cause", sa.String(length=20), nullable=False, server_default="new")
        )
        batch_op.add_column(sa.Column("excluded", sa.String(length=200), nullable=True))
    op.execute("UPDATE queue_entries SET joined_at = queued_at")
    with op.batch_alter_table("queue_entries", schema=None) as batch_op:
        batch_op.alter_column("joined_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.drop_index("ix_queue_entries_order")
    # The queue's order (model.QueueEntry.order_key): priority first, highest first.
    op.create_index(
        "ix_queue_entries_order",
        "queue_entries",
        ["tenant", "group_id", sa.text("priority DESC"), "joined_at", "seq"],
        unique=False,
    )
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sticky_within_s", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("answer_within_s", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("pause_on_no_answer", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("close_after_idle_s", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("idle_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("idle_since")
        batch_op.drop_column("close_after_idle_s")
        batch_op.drop_column("pause_on_no_answer")
        batch_op.drop_column("answer_within_s")
        batch_op.drop_column("sticky_within_s")
    op.drop_index("ix_queue_entries_order", table_name="queue_entries")
    with op.batch_alter_table("queue_entries", schema=None) as batch_op:
        batch_op.drop_column("excluded")
        batch_op.drop_column("cause")
        batch_op.drop_column("joined_at")
        batch_op.drop_column("priority")
        batch_op.create_index("ix_queue_entries_order", ["tenant", "group_id", "seq"], unique=False)
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_visitor")
        batch_op.drop_column("overflows")
        batch_op.drop_column("close_cause")
        batch_op.drop_column("unrouted_code")
        batch_op.drop_column("active_at")
        batch_op.drop_column("excluded")
        batch_op.drop_column("target")
        batch_op.drop_column("rule_targets")
        batch_op.drop_column("priority")
    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.drop_column("targets")
    op.drop_table("groups")
