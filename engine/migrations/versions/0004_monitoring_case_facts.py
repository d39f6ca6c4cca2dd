"""monitoring: case facts for the figures; list and overdue indexes

The facts tables start empty: the runtime fills a case's row at its next save, and
`python -m engine.reporting rebuild-facts` writes them for every instance at once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 12:45:26.526946
"""

from alembic import op
import sqlalchemy as sa
import engine.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('case_escalations',
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=True),
    sa.Column('decision', sa.String(length=64), nullable=True),
    sa.Column('requested_at', engine.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', engine.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instances.id'], name=op.f('fk_case_escalations_instance_id_process_instances'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'key', name=op.f('pk_case_escalations'))
    )
    with op.batch_alter_table('case_escalations', schema=None) as batch_op:
        batch_op.create_index('ix_case_escalations_requested', ['requested_at'], unique=False)

    op.create_table('case_fact_topics',
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instances.id'], name=op.f('fk_case_fact_topics_instance_id_process_instances'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'topic', name=op.f('pk_case_fact_topics'))
    )
    with op.batch_alter_table('case_fact_topics', schema=None) as batch_op:
        batch_op.create_index('ix_case_fact_topics_topic', ['topic'], unique=False)

    op.create_table('case_facts',
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('process_key', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', engine.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', engine.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('request', sa.Boolean(), nullable=False),
    sa.Column('opened_at', engine.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('proactive', sa.Boolean(), nullable=False),
    sa.Column('network', sa.Boolean(), nullable=False),
    sa.Column('unit', sa.String(length=64), nullable=True),
    sa.Column('territory', sa.String(length=64), nullable=True),
    sa.Column('client_type', sa.String(length=64), nullable=True),
    sa.Column('primary_topic', sa.String(length=64), nullable=True),
    sa.Column('topics', sa.Text(), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=True),
    sa.Column('commission', sa.Boolean(), nullable=True),
    sa.Column('closure_reason', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.String(length=64), nullable=True),
    sa.Column('experts', sa.Boolean(), nullable=True),
    sa.Column('sessions', sa.Integer(), nullable=True),
    sa.Column('escalations', sa.Integer(), nullable=False),
    sa.Column('approval', sa.String(length=64), nullable=True),
    sa.Column('indicator_problem_clarity', sa.String(length=64), nullable=True),
    sa.Column('indicator_sensitisation', sa.String(length=64), nullable=True),
    sa.Column('indicator_resources', sa.String(length=64), nullable=True),
    sa.Column('indicator_independence', sa.String(length=64), nullable=True),
    sa.Column('indicator_future', sa.String(length=64), nullable=True),
    sa.Column('indicator_democratic_competence', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instances.id'], name=op.f('fk_case_facts_instance_id_process_instances'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', name=op.f('pk_case_facts'))
    )
    with op.batch_alter_table('case_facts', schema=None) as batch_op:
        batch_op.create_index('ix_case_facts_network', ['network'], unique=False)
        batch_op.create_index('ix_case_facts_opened', ['opened_at'], unique=False)
        batch_op.create_index('ix_case_facts_started', ['process_key', 'started_at'], unique=False)
        batch_op.create_index('ix_case_facts_territory', ['territory'], unique=False)

    with op.batch_alter_table('process_instances', schema=None) as batch_op:
        batch_op.create_index('ix_process_instances_started', ['started_at', 'id'], unique=False)
        batch_op.create_index('ix_process_instances_updated', ['updated_at', 'id'], unique=False)

    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_open_due', ['state', 'due_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_open_due')

    with op.batch_alter_table('process_instances', schema=None) as batch_op:
        batch_op.drop_index('ix_process_instances_updated')
        batch_op.drop_index('ix_process_instances_started')

    with op.batch_alter_table('case_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_case_facts_territory')
        batch_op.drop_index('ix_case_facts_started')
        batch_op.drop_index('ix_case_facts_opened')
        batch_op.drop_index('ix_case_facts_network')

    op.drop_table('case_facts')
    with op.batch_alter_table('case_fact_topics', schema=None) as batch_op:
        batch_op.drop_index('ix_case_fact_topics_topic')

    op.drop_table('case_fact_topics')
    with op.batch_alter_table('case_escalations', schema=None) as batch_op:
        batch_op.drop_index('ix_case_escalations_requested')

    op.drop_table('case_escalations')
