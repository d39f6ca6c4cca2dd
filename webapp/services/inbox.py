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

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from engine.identity import groups_of
from engine.models import ProcessDefinition, ProcessInstance, Task, TaskCandidate, Unit, User

VIEWS = ("mine", "team")
SORTS = ("due", "priority", "created")
DUES = ("", "overdue", "soon")
COUNT_CAP = 1000


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
    return select(TaskCandidate.task_id).where(or_(
        and_(TaskCandidate.kind == "user", TaskCandidate.value == user.username),
        and_(TaskCandidate.kind == "group", TaskCandidate.value.in_(sorted(groups_of(user))))))


def _not_excluded(user: User):
    return ~exists().where(TaskCandidate.task_id == Task.id, TaskCandidate.kind == "not",
                           TaskCandidate.value == user.username)


def _base(user: User, view: str):
    if view == "mine":
        return select(Task).where(Task.state == "open", Task.assignee == user.username, _not_excluded(user))
    return select(Task).where(Task.state == "open", Task.assignee.is_(None), Task.id.in_(_candidate_ids(user)),
                              _not_excluded(user))


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


def _ordered(query, sort: str):
    if sort == "priority":
        return query.order_by(Task.priority.desc(), Task.id)
    if sort == "created":
        return query.order_by(Task.created_at.desc(), Task.id)
    return query.order_by(Task.due_at.is_(None), Task.due_at, Task.id)


def _after(query, sort: str, cursor: list):
    """Rows after the cursor in the sort order (keyset)."""
    value, last_id = cursor
    if sort == "priority":
        return query.where(or_(Task.priority < value, and_(Task.priority == value, Task.id > last_id)))
    if sort == "created":
        at = datetime.fromisoformat(value)
        return query.where(or_(Task.created_at < at, and_(Task.created_at == at, Task.id > last_id)))
    if value is None:
        return query.where(Task.due_at.is_(None), Task.id > last_id)
    at = datetime.fromisoformat(value)
    return query.where(or_(Task.due_at.is_(None), Task.due_at > at, and_(Task.due_at == at, Task.id > last_id)))


def _cursor(task: Task, sort: str) -> str:
    if sort == "priority":
        value = task.priority
    elif sort == "created":
        value = task.created_at.isoformat()
    else:
        value = task.due_at.isoformat() if task.due_at else None
    return base64.urlsafe_b64encode(json.dumps([value, task.id]).encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> list | None:
    if not text:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        ok = isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)
        if ok and (value[0] is None or isinstance(value[0], int | str)):
            if isinstance(value[0], str):
                datetime.fromisoformat(value[0])
            return value
    except (ValueError, TypeError):
        return None
    return None


def count(session: Session, user: User, f: InboxFilter, view: str, *, now: datetime, soon_days: int = 2) -> int:
    limited = _filtered(_base(user, view), f, now, soon_days).with_only_columns(Task.id).limit(COUNT_CAP + 1)
    return session.scalar(select(func.count()).select_from(limited.subquery())) or 0


def inbox(session: Session, user: User, f: InboxFilter, *, now: datetime, after: str | None = None,
          size: int = 25, soon_days: int = 2) -> InboxPage:
    query = _ordered(_filtered(_base(user, f.view), f, now, soon_days), f.sort)
    cursor = decode_cursor(after)
    if cursor is not None:
        query = _after(query, f.sort, cursor)
    tasks = list(session.scalars(query.limit(size + 1)))
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
    counts = {view: count(session, user, f, view, now=now, soon_days=soon_days) for view in VIEWS}
    return InboxPage(rows, counts, _cursor(tasks[-1], f.sort) if more else None,
                     {v for v, n in counts.items() if n > COUNT_CAP})


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
