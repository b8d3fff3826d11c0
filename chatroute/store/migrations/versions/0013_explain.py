"""explanations: each group's census (members, unavailable, full), counted from the
respondents as they are; the rule that routed each conversation

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# chatroute.domain.explain.standing, in SQL.
_COUNT = """
INSERT INTO group_census (tenant, group_id, members, unavailable, "full")
SELECT m.tenant, m.group_id, count(*),
       sum(CASE WHEN r.status <> 'available' THEN 1 ELSE 0 END),
       sum(CASE WHEN r.status = 'available' AND r.load >= r.slots THEN 1 ELSE 0 END)
FROM memberships m
JOIN respondents r ON r.tenant = m.tenant AND r.respondent_id = m.respondent_id
GROUP BY m.tenant, m.group_id
"""


def upgrade() -> None:
    op.create_table(
        "group_census",
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("group_id", sa.String(length=200), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("unavailable", sa.Integer(), nullable=False),
        sa.Column("full", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "group_id", name=op.f("pk_group_census")),
    )
    op.execute(_COUNT)
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rule_id", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("rule_id")
    op.drop_table("group_census")
