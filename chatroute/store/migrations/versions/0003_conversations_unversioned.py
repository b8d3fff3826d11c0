"""conversations lose their version column: the tenant lock alone orders their writers

A versioned row is updated one statement at a time (SQLAlchemy must check each row count);
without it, a batch's conversation updates go out as one executemany. Every writer of a
conversation holds its tenant's row lock, so the check never fired; respondents keep theirs
as a second guard on slot accounting.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("version")


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
