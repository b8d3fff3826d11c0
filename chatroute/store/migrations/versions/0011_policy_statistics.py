"""policy statistics (contract v2): why a conversation is unrouted, and its overflow moves

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversation_figures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unrouted_code", sa.String(length=20), nullable=True))
    op.create_table(
        "overflow_figures",
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("conversation_id", sa.String(length=200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("from_group", sa.String(length=200), nullable=False),
        sa.Column("to_group", sa.String(length=200), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "conversation_id", "number", name="pk_overflow_figures"),
    )
    op.create_index(
        "ix_overflow_figures_started", "overflow_figures", ["tenant", "started_at"], unique=False
    )
    # Before contract v2 a conversation was unrouted only when no rule matched it, and none
    # overflowed: the figures already folded get the code a fold now gives them.
    op.execute("UPDATE conversation_figures SET unrouted_code = 'no_rule' WHERE unrouted = 1")


def downgrade() -> None:
    op.drop_index("ix_overflow_figures_started", table_name="overflow_figures")
    op.drop_table("overflow_figures")
    with op.batch_alter_table("conversation_figures", schema=None) as batch_op:
        batch_op.drop_column("unrouted_code")
