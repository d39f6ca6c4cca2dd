"""Read-side queries for lists: the inbox. Each is an indexed query that stops after the rows it needs.

Who sees an open task: its assignee; while it is unassigned, each of its candidates (by name, or through
one of their groups, see `identity.groups_of`); never a user the task excludes (a `not` candidate).

How the database finds the first tasks of that set in a sort order decides the speed at 100,000 open tasks:

- Assigned and unassigned tasks are separate index ranges (state, assignee, ...), read as separate parts,
  never as one OR: with an OR SQLite merges both branches through the candidate index and sorts every
  visible task (200 ms at 100,000 open tasks).
- A user who is candidate of many tasks (`many_candidates`): walk an index of the open unassigned tasks in
  the sort order and check each task with primary-key lookups in task_candidates (`candidate_of`,
  `not_excluded`: correlated EXISTS, which no planner turns into the driving table) until the page is full.
  The sort indexes carry the task id, so that the walk reads the index alone and fetches only the rows it
  keeps. The order starts with `assignee` (NULL throughout): PostgreSQL does not treat `assignee IS NULL`
  as an equality, and reads the (state, assignee, ...) index in order only when the order names it.
- A user with few candidate entries: the database reads those entries (`candidate_ids`) and sorts their tasks.

The conditions take the user as bound parameters (`params(user)`), so that statements are built once.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import Integer, String, and_, bindparam, exists, func, or_, select, union_all
from sqlalchemy.orm import Session, aliased

from .identity import groups_of
from .models import Task, TaskCandidate, User

MANY = 1000  # candidate entries (open tasks have them) beyond which unassigned tasks are read by walking an index

USER = bindparam("inbox_user", type_=String)
GROUPS = bindparam("inbox_groups", type_=String, expanding=True)


def params(user: User) -> dict:
    """The values of USER and GROUPS for this user."""
    return {"inbox_user": user.username, "inbox_groups": sorted(groups_of(user))}


def candidate_ids():
    """Ids of tasks with the user (or one of their groups) as candidate: two index searches."""
    by_name = select(TaskCandidate.task_id).where(TaskCandidate.kind == "user", TaskCandidate.value == USER)
    by_group = select(TaskCandidate.task_id).where(TaskCandidate.kind == "group", TaskCandidate.value.in_(GROUPS))
    return union_all(by_name, by_group)


def candidate_tasks(*, whole: bool = False):
    """`candidate_ids` with each task once (a task may name the user and several of their groups): an entry
    counts unless the task has a smaller one of the user's groups. For reading from the entries and
    stopping early, as a join (`Task.id == candidate_tasks().c.task_id`); an IN would read them all first.
    `whole`: read all entries first (OFFSET 0), for a read that needs all of them anyway; SQLite then drives
    the join from them instead of walking a range of tasks and probing the entries (80 ms for a due filter)."""
    other = aliased(TaskCandidate)

    def no_group(*also):  # OFFSET 0: PostgreSQL keeps a lookup per entry instead of hashing all entries first
        return ~exists(select(other.task_id).where(other.task_id == TaskCandidate.task_id, other.kind == "group",
                                                   other.value.in_(GROUPS), *also).offset(0))

    by_name = select(TaskCandidate.task_id).where(TaskCandidate.kind == "user", TaskCandidate.value == USER,
                                                  no_group())
    by_group = select(TaskCandidate.task_id).where(TaskCandidate.kind == "group", TaskCandidate.value.in_(GROUPS),
                                                   no_group(other.value < TaskCandidate.value))
    entries = union_all(by_name, by_group)
    return (entries.offset(0) if whole else entries).subquery()


def candidate_of():
    """The same as a condition on each task row (a primary-key lookup per row). OFFSET 0 keeps it a lookup
    for PostgreSQL, which otherwise joins, multiplies the estimate with other filters (a title, a unit) that
    go with it, finds too few rows to be worth reading in order, and sorts every open task (100 ms)."""
    return exists(select(TaskCandidate.task_id).where(TaskCandidate.task_id == Task.id, or_(
        and_(TaskCandidate.kind == "user", TaskCandidate.value == USER),
        and_(TaskCandidate.kind == "group", TaskCandidate.value.in_(GROUPS)))).offset(0))


def not_excluded():
    return ~exists().where(TaskCandidate.task_id == Task.id, TaskCandidate.kind == "not", TaskCandidate.value == USER)


def assigned_visible():
    """Open tasks assigned to the user (and not excluded from them)."""
    return and_(Task.state == "open", Task.assignee == USER, not_excluded())


def unassigned_visible(*, many: bool):
    """Open unassigned tasks with the user as candidate, not excluded. `many`: checked row by row along a
    sort index (fast when many tasks are the user's); otherwise driven by the user's candidate entries.
    Order such a read by `Task.assignee` first (see the module's docstring)."""
    mine = candidate_of() if many else Task.id.in_(candidate_ids())
    return and_(Task.state == "open", Task.assignee.is_(None), mine, not_excluded())


@cache
def _many_statement():
    return select(func.count()).select_from(candidate_ids().limit(MANY + 1).subquery())


def many_candidates(session: Session, user: User) -> bool:
    """Whether the user is candidate of more than MANY open tasks: an index-only count of at most
    MANY + 1 entries that picks how unassigned tasks are read (see `unassigned_visible`)."""
    return (session.scalar(_many_statement(), params(user)) or 0) > MANY


def open_tasks_for_user_query(user: User):
    """Open tasks assigned to the user, or unassigned with the user (or one of their groups) as candidate
    (the set, unordered, for counting; `open_tasks_for_user` reads pages of it)."""
    return select(Task).where(or_(assigned_visible(), unassigned_visible(many=False))).params(**params(user))


# Due first, undated last, then by priority (highest first), age and id: the index ix_tasks_open_queue
# (state, assignee, due_at, priority DESC, created_at, id). Undated tasks are read after the dated ones, as a
# range of their own, because SQLite sorts NULL first in an index.
_ORDER = (Task.due_at, Task.priority.desc(), Task.created_at, Task.id)
_LIMIT = bindparam("inbox_limit", type_=Integer)


@cache
def _page_statement(many: bool, dated: bool):
    due = Task.due_at.is_not(None) if dated else Task.due_at.is_(None)
    parts = [select(Task.id).where(assigned_visible(), due).order_by(*_ORDER),
             select(Task.id).where(unassigned_visible(many=many), due).order_by(Task.assignee, *_ORDER)]
    ids = union_all(*(select(p.limit(_LIMIT).subquery().c.id) for p in parts))
    return select(Task).where(Task.id.in_(ids)).order_by(*_ORDER).limit(_LIMIT)


def open_tasks_for_user(session: Session, user: User, *, limit: int = 50, offset: int = 0) -> list[Task]:
    """A page of the user's open tasks: due date (undated last), priority (highest first), creation, id."""
    wanted = limit + offset
    values = params(user)
    many = many_candidates(session, user)
    tasks: list[Task] = []
    for dated in (True, False):
        if len(tasks) < wanted:
            tasks += session.scalars(_page_statement(many, dated), {**values, "inbox_limit": wanted - len(tasks)})
    return tasks[offset:wanted]
