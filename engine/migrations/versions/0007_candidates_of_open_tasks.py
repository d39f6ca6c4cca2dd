"""task_candidates: entries of open tasks only

A completed task now leaves its candidate entries as a withdrawn one always did (the inbox counts and
pages read them; the task row keeps its recorded lists). This removes the entries that completed tasks
left before. Nothing to restore on downgrade: the recorded lists on the task rows are unchanged.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 16:10:00
"""

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM task_candidates WHERE task_id IN (SELECT id FROM tasks WHERE state <> 'open')")


def downgrade() -> None:
    pass
