"""monitoring: the months a case opened and ended, in German time, for the figures

The figures group cases by month; integer month columns (YYYYMM in Europe/Berlin, written at save by
engine/reporting/facts.py) make that a grouping of integers instead of date comparisons. Existing rows
are filled here from opened_at and ended_at.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 13:20:00
"""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _month(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    local = value.astimezone(ZoneInfo("Europe/Berlin"))
    return local.year * 100 + local.month


def upgrade() -> None:
    with op.batch_alter_table('case_facts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('opened_month', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('ended_month', sa.Integer(), nullable=True))
        batch_op.create_index('ix_case_facts_months', ['request', 'opened_month', 'ended_month'], unique=False)
    bind = op.get_bind()
    facts = sa.table('case_facts', sa.column('instance_id', sa.Integer()), sa.column('opened_at'),
                     sa.column('ended_at'), sa.column('opened_month', sa.Integer()),
                     sa.column('ended_month', sa.Integer()))
    rows = bind.execute(sa.select(facts.c.instance_id, facts.c.opened_at, facts.c.ended_at)).all()
    for instance_id, opened, ended in rows:
        bind.execute(facts.update().where(facts.c.instance_id == instance_id)
                     .values(opened_month=_month(opened), ended_month=_month(ended)))


def downgrade() -> None:
    with op.batch_alter_table('case_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_case_facts_months')
        batch_op.drop_column('ended_month')
        batch_op.drop_column('opened_month')
