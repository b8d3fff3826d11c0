"""outbox rows name their conversation (chatroute history); a tenant's timers by due time

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("conversation_id", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_outbox_conversation", ["tenant", "conversation_id"])
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.create_index("ix_timers_tenant_due", ["tenant", "state", "due"])


def downgrade() -> None:
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index("ix_timers_tenant_due")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_conversation")
        batch_op.drop_column("conversation_id")
