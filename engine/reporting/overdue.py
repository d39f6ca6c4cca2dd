"""Overdue work: open tasks past their due date, and first contacts past their limit, per unit.

A task belongs to the unit of its first candidate group (`rz-rostock:lead` -> `rz-rostock`), else to its
case's responsible unit; that unit's lead may hand it over (`policy`'s `task:hand_over`). Only cases in
the viewer's monitor scope are counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import ProcessInstance, Task, User
from .scope import case_scope

#: the steps whose deadline is the first-contact limit (docs/procedures.md, `first_contact_due`)
FIRST_CONTACT_ELEMENTS = frozenset({"Task_FirstContact"})
LIMIT = 5000


@dataclass
class OverdueTask:
    task_id: str
    instance_id: int
    case_number: str
    process_key: str
    element_id: str
    title: str
    unit: str | None
    assignee: str | None
    candidate_groups: str
    due_at: datetime
    created_at: datetime

    @property
    def first_contact(self) -> bool:
        return self.element_id in FIRST_CONTACT_ELEMENTS

    def days_overdue(self, now: datetime) -> int:
        return max(0, (now - self.due_at).days)


@dataclass
class UnitLine:
    unit: str | None
    tasks: int
    first_contacts: int


def task_unit(candidate_groups: str, responsible_unit: str | None) -> str | None:
    for group in (candidate_groups or "").split(","):
        if group.strip():
            return group.strip().split(":", 1)[0]
    return responsible_unit


def overdue_tasks(session: Session, user: User, *, now: datetime, unit: str = "",
                  first_contacts_only: bool = False) -> list[OverdueTask]:
    query = (select(Task.id, Task.instance_id, ProcessInstance.case_number, Task.process_key, Task.element_id,
                    Task.title, ProcessInstance.responsible_unit, Task.assignee, Task.candidate_groups, Task.due_at,
                    Task.created_at)
             .join(ProcessInstance, ProcessInstance.id == Task.instance_id)
             .where(Task.state == "open", Task.due_at < now, case_scope(session, user))
             .order_by(Task.due_at, Task.id).limit(LIMIT))
    if first_contacts_only:
        query = query.where(Task.element_id.in_(FIRST_CONTACT_ELEMENTS))
    found = []
    for r in session.execute(query):
        item = OverdueTask(r.id, r.instance_id, r.case_number, r.process_key, r.element_id, r.title,
                           task_unit(r.candidate_groups, r.responsible_unit), r.assignee, r.candidate_groups or "",
                           r.due_at, r.created_at)
        if not unit or item.unit == unit:
            found.append(item)
    return found


def per_unit(tasks: list[OverdueTask]) -> list[UnitLine]:
    all_tasks: Counter[str | None] = Counter(t.unit for t in tasks)
    first: Counter[str | None] = Counter(t.unit for t in tasks if t.first_contact)
    return [UnitLine(u, all_tasks[u], first[u]) for u in sorted(all_tasks, key=lambda u: (u is None, u or ""))]
