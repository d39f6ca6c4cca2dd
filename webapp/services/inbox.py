"""The inbox: my tasks and my team's claimable tasks, filtered, sorted and paged by keyset.

Keyset pagination (a cursor of the last row's sort values) stays fast however many open tasks there
are; counts stop at COUNT_CAP so that counting is bounded too.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import and_, exists, func, or_, select, tuple_, union_all
from sqlalchemy.orm import Session

from engine.identity import groups_of
from engine.models import ProcessDefinition, ProcessInstance, Task, TaskCandidate, Unit, User

VIEWS = ("mine", "team")
SORTS = ("due", "priority", "created")
DUES = ("", "overdue", "soon")
MANY = 1000
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


def _candidate_ids(user: User):
    """Ids of tasks with the user (or one of their groups) as candidate: two index searches."""
    by_name = select(TaskCandidate.task_id).where(TaskCandidate.kind == "user", TaskCandidate.value == user.username)
    by_group = select(TaskCandidate.task_id).where(TaskCandidate.kind == "group",
                                                   TaskCandidate.value.in_(sorted(groups_of(user))))
    return union_all(by_name, by_group)


def _is_candidate(user: User):
    """The same, as a condition on each task row (an index lookup per row)."""
    return exists().where(TaskCandidate.task_id == Task.id, or_(
        and_(TaskCandidate.kind == "user", TaskCandidate.value == user.username),
        and_(TaskCandidate.kind == "group", TaskCandidate.value.in_(sorted(groups_of(user))))))


def _not_excluded(user: User):
    return ~exists().where(TaskCandidate.task_id == Task.id, TaskCandidate.kind == "not",
                           TaskCandidate.value == user.username)


def _base(user: User, view: str, *, many: bool = False, check: bool = True):
    """Open tasks of a view. For the team view, `many` checks each task read in sort order (fast when
    most open tasks are the user's); otherwise the user's candidate entries drive the query (fast when
    they are few). `many_candidates()` tells which is the case. `check=False` leaves the candidate check
    to the caller (`_scan`)."""
    if view == "mine":
        return select(Task).where(Task.state == "open", Task.assignee == user.username, _not_excluded(user))
    query = select(Task).where(Task.state == "open", Task.assignee.is_(None))
    if not check:
        return query
    mine = _is_candidate(user) if many else Task.id.in_(_candidate_ids(user))
    return query.where(mine, _not_excluded(user))


def _keep(session: Session, user: User, tasks: list[Task]) -> list[Task]:
    """The tasks of a batch that the user is a candidate for and not excluded from (two small queries)."""
    ids = [t.id for t in tasks]
    if not ids:
        return []
    rows = session.execute(select(TaskCandidate.task_id, TaskCandidate.kind).where(
        TaskCandidate.task_id.in_(ids), or_(
            and_(TaskCandidate.kind.in_(("user", "not")), TaskCandidate.value == user.username),
            and_(TaskCandidate.kind == "group", TaskCandidate.value.in_(sorted(groups_of(user))))))).all()
    excluded = {task_id for task_id, kind in rows if kind == "not"}
    allowed = {task_id for task_id, kind in rows if kind != "not"} - excluded
    return [t for t in tasks if t.id in allowed]


def _scan(session: Session, read, keep, limit: int, batch: int = 200) -> list[Task]:
    """Read rows in sort order batch by batch (`read(cursor_row, n)`) and keep what `keep` keeps, until
    `limit` rows are kept: a nested loop that both databases run along an index."""
    found: list[Task] = []
    last = None
    while len(found) < limit:
        rows = read(last, batch)
        found += keep(rows)
        if len(rows) < batch:
            break
        last = rows[-1]
    return found[:limit]


def _filtered(query, f: InboxFilter, now: datetime, soon_days: int):
    if f.process:
        query = query.where(Task.process_key == f.process)
    if f.due == "overdue":
        query = query.where(Task.due_at.is_not(None), Task.due_at < now)
    elif f.due == "soon":
        query = query.where(Task.due_at >= now, Task.due_at < now + timedelta(days=soon_days))
    if f.unit:
        escaped = f.unit.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(exists().where(
            TaskCandidate.task_id == Task.id, TaskCandidate.kind == "group",
            or_(TaskCandidate.value == f.unit, TaskCandidate.value.like(escaped + ":%", escape="\\"))))
    if f.text:
        escaped = f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Task.title.ilike(f"%{escaped}%", escape="\\"))
    return query


def _after(query, sort: str, cursor: list | None):
    """Rows after the cursor in the sort order (keyset), and the ordering; due dates: see `_due_page`."""
    value, last_id = cursor if cursor is not None else (None, None)
    if sort == "priority":
        if cursor is not None:
            query = query.where(tuple_(Task.priority, Task.id) < tuple_(value, last_id))
        return query.order_by(Task.priority.desc(), Task.id.desc())
    if cursor is not None:
        at = datetime.fromisoformat(value)
        query = query.where(tuple_(Task.created_at, Task.id) < tuple_(at, last_id))
    return query.order_by(Task.created_at.desc(), Task.id.desc())


def _due_page(session: Session, query, cursor: list | None, limit: int) -> list[Task]:
    """By due date, tasks without one last: two index-ordered reads instead of one sort of everything."""
    tasks: list[Task] = []
    if cursor is None or cursor[0] is not None:
        dated = query.where(Task.due_at.is_not(None))
        if cursor is not None:
            at = datetime.fromisoformat(cursor[0])
            dated = dated.where(tuple_(Task.due_at, Task.id) > tuple_(at, cursor[1]))
        tasks = list(session.scalars(dated.order_by(Task.due_at, Task.id).limit(limit)))
        cursor = None
    if len(tasks) < limit:
        undated = query.where(Task.due_at.is_(None))
        if cursor is not None:
            undated = undated.where(Task.id > cursor[1])
        tasks += session.scalars(undated.order_by(Task.id).limit(limit - len(tasks)))
    return tasks


def _cursor(task: Task, sort: str) -> str:
    if sort == "priority":
        value = task.priority
    elif sort == "created":
        value = task.created_at.isoformat()
    else:
        value = task.due_at.isoformat() if task.due_at else None
    return base64.urlsafe_b64encode(json.dumps([value, task.id]).encode()).decode().rstrip("=")


def decode_cursor(text: str | None, sort: str = "due") -> list | None:
    if not text:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
            return None
        if sort == "priority":
            return value if isinstance(value[0], int) and not isinstance(value[0], bool) else None
        if value[0] is None and sort == "due":
            return value
        if isinstance(value[0], str):
            datetime.fromisoformat(value[0])
            return value
    except (ValueError, TypeError):
        return None
    return None


def many_candidates(session: Session, user: User) -> bool:
    """Whether the user is candidate of more than MANY tasks (open or not): an index-only count that
    picks how the team view is read (see `_base`)."""
    limited = _candidate_ids(user).limit(MANY + 1).subquery()
    return (session.scalar(select(func.count()).select_from(limited)) or 0) > MANY


def count(session: Session, user: User, f: InboxFilter, view: str, *, now: datetime, soon_days: int = 2,
          many: bool | None = None) -> int:
    """How many open tasks the view has, counted up to COUNT_CAP + 1."""
    many = many_candidates(session, user) if many is None and view == "team" else bool(many)
    limited = (_filtered(_base(user, view, many=many), f, now, soon_days).with_only_columns(Task.id)
               .limit(COUNT_CAP + 1))
    return session.scalar(select(func.count()).select_from(limited.subquery())) or 0


def _row_cursor(task: Task, sort: str) -> list:
    return decode_cursor(_cursor(task, sort), sort)


def inbox(session: Session, user: User, f: InboxFilter, *, now: datetime, after: str | None = None,
          size: int = 25, soon_days: int = 2) -> InboxPage:
    many = many_candidates(session, user)
    counts = {view: count(session, user, f, view, now=now, soon_days=soon_days, many=many) for view in VIEWS}
    cursor = decode_cursor(after, f.sort)
    scan = many and f.view == "team"
    query = _filtered(_base(user, f.view, many=many, check=not scan), f, now, soon_days)

    def read(last: Task | None, n: int) -> list[Task]:
        position = cursor if last is None else _row_cursor(last, f.sort)
        if f.sort == "due":
            return _due_page(session, query, position, n)
        return list(session.scalars(_after(query, f.sort, position).limit(n)))

    tasks = _scan(session, read, lambda rows: _keep(session, user, rows), size + 1) if scan else read(None, size + 1)
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
    return InboxPage(rows, counts, _cursor(tasks[-1], f.sort) if more else None, capped)


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
