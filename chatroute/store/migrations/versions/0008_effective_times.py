"""effective times: a tenant's clock skew, its last effective time, adjusted events

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("clock_skew_s", sa.Integer(), nullable=False, server_default="5")
        )
        batch_op.add_column(sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("adjusted_events", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_column("effective_at")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("adjusted_events")
        batch_op.drop_column("effective_at")
        batch_op.drop_column("clock_skew_s")
