"""inbox: the due-date index carries the task id; an index in the order of open_tasks_for_user

ix_tasks_open_assignee (state, assignee, due_at) gains the id, as the other inbox sort indexes have it: the
inbox's due-date order (due_at, id) and its keyset read the index alone and check each task's candidates
without fetching the row. ix_tasks_open_queue (state, assignee, due_at, priority DESC, created_at, id) is the
order of engine.queries.open_tasks_for_user, so that its first page is read in order and stops early.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 15:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_tasks_open_assignee', table_name='tasks')
    op.create_index('ix_tasks_open_assignee', 'tasks', ['state', 'assignee', 'due_at', 'id'], unique=False)
    op.create_index('ix_tasks_open_queue', 'tasks',
                    ['state', 'assignee', 'due_at', sa.text('priority DESC'), 'created_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_tasks_open_queue', table_name='tasks')
    op.drop_index('ix_tasks_open_assignee', table_name='tasks')
    op.create_index('ix_tasks_open_assignee', 'tasks', ['state', 'assignee', 'due_at'], unique=False)
