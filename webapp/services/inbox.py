"""The inbox: my tasks and my team's claimable tasks, filtered, sorted and paged by keyset.

Keyset pagination (a cursor of the last row's sort values) stays fast however many open tasks there
are; counts stop at COUNT_CAP so that counting is bounded too. The database keeps only the user's tasks
(engine.queries: which tasks, and how each is read along an index), so that a page reads its rows and
stops; the team's count is read from the user's candidate entries.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from urllib.parse import urlencode

from sqlalchemy import exists, func, or_, select, tuple_
from sqlalchemy.orm import Session, aliased

from engine import queries
from engine.db import INTEGER_RANGE
from engine.models import ProcessDefinition, ProcessInstance, Task, TaskCandidate, Unit, User

VIEWS = ("mine", "team")
SORTS = ("due", "priority", "created")
DUES = ("", "overdue", "soon")
COUNT_CAP = 99  # a tab shows "99+" beyond: nobody reads a larger count, and counting stays cheap


@dataclass(frozen=True)
class InboxFilter:
    view: str = "mine"
    process: str = ""
    due: str = ""
    unit: str = ""
    text: str = ""
    sort: str = "due"

    @classmethod
    def from_args(cls, args) -> InboxFilter:
        def pick(name, allowed, default):
            value = (args.get(name) or "").strip()
            return value if value in allowed else default

        return cls(view=pick("view", VIEWS, "mine"), process=(args.get("process") or "").strip()[:255],
                   due=pick("due", DUES, ""), unit=(args.get("unit") or "").strip()[:64],
                   text=(args.get("text") or "").strip()[:100], sort=pick("sort", SORTS, "due"))

    def args(self, **changes) -> dict:
        values = asdict(replace(self, **changes))
        return {k: v for k, v in values.items() if v and v != getattr(InboxFilter, k, None)}

    def query_string(self) -> str:
        return urlencode(self.args())

    @property
    def active(self) -> bool:
        return bool(self.process or self.due or self.unit or self.text)


@dataclass
class InboxRow:
    task: Task
    case_number: str
    process_name: str
    overdue: bool
    due_soon: bool


@dataclass
class InboxPage:
    rows: list[InboxRow]
    counts: dict[str, int]
    next_cursor: str | None
    capped: set[str] = field(default_factory=set)
    processes: dict[str, str] = field(default_factory=dict)  # key -> name, for the rows and the filter


@cache
def _walked(view: str):
    """Open tasks of a view, each checked on its own (engine.queries), read along a sort index: a page
    stops after its rows. For the team view that is fast when many open tasks are the user's."""
    if view == "mine":
        return select(Task).where(queries.assigned_visible())
    return select(Task).where(queries.unassigned_visible(many=True))


@cache
def _from_entries():
    """The team's tasks read from all of the user's candidate entries (each task once): as many rows as
    entries, however few open tasks there are or the filters keep (`whole`: see queries.candidate_tasks)."""
    entries = queries.candidate_tasks(whole=True)
    return (select(Task).select_from(entries).join(Task, Task.id == entries.c.task_id)
            .where(Task.state == "open", Task.assignee.is_(None), queries.not_excluded()))


@cache
def _team_entries():
    """The user's candidate entries (each task once), and the condition on a task row that its entry counts
    (open, unassigned, not excluded): to be completed with the filters and put in an EXISTS per entry."""
    entries = queries.candidate_tasks()
    task = (select(Task.id).where(Task.id == entries.c.task_id, Task.state == "open", Task.assignee.is_(None),
                                  queries.not_excluded()))
    return entries, task


def _source(f: InboxFilter, walk: bool, now: datetime, soon_days: int):
    """The filtered tasks of the view as a query, and the entity whose columns sort and page it."""
    if walk:
        return _filtered(_walked(f.view), f, now, soon_days), Task
    # OFFSET 0 keeps both databases from merging this into the sorted page query, where they would walk
    # the sort index again (probing the entries) instead of sorting the few tasks found
    found = aliased(Task, _filtered(_from_entries(), f, now, soon_days).offset(0).subquery())
    return select(found), found


def _filtered(query, f: InboxFilter, now: datetime, soon_days: int):
    if f.process:
        query = query.where(Task.process_key == f.process)
    if f.due == "overdue":
        query = query.where(Task.due_at.is_not(None), Task.due_at < now)
    elif f.due == "soon":
        query = query.where(Task.due_at >= now, Task.due_at < now + timedelta(days=soon_days))
    if f.unit:
        escaped = f.unit.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        # OFFSET 0 keeps this a lookup per task for PostgreSQL: as a join it underestimates the tasks that are
        # both the user's and the unit's, and sorts all of them instead of reading in order (200 ms)
        query = query.where(exists(select(TaskCandidate.task_id).where(
            TaskCandidate.task_id == Task.id, TaskCandidate.kind == "group",
            or_(TaskCandidate.value == f.unit, TaskCandidate.value.like(escaped + ":%", escape="\\"))).offset(0)))
    if f.text:
        escaped = f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Task.title.ilike(f"%{escaped}%", escape="\\"))
    return query


def _after(query, t, sort: str, cursor: list | None):
    """Rows of `t` (Task or an alias) after the cursor in the sort order (keyset), and the ordering; due
    dates: see `_due_page`. PostgreSQL reads the team's tasks along ix_tasks_state_priority/_created (state,
    key, id), SQLite along ix_tasks_open_priority/_created (state, assignee, key, id). No `assignee` first
    here (as in `_due_page`): PostgreSQL would then take a read in due-date order with an incremental sort,
    costed as if the unassigned tasks were a small group (100 ms for the overdue filter)."""
    value, last_id = cursor if cursor is not None else (None, None)
    if sort == "priority":
        if cursor is not None:
            query = query.where(tuple_(t.priority, t.id) < tuple_(value, last_id))
        return query.order_by(t.priority.desc(), t.id.desc())
    if cursor is not None:
        at = datetime.fromisoformat(value)
        query = query.where(tuple_(t.created_at, t.id) < tuple_(at, last_id))
    return query.order_by(t.created_at.desc(), t.id.desc())


def _due_page(session: Session, query, t, cursor: list | None, limit: int, values: dict) -> list[Task]:
    """By due date, tasks without one last: two index-ordered reads instead of one sort of everything."""
    # `assignee` (one value in either view) first and due_at kept in the undated order: then PostgreSQL reads
    # ix_tasks_open_assignee (state, assignee, due_at, id) in order (see engine.queries)
    order = (t.assignee, t.due_at, t.id)
    tasks: list[Task] = []
    if cursor is None or cursor[0] is not None:
        dated = query.where(t.due_at.is_not(None))
        if cursor is not None:
            at = datetime.fromisoformat(cursor[0])
            dated = dated.where(tuple_(t.due_at, t.id) > tuple_(at, cursor[1]))
        tasks = list(session.scalars(dated.order_by(*order).limit(limit), values))
        cursor = None
    if len(tasks) < limit:
        undated = query.where(t.due_at.is_(None))
        if cursor is not None:
            undated = undated.where(t.id > cursor[1])
        tasks += session.scalars(undated.order_by(*order).limit(limit - len(tasks)), values)
    return tasks


def _due_after(query, t, cursor: list | None):
    """The order of `_due_page` in one sorted statement: dated tasks by date and id, then undated by id."""
    if cursor is not None and cursor[0] is not None:
        at = datetime.fromisoformat(cursor[0])
        query = query.where(or_(t.due_at.is_(None), tuple_(t.due_at, t.id) > tuple_(at, cursor[1])))
    elif cursor is not None:
        query = query.where(t.due_at.is_(None), t.id > cursor[1])
    return query.order_by(t.due_at.is_(None), t.due_at, t.id)


def _cursor(task: Task, sort: str) -> str:
    if sort == "priority":
        value = task.priority
    elif sort == "created":
        value = task.created_at.isoformat()
    else:
        value = task.due_at.isoformat() if task.due_at else None
    return base64.urlsafe_b64encode(json.dumps([value, task.id]).encode()).decode().rstrip("=")


MAX_CURSOR = 200  # characters; a real one has about 80


def decode_cursor(text: str | None, sort: str = "due") -> list | None:
    """The position a page link carries, or None (the first page) for anything that is not one: it comes
    from the URL, so it may be anything."""
    if not text or len(text) > MAX_CURSOR:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)
                and len(value[1]) <= 36 and "\x00" not in value[1]):
            return None
        if sort == "priority":
            whole = isinstance(value[0], int) and not isinstance(value[0], bool)
            return value if whole and INTEGER_RANGE[0] <= value[0] <= INTEGER_RANGE[1] else None
        if value[0] is None and sort == "due":
            return value
        if isinstance(value[0], str):
            datetime.fromisoformat(value[0])
            return value
    except (ValueError, TypeError, RecursionError):
        return None
    return None


def count(session: Session, user: User, f: InboxFilter, view: str, *, now: datetime, soon_days: int = 2) -> int:
    """How many open tasks the view has, counted up to COUNT_CAP + 1."""
    if view == "mine":
        counted = _filtered(_walked(view).with_only_columns(Task.id), f, now, soon_days)
    else:
        # From the user's candidate entries, which stops after COUNT_CAP + 1 hits (walking the open tasks
        # would read ~15 tasks per hit, ~75 with a text filter). The task is looked up per entry, in an
        # EXISTS that OFFSET 0 keeps from becoming a join: as a join, SQLite may walk a range of tasks (a due
        # filter) and probe the entries, and PostgreSQL's generic plan of the prepared statement scans all
        # tasks for a title filter (90 and 45 ms).
        entries, task = _team_entries()
        counted = select(entries.c.task_id).where(exists(_filtered(task, f, now, soon_days).offset(0)))
    limited = counted.limit(COUNT_CAP + 1).subquery()
    return session.scalar(select(func.count()).select_from(limited), queries.params(user)) or 0


def _walk_team(session: Session, user: User, team_count: int) -> bool:
    """Whether to walk the team's tasks in sort order: that finds a page quickly when more than COUNT_CAP of
    them pass the filters and the user has many candidate entries (as the entries of a unit have).
    Otherwise the tasks found from the entries are sorted: few entries, or few tasks that pass the filters,
    where a walk would read most open tasks."""
    return team_count > COUNT_CAP and queries.many_candidates(session, user)


def inbox(session: Session, user: User, f: InboxFilter, *, now: datetime, after: str | None = None,
          size: int = 25, soon_days: int = 2) -> InboxPage:
    """One page of a view, with both views' counts."""
    values = queries.params(user)
    counts = {view: count(session, user, f, view, now=now, soon_days=soon_days) for view in VIEWS}
    cursor = decode_cursor(after, f.sort)
    walk = f.view == "mine" or _walk_team(session, user, counts["team"])
    query, entity = _source(f, walk, now, soon_days)
    if f.sort == "due" and not walk:  # the tasks found are sorted anyway: both parts in one statement
        tasks = list(session.scalars(_due_after(query, entity, cursor).limit(size + 1), values))
    elif f.sort == "due":
        tasks = _due_page(session, query, entity, cursor, size + 1, values)
    else:
        tasks = list(session.scalars(_after(query, entity, f.sort, cursor).limit(size + 1), values))
    more = len(tasks) > size
    tasks = tasks[:size]
    ids = {t.instance_id for t in tasks}
    numbers = dict(session.execute(select(ProcessInstance.id, ProcessInstance.case_number)
                                   .where(ProcessInstance.id.in_(ids))).all()) if ids else {}
    names = process_names(session)
    soon = now + timedelta(days=soon_days)
    rows = [InboxRow(t, numbers.get(t.instance_id, ""), names.get(t.process_key, t.process_key),
                     overdue=bool(t.due_at and t.due_at < now), due_soon=bool(t.due_at and now <= t.due_at < soon))
            for t in tasks]
    capped = {v for v, n in counts.items() if n > COUNT_CAP}
    counts = {v: min(n, COUNT_CAP) for v, n in counts.items()}  # shown as "99+"
    return InboxPage(rows, counts, _cursor(tasks[-1], f.sort) if more else None, capped, names)


def process_names(session: Session) -> dict[str, str]:
    """Process key -> name of its newest version."""
    rows = session.execute(select(ProcessDefinition.key, ProcessDefinition.name)
                           .order_by(ProcessDefinition.key, ProcessDefinition.version)).all()
    return dict(rows)


def unit_options(session: Session, user: User) -> list[tuple[str, str]]:
    """Units whose tasks the user may see: the units of their memberships."""
    ids = sorted({m.unit_id for m in user.memberships})
    if not ids:
        return []
    return [(u.id, u.name) for u in session.scalars(select(Unit).where(Unit.id.in_(ids)).order_by(Unit.name))]
