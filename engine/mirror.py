"""Mirrors of a workflow's waiting work: human tasks (for the inbox) and timers (for the worker).

Rebuilt after every save of an instance, so that "open tasks for this user" and "timers due now"
are indexed queries and never a deserialisation of every instance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import CycleTimerEventDefinition, TimerEventDefinition
from SpiffWorkflow.bpmn.util.event import BpmnEvent
from SpiffWorkflow.task import TaskState
from sqlalchemy import String, bindparam, delete, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from . import audit, writes
from .models import ProcessInstance, Task, TaskCandidate, Timer
from .workflow_tasks import tasks_in

log = logging.getLogger(__name__)


def camunda_attrs(task_spec) -> dict:
    return (getattr(task_spec, "extensions", None) or {}).get("camunda") or {}


def task_kind(task_spec) -> str:
    if camunda_attrs(task_spec).get("external") or (getattr(task_spec, "extensions", None) or {}).get("external"):
        return "external"
    return "user" if type(task_spec).__name__ == "UserTask" else "manual"


def waiting_human_tasks(workflow) -> list:
    return tasks_in(workflow, TaskState.READY, manual=True)


@dataclass
class Mirrored:
    """What `sync_tasks` did: the rows it created and their candidate entries (as inserted), and the
    instance's rows that were open before and still are."""

    created: list[dict]
    candidates: list[dict]
    still_open: set[str]

    def keep_inserted(self, _rowcount: int, rows: list[tuple]) -> None:
        inserted = {task_id for (task_id,) in rows}
        self.created = [row for row in self.created if row["id"] in inserted]
        self.candidates = [entry for entry in self.candidates if entry["task_id"] in inserted]


def sync_tasks(session: Session, instance: ProcessInstance, workflow, *, now: datetime, describe: Callable,
               open_tasks: set[str] | None = None) -> Mirrored:
    """Insert rows for new READY human tasks and withdraw rows whose task is no longer READY.

    `describe(spiff_task)` returns the resolved attributes of a new task (see runtime._describe); it
    runs for every new task before anything is written, so a task it cannot describe changes nothing.
    `open_tasks` are the ids of the instance's open rows if the caller has read them in this
    transaction; otherwise they are read here. The new rows are queued (`engine.writes`): `created`
    and `candidates` of the result hold what was really written once they are sent. A finished row
    with the id of a new task is history and stays as it is, without candidate entries (the insert
    skips existing ids, and candidate entries are written only for open rows).
    """
    ready = {str(t.id): t for t in waiting_human_tasks(workflow)}
    conn = session.connection()
    if open_tasks is None:
        open_tasks = set(conn.scalars(_OPEN_TASKS, {"instance_id": instance.id}))
    described = {task_id: describe(spiff_task) for task_id, spiff_task in ready.items() if task_id not in open_tasks}
    withdrawn = [task_id for task_id in open_tasks if task_id not in ready]
    if withdrawn:
        conn.execute(update(Task.__table__).where(Task.id.in_(withdrawn)).values(state="withdrawn", ended_at=now))
        conn.execute(delete(TaskCandidate.__table__).where(TaskCandidate.task_id.in_(withdrawn)))
        _expire(session, withdrawn)
    created, candidates = [], []
    for task_id, info in described.items():
        spec = ready[task_id].task_spec
        created.append({
            "id": task_id,
            "instance_id": instance.id,
            "process_key": instance.process_key,
            "element_id": spec.bpmn_id or spec.name,
            "title": (spec.bpmn_name or spec.bpmn_id or "")[:255],
            "kind": task_kind(spec),
            "lane": spec.lane,
            "form_ref": info.get("form_ref"),
            "form_key": info.get("form_key"),
            "candidate_users": ",".join(info["candidate_users"]),
            "candidate_groups": ",".join(info["candidate_groups"]),
            "assignee": info.get("assignee"),
            "due_at": info.get("due_at"),
            "follow_up_at": info.get("follow_up_at"),
            "priority": info.get("priority", 50),
            "state": "open",
            "created_at": now,
        })
        for kind, values in (("user", info["candidate_users"]), ("group", info["candidate_groups"]),
                             ("not", info.get("excluded_users", ()))):
            candidates += [{"task_id": task_id, "kind": kind, "value": value} for value in values]
    mirrored = Mirrored(created, candidates, open_tasks - set(withdrawn))
    if created:
        writes.add(conn, _INSERT_TASKS[conn.dialect.name], created, then=mirrored.keep_inserted)
    if candidates:
        writes.add(conn, _INSERT_CANDIDATES[conn.dialect.name], candidates)
    return mirrored


def complete_task(session: Session, row: Task, *, user: str, now: datetime) -> None:
    """Mark a task's row completed (queued plain statements), and the loaded `row` with it now.

    Like a withdrawn task, a completed one leaves the candidate entries, which serve open tasks only
    (the inbox reads them); its recorded lists (`candidate_users`, `candidate_groups`) stay."""
    values = {"state": "completed", "ended_at": now, "completed_by": user, "draft_json": None,
              "assignee": row.assignee or user}
    conn = session.connection()
    writes.add(conn, _COMPLETE_TASK, {"task_id": row.id, **values})
    writes.add(conn, _DELETE_CANDIDATES, {"task_id": row.id})
    for name, value in values.items():
        set_committed_value(row, name, value)


def _dialect_name(dialect) -> str:
    return dialect.__name__.rsplit(".", 1)[-1]


# per dialect: new task rows, skipping ids that exist already, answering with the ids written
_INSERT_TASKS = {_dialect_name(d): d.insert(Task.__table__).on_conflict_do_nothing().returning(Task.id)
                 for d in (postgresql, sqlite)}
# per dialect: a candidate entry, written only while its task's row is open
_INSERT_CANDIDATES = {
    _dialect_name(d): d.insert(TaskCandidate.__table__).from_select(
        ["task_id", "kind", "value"],
        select(bindparam("task_id", type_=String), bindparam("kind", type_=String), bindparam("value", type_=String))
        .where(exists().where(Task.id == bindparam("task_id"), Task.state == "open")),
    ).on_conflict_do_nothing()
    for d in (postgresql, sqlite)
}
_DELETE_CANDIDATES = delete(TaskCandidate.__table__).where(TaskCandidate.task_id == bindparam("task_id"))
_OPEN_TASKS = select(Task.id).where(Task.instance_id == bindparam("instance_id"), Task.state == "open")
_COMPLETE_TASK = update(Task.__table__).where(Task.id == bindparam("task_id")).values(
    {name: bindparam(name) for name in ("state", "ended_at", "completed_by", "draft_json", "assignee")})


def _expire(session: Session, task_ids: list[str]) -> None:
    """Loaded rows of these tasks read their changed values again when next used."""
    for task_id in task_ids:
        row = session.identity_map.get(identity_key(Task, task_id))
        if row is not None:
            session.expire(row)


# --- timers ----------------------------------------------------------------------------------------------
#: where an event-based gateway (or a multiple catch event) keeps the value of each of its timers
TIMER_VALUES = "fallwerk_timer_values"
SYSTEM = "system"


def waiting_timer(task) -> tuple[datetime, str] | None:
    """(due instant, timer element id) of a waiting task's next timer, or None if it waits for no timer.

    Read from SpiffWorkflow's internal data: `event_value` of a timer event (an ISO instant for
    timeDate and timeDuration, `{'cycles', 'next', 'duration'}` for a cycle), and for an event-based
    gateway the values of each timer branch (`TIMER_VALUES`, see `_multiple_has_fired`).
    """
    definition = getattr(task.task_spec, "event_definition", None)
    element_id = task.task_spec.bpmn_id or task.task_spec.name
    if isinstance(definition, MultipleEventDefinition):
        pending = _pending_gateway_timers(task)
        if not pending:
            return None
        due, idx = min(pending)
        outputs = task.task_spec.outputs
        if type(task.task_spec).__name__ == "EventBasedGateway" and idx < len(outputs):
            element_id = outputs[idx].bpmn_id or element_id  # the timer branch, not the gateway
        return due, element_id
    if not isinstance(definition, TimerEventDefinition):
        return None
    if task.internal_data.get("event_fired") and not isinstance(definition, CycleTimerEventDefinition):
        return None
    due = _value_due(task, task.internal_data.get("event_value"))
    return (due, element_id) if due is not None else None


def timer_due(task) -> datetime | None:
    """The instant a waiting timer event falls due, read from SpiffWorkflow's internal data."""
    found = waiting_timer(task)
    return found[0] if found else None


def _value_due(task, value) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, dict):  # a cycle: {'cycles', 'next', 'duration'}; 0 cycles left: done
            return None if value.get("cycles") == 0 else _as_utc(datetime.fromisoformat(value["next"]))
        if isinstance(value, datetime):
            return _as_utc(value)
        text = str(value).strip()
        if text.upper().startswith("P"):
            raise ValueError("a duration where an instant was expected")
        return _as_utc(TimerEventDefinition.parse_time_or_duration(text))
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("unreadable timer value", extra={"task": str(task.id), "element": task.task_spec.bpmn_id,
                                                      "value": repr(value)})
        return None


def _pending_gateway_timers(task) -> list[tuple[datetime, int]]:
    """(due, index) of the timers of a multiple event definition that have not fired yet."""
    definition = task.task_spec.event_definition
    seen = [e.event_definition for e in task.internal_data.get("seen_events", [])]
    values = task.internal_data.get(TIMER_VALUES)
    if values is None and "event_value" in task.internal_data:  # state written before the fix below
        first = next((i for i, d in enumerate(definition.event_definitions) if isinstance(d, TimerEventDefinition)),
                     None)
        values = {str(first): task.internal_data["event_value"]} if first is not None else {}
    pending = []
    for idx, item in enumerate(definition.event_definitions):
        if not isinstance(item, TimerEventDefinition) or item in seen:
            continue
        due = _value_due(task, (values or {}).get(str(idx)))
        if due is not None:
            pending.append((due, idx))
    return pending


def _as_utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _find_task(workflow, task_id: str):
    key = UUID(task_id)
    if key in workflow.tasks:
        return workflow.tasks[key]
    for subprocess in workflow.subprocesses.values():
        if key in subprocess.tasks:
            return subprocess.tasks[key]
    return None


def _has_fired(workflow, row: Timer, now: datetime) -> bool:
    """Whether the timer of `row`, no longer waiting for `row.due_at`, fired (rather than being withdrawn).

    A timer fires only once its instant has passed, and a fired timer's task moved on: it ran (or is
    about to), or, for a cycle, waits for its next instant. A task that was cancelled (the activity a
    boundary timer sits on finished, the case was cancelled) or removed did not fire. At an
    event-based gateway, the timer fired only if the branch taken is a timer branch.
    """
    if not row.due_at < now:
        return False
    task = _find_task(workflow, row.task_id)
    if task is None or task.has_state(TaskState.CANCELLED) or task.has_state(TaskState.PREDICTED_MASK):
        return False
    spec = task.task_spec
    if type(spec).__name__ == "EventBasedGateway" and task.has_state(TaskState.FINISHED_MASK):
        timer_branches = {spec.outputs[i].name for i, d in enumerate(spec.event_definition.event_definitions)
                          if isinstance(d, TimerEventDefinition) and i < len(spec.outputs)}
        return any(child.task_spec.name in timer_branches for child in task.children)
    return True


def _cycles_between(workflow, row: Timer) -> list[datetime]:
    """The instants a cycle fired at after `row.due_at`, before the one it waits for now."""
    task = _find_task(workflow, row.task_id)
    if task is None or not isinstance(getattr(task.task_spec, "event_definition", None), CycleTimerEventDefinition):
        return []
    value = task.internal_data.get("event_value")
    if not isinstance(value, dict) or not value.get("duration"):
        return []
    step = timedelta(seconds=value["duration"])
    next_due = _as_utc(datetime.fromisoformat(value["next"]))
    found, due = [], row.due_at + step
    while due < next_due and len(found) < 10_000:
        found.append(due)
        due += step
    return found


def waiting_timers(workflow) -> dict[str, tuple[datetime, str]]:
    """{task id: (due instant, timer element id)} of every timer the workflow waits for."""
    waiting = {}
    for task in tasks_in(workflow, TaskState.WAITING):
        found = waiting_timer(task)
        if found is not None:
            waiting[str(task.id)] = found
    return waiting


def sync_timers(session: Session, instance: ProcessInstance, workflow, *, now: datetime,
                waiting: dict[str, tuple[datetime, str]] | None = None) -> None:
    """Mirror the waiting timers of `workflow` into the timers table, and record the ones that fired.

    One `waiting` row per waiting timer task and due instant. A row whose timer fired becomes
    `fired` (with `fired_at`, and an audit event "timer"); a cycle then gets a new row for its next
    instant. A row whose timer was withdrawn before it fired is deleted. A `failed` row (the worker
    gave up on it, see worker.py) stays failed while its timer still waits, and becomes `fired`
    once a retry got the timer through.
    """
    waiting = {} if instance.status != "running" else dict(waiting_timers(workflow) if waiting is None else waiting)
    rows = session.scalars(
        select(Timer).where(Timer.instance_id == instance.id, Timer.state.in_(("waiting", "failed")))
        .order_by(Timer.id)
    ).all()
    for row in rows:
        current = waiting.pop(row.task_id, None)
        if current is not None and current[0] == row.due_at:
            continue  # still waiting for the same instant
        if _has_fired(workflow, row, now):
            _fired(session, instance, row, now)
            for due in _cycles_between(workflow, row):  # a cycle may fire more than once in one run
                extra = Timer(instance_id=instance.id, task_id=row.task_id, element_id=row.element_id, due_at=due,
                              state="waiting", attempts=0)
                session.add(extra)
                _fired(session, instance, extra, now)
            if current is not None:  # a cycle moved on: wait for its next instant in a new row
                waiting[row.task_id] = current
        elif current is not None:  # the same task waits for another instant (re-evaluated)
            row.due_at, row.element_id, row.next_attempt_at = current[0], current[1], None
        else:
            session.delete(row)  # withdrawn before it fired: the task moved on or was cancelled
    for task_id, (due, element_id) in waiting.items():
        session.add(Timer(instance_id=instance.id, task_id=task_id, element_id=element_id, due_at=due,
                          state="waiting", attempts=0))


def _fired(session: Session, instance: ProcessInstance, row: Timer, now: datetime) -> None:
    row.state, row.fired_at, row.next_attempt_at = "fired", now, None
    late = (now - row.due_at).total_seconds()
    audit.record(session, at=now, actor=SYSTEM, action="timer", instance_id=instance.id, task_id=row.task_id,
                 element_id=row.element_id, due=row.due_at.isoformat(), late_seconds=round(late, 3))


def retry_delay(attempt: int) -> timedelta:
    """Back-off for a timer whose instance failed: 1, 5, 25 minutes after the 1st, 2nd, 3rd failure."""
    return timedelta(minutes=5 ** max(attempt - 1, 0))


# --- SpiffWorkflow 3.2.0: timers at an event-based gateway -------------------------------------------------
# The stock MultipleEventDefinition.has_fired lets all of its timers share the task's single
# `event_value`: the first timer evaluated stores its instant and every other timer then reads it as
# its own (a gateway with "1 day" and "3 days" branches fires the "3 days" branch after 3 days, or the
# "1 day" one after 3 days, depending on the order of the flows). It also removes items from the list
# it iterates over, and checks timers even after a message was caught, so an exclusive gateway can
# take two branches. This replacement keeps one value per timer (TIMER_VALUES, keyed by the timer's
# index), fires only the earliest due timer of an exclusive gateway, none once another event was
# caught, and every due timer of a parallel multiple event.
_STOCK_RESET = MultipleEventDefinition.reset


def _multiple_has_fired(self, my_task) -> bool:
    data = my_task.internal_data
    seen = list(data.get("seen_events", []))
    if not self.parallel and seen:
        data["seen_events"] = seen
        return True
    remaining = list(self.event_definitions)
    for event in seen:
        if event.event_definition in remaining:
            remaining.remove(event.event_definition)
    values = dict(data.get(TIMER_VALUES) or {})
    legacy = data.pop("event_value", None)  # the shared value the stock implementation stored
    outer_fired = data.pop("event_fired", None)
    due_now = []
    try:
        for idx, definition in enumerate(self.event_definitions):
            if not isinstance(definition, TimerEventDefinition) or not any(definition is d for d in remaining):
                continue
            key = str(idx)
            if key not in values and legacy is not None:
                values[key], legacy = legacy, None
            if values.get(key) is not None:
                data["event_value"] = values[key]
            try:
                fired = definition.has_fired(my_task)
            finally:
                values[key] = data.pop("event_value", None)
                data.pop("event_fired", None)
            if fired:
                due = _value_due(my_task, values[key]) or datetime.min.replace(tzinfo=UTC)
                due_now.append((due, idx, definition))
    finally:
        data[TIMER_VALUES] = values
        if outer_fired is not None:
            data["event_fired"] = outer_fired
    due_now.sort(key=lambda item: (item[0], item[1]))
    for _, _, definition in due_now if self.parallel else due_now[:1]:
        seen.append(BpmnEvent(definition))
        remaining = [d for d in remaining if d is not definition]
    data["seen_events"] = seen
    return not remaining if self.parallel else bool(seen)


def _multiple_reset(self, my_task) -> None:
    my_task.internal_data.pop(TIMER_VALUES, None)
    _STOCK_RESET(self, my_task)


MultipleEventDefinition.has_fired = _multiple_has_fired
MultipleEventDefinition.reset = _multiple_reset
