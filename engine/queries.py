"""Read-side queries for lists: the inbox. Each is one indexed query."""

from __future__ import annotations

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from .identity import groups_of
from .models import Task, TaskCandidate, User


def open_tasks_for_user_query(user: User):
    """Open tasks assigned to the user, or unassigned with the user (or one of their groups) as candidate."""
    groups = sorted(groups_of(user))
    candidate = (
        select(TaskCandidate.task_id)
        .where(or_(and_(TaskCandidate.kind == "user", TaskCandidate.value == user.username),
                   and_(TaskCandidate.kind == "group", TaskCandidate.value.in_(groups))))
    )
    excluded = exists().where(TaskCandidate.task_id == Task.id, TaskCandidate.kind == "not",
                              TaskCandidate.value == user.username)
    return select(Task).where(
        Task.state == "open",
        or_(Task.assignee == user.username, and_(Task.assignee.is_(None), Task.id.in_(candidate))),
        ~excluded,
    )


def open_tasks_for_user(session: Session, user: User, *, limit: int = 50, offset: int = 0) -> list[Task]:
    # Due first, undated last. Written as NULLS LAST (not `due_at IS NULL, due_at`): PostgreSQL can then
    # walk the (state, due_at) index in order and stop after one page instead of sorting every visible task.
    query = open_tasks_for_user_query(user).order_by(Task.due_at.asc().nulls_last(), Task.priority.desc(),
                                                     Task.created_at, Task.id)
    return list(session.scalars(query.limit(limit).offset(offset)))
