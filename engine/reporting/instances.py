"""The instance list of the monitor: filters, sort orders, keyset pages, and all rows for an export.

    f = InstanceFilter.from_args(request.args)
    page = list_page(session, user, f, now=now, after=cursor)     # 50 rows, next/previous cursors, total
    rows = all_rows(session, user, f, now=now)                     # every matching row, for CSV/XLSX

One query per page on indexed columns (`ix_process_instances_started`/`_updated` for the order, the
case scope of `scope.py`, the facts table for the territory). No personal field is ever selected:
the list shows case numbers (pseudonymous), procedure, status, current step, unit, territory, dates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.orm import Session

from ..db import MAX_ID
from ..models import CaseFact, ProcessDefinition, ProcessInstance, Task, User
from .scope import case_scope

STATUSES = ("running", "completed", "cancelled", "incident")
SORTS = {"started_desc": (ProcessInstance.started_at, True), "started_asc": (ProcessInstance.started_at, False),
         "updated_desc": (ProcessInstance.updated_at, True)}
PAGE_SIZE = 50
MAX_AGE_DAYS = 36500
_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")


@dataclass
class InstanceFilter:
    process: str = ""
    version: int | None = None
    status: str = ""
    step: str = ""
    unit: str = ""
    territory: str = ""
    min_age: int | None = None  # days since the start, at least
    max_age: int | None = None  # at most
    overdue: bool = False
    sort: str = "started_desc"

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> InstanceFilter:
        def code(name: str) -> str:
            value = (args.get(name) or "").strip()
            return value if _CODE.match(value) else ""

        def number(name: str) -> int | None:
            value = (args.get(name) or "").strip()
            return min(int(value), MAX_AGE_DAYS) if value.isascii() and value.isdigit() else None

        status = args.get("status") or ""
        sort = args.get("sort") or "started_desc"
        process = code("process")
        return cls(process=process, version=number("version") if process else None,
                   status=status if status in STATUSES else "", step=code("step"), unit=code("unit"),
                   territory=code("territory"), min_age=number("min_age"), max_age=number("max_age"),
                   overdue=args.get("overdue") in ("1", "on", "true"), sort=sort if sort in SORTS else "started_desc")

    def args(self, **changes) -> dict[str, str]:
        """The filter as query arguments (defaults left out), for links and exports."""
        values = {**asdict(self), **changes}
        out = {}
        for key, value in values.items():
            if value in (None, "", False) or (key == "sort" and value == "started_desc"):
                continue
            out[key] = "1" if value is True else str(value)
        return out

    @property
    def active(self) -> bool:
        return bool(set(self.args()) - {"sort"})


@dataclass
class InstanceRow:
    id: int
    case_number: str
    process_key: str
    process_name: str
    version: int
    status: str
    has_incident: bool
    active: list[str]
    unit: str | None
    territory: str | None
    started_at: datetime
    ended_at: datetime | None
    updated_at: datetime
    overdue_since: datetime | None

    def age_days(self, now: datetime) -> int:
        return max(0, ((self.ended_at or now) - self.started_at).days)


@dataclass
class Page:
    rows: list[InstanceRow]
    total: int
    next: str | None = None  # cursor of the last row, when more follow
    previous: str | None = None  # cursor of the first row, when rows come before it
    filters: InstanceFilter = field(default_factory=InstanceFilter)


def _overdue_since(now: datetime):
    return (select(func.min(Task.due_at)).where(Task.instance_id == ProcessInstance.id, Task.state == "open",
                                                Task.due_at < now).correlate(ProcessInstance).scalar_subquery())


def _query(session: Session, user: User, f: InstanceFilter, *, now: datetime):
    query = (select(ProcessInstance.id, ProcessInstance.case_number, ProcessInstance.process_key,
                    ProcessDefinition.name, ProcessDefinition.version, ProcessInstance.status,
                    ProcessInstance.has_incident, ProcessInstance.active_elements, ProcessInstance.responsible_unit,
                    CaseFact.territory, ProcessInstance.started_at, ProcessInstance.ended_at,
                    ProcessInstance.updated_at, _overdue_since(now).label("overdue_since"))
             .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
             .outerjoin(CaseFact, CaseFact.instance_id == ProcessInstance.id))
    return query.where(*_conditions(session, user, f, now=now))


def _conditions(session: Session, user: User, f: InstanceFilter, *, now: datetime) -> list:
    conditions = [case_scope(session, user)]
    if f.process:
        conditions.append(ProcessInstance.process_key == f.process)
        if f.version is not None:
            conditions.append(ProcessInstance.definition_id.in_(
                select(ProcessDefinition.id).where(ProcessDefinition.key == f.process,
                                                   ProcessDefinition.version == f.version)))
    if f.status == "incident":
        conditions.append(ProcessInstance.has_incident.is_(True))
    elif f.status:
        conditions.append(ProcessInstance.status == f.status)
    if f.step:
        pattern = "%," + f.step.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ",%"
        conditions.append((literal(",") + ProcessInstance.active_elements + literal(",")).like(pattern, escape="\\"))
    if f.unit:
        conditions.append(ProcessInstance.responsible_unit == f.unit)
    if f.territory:
        conditions.append(ProcessInstance.id.in_(select(CaseFact.instance_id)
                                                 .where(CaseFact.territory == f.territory)))
    if f.min_age is not None:
        conditions.append(ProcessInstance.started_at <= now - timedelta(days=f.min_age))
    if f.max_age is not None:
        conditions.append(ProcessInstance.started_at >= now - timedelta(days=f.max_age + 1))
    if f.overdue:
        conditions.append(ProcessInstance.id.in_(select(Task.instance_id).where(Task.state == "open",
                                                                                Task.due_at < now)))
    return conditions


def count(session: Session, user: User, f: InstanceFilter, *, now: datetime) -> int:
    query = select(func.count()).select_from(ProcessInstance)
    if f.territory:
        query = query.outerjoin(CaseFact, CaseFact.instance_id == ProcessInstance.id)
    return session.scalar(query.where(*_conditions(session, user, f, now=now))) or 0


def _row(r) -> InstanceRow:
    return InstanceRow(r.id, r.case_number, r.process_key, r.name, r.version, r.status, bool(r.has_incident),
                       [e for e in (r.active_elements or "").split(",") if e], r.responsible_unit, r.territory,
                       r.started_at, r.ended_at, r.updated_at, r.overdue_since)


def _cursor(row: InstanceRow, sort: str) -> str:
    column = SORTS[sort][0].key
    return f"{getattr(row, column).isoformat()}|{row.id}"


def _parse_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor or "|" not in cursor:
        return None
    at, _, ident = cursor.rpartition("|")
    try:
        position, last_id = datetime.fromisoformat(at), int(ident)
        if position.tzinfo is None or not 0 < last_id <= MAX_ID:
            return None
        return position.astimezone(UTC), last_id
    except (ValueError, OverflowError):  # OverflowError: an instant beyond the calendar once in UTC
        return None


def list_page(session: Session, user: User, f: InstanceFilter, *, now: datetime, after: str | None = None,
              before: str | None = None, size: int = PAGE_SIZE) -> Page:
    column, descending = SORTS[f.sort]
    query = _query(session, user, f, now=now)
    position = _parse_cursor(after) or _parse_cursor(before)
    backwards = position is not None and _parse_cursor(after) is None
    forward_desc = descending != backwards  # the direction this query walks in
    if position is not None:
        at, ident = position
        if forward_desc:
            query = query.where(or_(column < at, and_(column == at, ProcessInstance.id < ident)))
        else:
            query = query.where(or_(column > at, and_(column == at, ProcessInstance.id > ident)))
    order = (column.desc(), ProcessInstance.id.desc()) if forward_desc else (column.asc(), ProcessInstance.id.asc())
    rows = [_row(r) for r in session.execute(query.order_by(*order).limit(size + 1))]
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    page = Page(rows, count(session, user, f, now=now), filters=f)
    if rows:
        if (more and not backwards) or (backwards and position is not None):
            page.next = _cursor(rows[-1], f.sort)
        if (more and backwards) or (not backwards and position is not None):
            page.previous = _cursor(rows[0], f.sort)
    return page


def all_rows(session: Session, user: User, f: InstanceFilter, *, now: datetime,
             limit: int = 500_000) -> Iterable[InstanceRow]:
    column, descending = SORTS[f.sort]
    order = (column.desc(), ProcessInstance.id.desc()) if descending else (column.asc(), ProcessInstance.id.asc())
    query = _query(session, user, f, now=now).order_by(*order).limit(limit)
    for r in session.execute(query.execution_options(yield_per=2000)):
        yield _row(r)
