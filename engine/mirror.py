"""Mirrors of a workflow's waiting work: human tasks (for the inbox) and timers (for the worker).

Rebuilt after every save of an instance, so that "open tasks for this user" and "timers due now"
are indexed queries and never a deserialisation of every instance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.task import TaskState
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .models import ProcessInstance, Task, TaskCandidate, Timer

log = logging.getLogger(__name__)


def camunda_attrs(task_spec) -> dict:
    return (getattr(task_spec, "extensions", None) or {}).get("camunda") or {}


def task_kind(task_spec) -> str:
    if camunda_attrs(task_spec).get("external") or (getattr(task_spec, "extensions", None) or {}).get("external"):
        return "external"
    return "user" if type(task_spec).__name__ == "UserTask" else "manual"


def waiting_human_tasks(workflow) -> list:
    return workflow.get_tasks(state=TaskState.READY, manual=True)


def sync_tasks(session: Session, instance: ProcessInstance, workflow, *, now: datetime,
               describe: Callable) -> list[Task]:
    """Insert rows for new READY human tasks and withdraw rows whose task is no longer READY.

    `describe(spiff_task)` returns the resolved attributes of a new task (see runtime._describe).
    Returns the rows created.
    """
    ready = {str(t.id): t for t in waiting_human_tasks(workflow)}
    open_rows = session.scalars(
        select(Task).where(Task.instance_id == instance.id, Task.state == "open")
    ).all()
    known = set()
    for row in open_rows:
        known.add(row.id)
        if row.id not in ready:
            row.state = "withdrawn"
            row.ended_at = now
            session.execute(delete(TaskCandidate).where(TaskCandidate.task_id == row.id))
    created = []
    for task_id, spiff_task in ready.items():
        if task_id in known:
            continue
        if session.get(Task, task_id) is not None:
            continue  # a finished row with the same id: never reopen history
        info = describe(spiff_task)
        row = Task(
            id=task_id,
            instance_id=instance.id,
            process_key=instance.process_key,
            element_id=spiff_task.task_spec.bpmn_id or spiff_task.task_spec.name,
            title=(spiff_task.task_spec.bpmn_name or spiff_task.task_spec.bpmn_id or "")[:255],
            kind=task_kind(spiff_task.task_spec),
            lane=spiff_task.task_spec.lane,
            form_ref=info.get("form_ref"),
            form_key=info.get("form_key"),
            candidate_users=",".join(info["candidate_users"]),
            candidate_groups=",".join(info["candidate_groups"]),
            assignee=info.get("assignee"),
            due_at=info.get("due_at"),
            follow_up_at=info.get("follow_up_at"),
            priority=info.get("priority", 50),
            state="open",
            created_at=now,
        )
        session.add(row)
        for user in info["candidate_users"]:
            session.add(TaskCandidate(task_id=task_id, kind="user", value=user))
        for group in info["candidate_groups"]:
            session.add(TaskCandidate(task_id=task_id, kind="group", value=group))
        for user in info.get("excluded_users", ()):
            session.add(TaskCandidate(task_id=task_id, kind="not", value=user))
        created.append(row)
    return created


def timer_due(task) -> datetime | None:
    """The instant a waiting timer event falls due, read from SpiffWorkflow's internal data."""
    definition = getattr(task.task_spec, "event_definition", None)
    if not isinstance(definition, (TimerEventDefinition, MultipleEventDefinition)):
        return None
    if isinstance(definition, MultipleEventDefinition) and not any(
        isinstance(d, TimerEventDefinition) for d in definition.event_definitions
    ):
        return None
    value = task.internal_data.get("event_value")
    if value is None:
        return None
    try:
        if isinstance(value, dict):  # a cycle: {'cycles', 'next', 'duration'}
            if value.get("cycles") == 0:
                return None
            return _as_utc(datetime.fromisoformat(value["next"]))
        if isinstance(value, datetime):
            return _as_utc(value)
        return TimerEventDefinition.parse_time_or_duration(str(value)) if not str(value).upper().startswith(
            "P") else None
    except (ValueError, TypeError, KeyError):
        log.warning("unreadable timer value", extra={"task": str(task.id), "value": repr(value)})
        return None


def _as_utc(at: datetime) -> datetime:
    from datetime import UTC

    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def sync_timers(session: Session, instance: ProcessInstance, workflow, *, now: datetime) -> None:
    waiting = {}
    if instance.status == "running":
        for task in workflow.get_tasks(state=TaskState.WAITING):
            due = timer_due(task)
            if due is not None:
                waiting[str(task.id)] = (task, due)
    rows = session.scalars(select(Timer).where(Timer.instance_id == instance.id, Timer.state == "waiting")).all()
    for row in rows:
        current = waiting.pop(row.task_id, None)
        if current is None:
            if row.due_at <= now:
                row.state, row.fired_at = "fired", now
            else:
                session.delete(row)  # withdrawn before it fell due (the task moved on)
        elif current[1] != row.due_at:  # a cycle moved on: record this firing, wait for the next
            if row.due_at <= now:
                row.state, row.fired_at = "fired", now
                waiting[row.task_id] = current
            else:
                row.due_at = current[1]
                row.next_attempt_at = None
    for task_id, (task, due) in waiting.items():
        session.add(Timer(instance_id=instance.id, task_id=task_id,
                          element_id=task.task_spec.bpmn_id or task.task_spec.name, due_at=due, state="waiting",
                          attempts=0))


def retry_delay(attempt: int) -> timedelta:
    """Back-off for a timer whose instance failed: 1, 5, 25 minutes."""
    return timedelta(minutes=5 ** max(attempt - 1, 0))
