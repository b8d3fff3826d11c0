"""which tenants each frontend's RabbitMQ user may publish events for (no row: everyone may
publish for every tenant, as before)

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publishers",
        sa.Column("publisher", sa.String(length=200), nullable=False),
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("publisher", "tenant", name=op.f("pk_publishers")),
    )


def downgrade() -> None:
    op.drop_table("publishers")
