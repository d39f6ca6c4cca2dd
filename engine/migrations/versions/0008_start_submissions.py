"""start_submissions: a start form sent twice starts one case

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 02:30:00
"""

from alembic import op
import sqlalchemy as sa
import engine.db


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('start_submissions',
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('created_at', engine.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instances.id'],
                            name=op.f('fk_start_submissions_instance_id_process_instances'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token', name=op.f('pk_start_submissions'))
    )
    with op.batch_alter_table('start_submissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_start_submissions_instance_id'), ['instance_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('start_submissions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_start_submissions_instance_id'))
    op.drop_table('start_submissions')
