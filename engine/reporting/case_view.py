"""One case in the monitor: diagram markers, timeline, open tasks with candidates, incidents.

Who did something is a user name; for viewers without access to the case's content the web page shows
the person's role and unit instead (`role_of`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import AuditEvent, Incident, Membership, ProcessInstance, Task, User

ROLE_ORDER = ("lead", "counsellor", "coordinator", "supervisor", "admin")
HIDDEN_ACTIONS = frozenset({"run"})


@dataclass
class TimelineEntry:
    at: datetime
    actor: str
    action: str
    element_id: str | None
    assignee: str | None = None


@dataclass
class Markers:
    done: list[str]
    active: list[str]
    incidents: list[str]


def markers(instance: ProcessInstance, workflow, incidents: list[Incident]) -> Markers:
    from ..runtime import completed_elements

    active = [e for e in (instance.active_elements or "").split(",") if e]
    broken = sorted({i.element_id for i in incidents if i.resolved_at is None and i.element_id})
    done = [e for e in completed_elements(workflow) if e not in active and e not in broken]
    return Markers(done, active, broken)


def timeline(session: Session, instance_id: int) -> list[TimelineEntry]:
    entries = []
    for event in session.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id)
                                 .order_by(AuditEvent.id)):
        if event.action in HIDDEN_ACTIONS:
            continue
        assignee = None
        if event.action == "assign" and event.detail:
            assignee = json.loads(event.detail).get("assignee")
        entries.append(TimelineEntry(event.at, event.actor, event.action, event.element_id, assignee))
    return entries


def open_tasks(session: Session, instance_id: int) -> list[Task]:
    return list(session.scalars(select(Task).where(Task.instance_id == instance_id, Task.state == "open")
                                .order_by(Task.created_at, Task.id)))


def incidents(session: Session, instance_id: int) -> list[Incident]:
    return list(session.scalars(select(Incident).where(Incident.instance_id == instance_id)
                                .order_by(Incident.created_at.desc(), Incident.id.desc())))


def role_of(session: Session, usernames, *, unit: str | None = None) -> dict[str, tuple[str, str]]:
    """(role, unit id) of each user: their membership in `unit` if they have one, else their first by role."""
    names = {n for n in usernames if n}
    found: dict[str, list[tuple[str, str]]] = {}
    if names:
        for username, unit_id, role in session.execute(
                select(User.username, Membership.unit_id, Membership.role)
                .join(Membership, Membership.user_id == User.id).where(User.username.in_(names))):
            found.setdefault(username, []).append((role, unit_id))
    result = {}
    for username, memberships in found.items():
        def rank(item, username=username):
            role, unit_id = item
            return (unit_id != unit, ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER), unit_id)

        result[username] = min(memberships, key=rank)
    return result
