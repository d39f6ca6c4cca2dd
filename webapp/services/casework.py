"""What the task and case pages show: forms of a task, earlier answers, history, diagram, next task.

No Flask here. Form definitions and their WTForms classes are cached per deployed version (they never
change once deployed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.task import TaskState
from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.orm import Session, aliased, defer

from engine import direct, policy
from engine.errors import FallwerkError
from engine.forms import DisplayValue, FormDefinition
from engine.identity import WORKING_ROLES
from engine.memo import Memo
from engine.models import (
    AuditEvent,
    DeploymentResource,
    Membership,
    ProcessDefinition,
    ProcessInstance,
    Task,
    TaskCandidate,
    User,
)
from engine.reporting.facts import ESCALATION_KIND
from engine.runtime import Runtime, adopt_case, task_form
from engine.specs import LoadedDefinition
from engine.workflow_tasks import tasks_in

ESCALATION_MESSAGE = "escalation_requested"
_memo = Memo(2048)


def form_for(definition: ProcessDefinition, loaded: LoadedDefinition, task_spec) -> FormDefinition | None:
    key = ("form", definition.content_hash, task_spec.bpmn_id or task_spec.name)
    return _memo.get(key, lambda: task_form(task_spec, loaded.forms))


def wtforms_class(definition: ProcessDefinition, form: FormDefinition, element: str, base: type) -> type:
    return _memo.get(("class", definition.content_hash, element, base), lambda: form.wtforms_class(base=base))


def start_form(definition: ProcessDefinition, loaded: LoadedDefinition) -> tuple[str, FormDefinition] | None:
    """The form of the process's (plain) start event, if it declares one: (element id, form)."""
    for task_spec in loaded.spec.task_specs.values():
        if type(task_spec).__name__ == "StartEvent" and task_spec.bpmn_id and \
                getattr(task_spec, "event_definition", None).__class__.__name__ == "NoneEventDefinition":
            form = form_for(definition, loaded, task_spec)
            if form is not None:
                return task_spec.bpmn_id, form
    if definition.start_form and definition.start_form in loaded.forms:
        from engine.forms import load_form

        return "start", _memo.get(("start", definition.content_hash),
                                lambda: load_form(loaded.forms[definition.start_form]))
    return None


@dataclass
class Step:
    """A completed task with its answers."""

    task: Task
    title: str
    completed_by: str = ""  # the display name of whoever completed it
    values: list[DisplayValue] = field(default_factory=list)
    hidden_personal: int = 0  # personal answers left out for this viewer


def completed_steps(session: Session, runtime: Runtime, instance: ProcessInstance, workflow, *,
                    include_personal: bool, tasks: list[Task] | None = None) -> list[Step]:
    """The completed tasks with their answers, in order; `tasks`: the instance's task rows if loaded."""
    loaded = runtime.specs.get(instance.definition)
    if tasks is None:
        rows = session.scalars(select(Task).where(Task.instance_id == instance.id, Task.state == "completed")
                               .order_by(Task.ended_at, Task.created_at, Task.id)).all()
    else:
        rows = sorted((t for t in tasks if t.state == "completed"),
                      key=lambda t: (t.ended_at or t.created_at, t.created_at, t.id))
    names = display_names(session, [row.completed_by for row in rows])
    steps = []
    for row in rows:
        step = Step(row, row.title, names.get(row.completed_by, row.completed_by or "?"))
        try:
            spiff_task = workflow.get_task_from_id(UUID(row.id))
        except Exception:  # noqa: BLE001 - a task the workflow no longer keeps: show the step without data
            spiff_task = None
        if spiff_task is not None:
            form = form_for(instance.definition, loaded, spiff_task.task_spec)
            if form is not None:
                shown = form.display_values(spiff_task.data, include_personal=True)
                step.values = [v for v in shown if include_personal or not v.personal]
                step.hidden_personal = len(shown) - len(step.values)
        steps.append(step)
    return steps


@dataclass
class HistoryEntry:
    at: datetime
    actor: str
    action: str
    element: str
    detail: str = ""


def history(session: Session, instance: ProcessInstance, names: dict[str, str]) -> list[HistoryEntry]:
    """Who did what when: actions and element names only, never data values."""
    import json

    entries = []
    for event in session.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance.id)
                                 .order_by(AuditEvent.id)):
        if event.action in ("run", "read"):
            continue
        detail = ""
        if event.action == "assign" and event.detail:
            detail = json.loads(event.detail).get("assignee") or ""
        element = names.get(event.element_id or "", "") if event.action != "start" else instance.definition.name
        entries.append(HistoryEntry(event.at, event.actor, event.action, element, detail))
    return entries


def diagram_xml(session: Session, definition: ProcessDefinition) -> str | None:
    """The BPMN source of a deployed version, as it was deployed."""
    return session.scalar(select(DeploymentResource.content).where(
        DeploymentResource.deployment_id == definition.deployment_id,
        DeploymentResource.name == definition.source_name).limit(1))


def markers(instance: ProcessInstance, workflow) -> tuple[list[str], list[str]]:
    from engine.runtime import completed_elements

    active = [e for e in (instance.active_elements or "").split(",") if e]
    listening = _listening(workflow, set(active))
    active = [e for e in active if e not in listening]
    done = [e for e in completed_elements(workflow) if e not in active]
    return done, active


def _listening(workflow, active: set[str]) -> set[str]:
    """Event subprocesses that only wait for their trigger (and their start events): not a current step."""
    idle = set()
    for name in getattr(workflow.spec.start, "trigger_specs", ()):
        spec = workflow.subprocess_specs.get(name)
        if spec is None:
            continue
        starts = {ts.bpmn_id for ts in spec.task_specs.values() if type(ts).__name__ == "StartEvent"}
        idle |= starts
        inner = {ts.bpmn_id for ts in spec.task_specs.values() if ts.bpmn_id} - starts
        if not active & inner:
            idle.add(name)
    return idle


class EscalationOpen(FallwerkError):
    code = "escalation_open"


def escalation_open(workflow) -> bool:
    """Whether a request for support of this case is still being handled (its event subprocess runs)."""
    return any(not sub.is_completed() and any(type(t.task_spec).__name__ == "StartEvent" and ESCALATION_KIND in t.data
                                              for t in sub.tasks.values())
               for sub in workflow.subprocesses.values())


def refuse_a_second_escalation(workflow) -> None:
    if escalation_open(workflow):
        raise EscalationOpen("a request for support of this case is still open")


def waits_for_message(workflow, name: str) -> bool:
    """Whether the instance would accept the message now (a waiting catch event or event subprocess)."""
    def catches(task_spec) -> bool:
        definition = getattr(task_spec, "event_definition", None)
        return isinstance(definition, MessageEventDefinition) and definition.name == name

    if any(catches(t.task_spec) for t in tasks_in(workflow, TaskState.WAITING | TaskState.READY)):
        return True
    if workflow.is_completed():
        return False
    # event subprocesses listen as long as their process runs, the top one and called ones alike
    # (SpiffWorkflow keeps them as trigger specs of the start task, not as waiting tasks; the runtime
    # starts those of called processes itself)
    running = [workflow.spec, *(sub.spec for sub in workflow.subprocesses.values() if not sub.completed)]
    for process_spec in running:
        for spec_name in getattr(getattr(process_spec, "start", None), "trigger_specs", ()):
            spec = workflow.subprocess_specs.get(spec_name)
            if spec is not None and any(catches(ts) for ts in spec.task_specs.values()
                                        if type(ts).__name__ == "StartEvent"):
                return True
    return False


def next_task(session: Session, user: User, instance_id: int, *, opened=None) -> Task | None:
    """The next open task of this case that the user may work on: one query (the open tasks with their
    candidates, which the policy then needs not read again), none if `opened` has them already
    (`Runtime.tasks_opened`: the rows a completion opened, when they are all that is open)."""
    if opened is None:
        found: dict[str, tuple[Task, list]] = {}
        for row, kind, value in session.execute(_OPEN_TASKS_WITH_CANDIDATES, {"instance_id": instance_id}):
            pairs = found.setdefault(row.id, (row, []))[1]
            if kind is not None:
                pairs.append((kind, value))
        opened = found.values()
    for row, pairs in opened:
        policy.remember_candidates(session, row.id, pairs)
        if policy.can(user, policy.Permission.TASK_WORK, row):
            return row
    return None


def open_tasks(session: Session, instance_id: int) -> list[Task]:
    return list(session.scalars(select(Task).where(Task.instance_id == instance_id, Task.state == "open")
                                .order_by(Task.created_at, Task.id)))


class Colleague(NamedTuple):
    username: str
    display_name: str


def colleagues(session: Session, task: Task, user: User) -> list[Colleague]:
    """Active users (other than `user` and the assignee) who are candidates for the open task: whom it can
    be handed to. One query from the task's candidate entries, read straight from the driver."""
    rows = direct.fetch(session.connection(), _COLLEAGUES, {"task_id": task.id, "me": user.username,
                                                          "assignee": task.assignee or ""})
    return [Colleague(*row) for row in rows]


def display_names(session: Session, usernames, *, known=()) -> dict[str, str]:
    """Display names by user name; `known`: users (or rows with `username` and `display_name`) already
    loaded, asked for only if missing."""
    names = {n for n in usernames if n}
    result = {u.username: u.display_name or u.username for u in known if u.username in names}
    names -= set(result)
    if names:
        result.update({u: d or u for u, d in session.execute(_DISPLAY_NAMES, {"names": sorted(names)})})
    return result


def task_spec_for(definition: ProcessDefinition, loaded: LoadedDefinition, element_id: str):
    """The task spec of a BPMN element in a deployed version (the main process or a subprocess)."""

    def build():
        for spec in (loaded.spec, *loaded.subprocess_specs.values()):
            for task_spec in spec.task_specs.values():
                if task_spec.bpmn_id == element_id:
                    return task_spec
        return None

    return _memo.get(("spec", definition.content_hash, element_id), build)


def load_task(session: Session, user: User | None, task_id: str,
              permission: policy.Permission = policy.Permission.TASK_READ) -> Task:
    """`policy.load_task` (NotFound unless the user may), with the task's case, version and candidates
    read in the same round trip, without the instance's stored state (a completion: the runtime reads
    it itself, under its lock; claims and hand-overs do not need it)."""
    if _valid_id(task_id):
        _keep(session, session.execute(_TASK_POST, {"task_id": task_id}).all())
    return policy.load_task(session, user, task_id, permission)


@dataclass
class TaskContext:
    """A task with what its page needs: the case, the restored workflow, its data and form, and every
    task row of the case (for the earlier answers)."""

    task: Task
    instance: ProcessInstance
    workflow: Any
    data: dict
    form: FormDefinition | None
    tasks: list[Task] = field(default_factory=list)


def task_page(session: Session, runtime: Runtime, user: User | None, task_id: str,
              permission: policy.Permission = policy.Permission.TASK_READ) -> TaskContext:
    """The task (NotFound unless `policy.load_task` lets the user see it) with its page's context: one
    query reads the task, its case and version, its candidates and every other task row of the case."""
    tasks: list[Task] | None = None
    if _valid_id(task_id):
        rows = _task_page_rows(session, task_id)
        tasks = list({row[0].id: row[0] for row in rows}.values())
        _keep(session, [row for row in rows if row[0].id == task_id])
        session.info.setdefault("casework_loaded", []).extend(tasks)
    task = policy.load_task(session, user, task_id, permission)
    return task_context(session, runtime, task, tasks=tasks)


def _task_page_rows(session: Session, task_id: str) -> list[tuple]:
    """`_TASK_PAGE`'s rows as an ORM query would give them, (task, instance or None, candidate kind, value),
    read straight from the driver (the ORM's processing of these rows cost three times the query)."""
    rows, tasks, instance = [], {}, None
    for values in direct.fetch(session.connection(), _TASK_PAGE, {"task_id": task_id}):
        task_values, instance_values, definition_values, (kind, value) = direct.split(
            values, _TASK_COLUMNS, _INSTANCE_COLUMNS, _DEFINITION_COLUMNS)
        task = tasks.get(task_values[0][1])
        if task is None:
            task = tasks[task_values[0][1]] = direct.adopt(session, Task, task_values)
        if instance is None and instance_values[0][1] is not None:  # on the rows of the page's task
            instance = adopt_case(session, instance_values, definition_values)
        rows.append((task, instance if task.id == task_id else None, kind, value))
    return rows


def _valid_id(task_id) -> bool:
    return isinstance(task_id, str) and len(task_id) <= 36


def _keep(session: Session, rows) -> None:
    """Rows of (task, instance, candidate kind, candidate value) for one task: the objects stay loaded for
    the request (the identity map holds them weakly), the candidates go to the policy."""
    if not rows:
        return
    task, instance = rows[0][0], rows[0][1]
    session.info.setdefault("casework_loaded", []).extend((task, instance))
    if task.state == "open":
        policy.remember_candidates(session, task.id, [(kind, value) for _, _, kind, value in rows if kind is not None])


def task_context(session: Session, runtime: Runtime, task: Task, *, tasks: list[Task] | None = None) -> TaskContext:
    """The page's context of a task the caller has loaded; `tasks`: every task row of its case, if read."""
    instance = session.get(ProcessInstance, task.instance_id)
    if tasks is None:  # every task of the case: the earlier answers, and what the policy knows about the case
        tasks = list(session.scalars(_CASE_TASKS, {"instance_id": instance.id}))
    workflow = runtime.load_workflow(instance)
    policy.case_facts(session, instance, tasks=tasks, workflow=workflow)
    try:
        spiff_task = workflow.get_task_from_id(UUID(task.id))
    except Exception:  # noqa: BLE001 - the workflow no longer keeps it
        spiff_task = None
    loaded = runtime.specs.get(instance.definition)
    task_spec = spiff_task.task_spec if spiff_task is not None else task_spec_for(instance.definition, loaded,
                                                                                  task.element_id)
    form = form_for(instance.definition, loaded, task_spec) if task_spec is not None else None
    return TaskContext(task, instance, workflow, dict(spiff_task.data) if spiff_task is not None else {}, form,
                       tasks)


def element_form(runtime: Runtime, definition: ProcessDefinition, element_id: str) -> FormDefinition | None:
    """The form of a task of a version, without restoring a workflow (the fast path of a form post)."""
    loaded = runtime.specs.get(definition)
    task_spec = task_spec_for(definition, loaded, element_id)
    return form_for(definition, loaded, task_spec) if task_spec is not None else None


# --- statements of the task page and the form post, built once (building costs more than running them) ----
#: a task with its case, version and candidates (one row each), and every other task row of the same case
#: (with neither: the case and candidates come with the task's rows only), as columns for engine.direct
_OTHER = aliased(Task)
_TASK_COLUMNS = direct.loaded_columns(Task)
_INSTANCE_COLUMNS = direct.loaded_columns(ProcessInstance)
_DEFINITION_COLUMNS = direct.loaded_columns(ProcessDefinition)
_TASK_PAGE = (
    select(*(column for columns in (_TASK_COLUMNS, _INSTANCE_COLUMNS, _DEFINITION_COLUMNS) for _, column in columns),
           TaskCandidate.kind, TaskCandidate.value)
    .select_from(Task)
    .outerjoin(ProcessInstance, and_(ProcessInstance.id == Task.instance_id, Task.id == bindparam("task_id")))
    .outerjoin(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
    .outerjoin(TaskCandidate, and_(TaskCandidate.task_id == Task.id, Task.id == bindparam("task_id")))
    .where(or_(Task.id == bindparam("task_id"), Task.instance_id == select(_OTHER.instance_id)
               .where(_OTHER.id == bindparam("task_id")).scalar_subquery()))
)
#: the same for one task, without the instance's stored state
_TASK_POST = (select(Task, ProcessInstance, TaskCandidate.kind, TaskCandidate.value)
              .join(ProcessInstance, ProcessInstance.id == Task.instance_id)
              .outerjoin(TaskCandidate, TaskCandidate.task_id == Task.id)
              .where(Task.id == bindparam("task_id"))
              .options(defer(ProcessInstance.state_json)))
_CASE_TASKS = select(Task).where(Task.instance_id == bindparam("instance_id"))
_OPEN_TASKS_WITH_CANDIDATES = (select(Task, TaskCandidate.kind, TaskCandidate.value)
                               .outerjoin(TaskCandidate, TaskCandidate.task_id == Task.id)
                               .where(Task.instance_id == bindparam("instance_id"), Task.state == "open")
                               .order_by(Task.created_at, Task.id))
_CANDIDATE = aliased(TaskCandidate)
_WORKING = or_(*(Membership.role == role for role in sorted(WORKING_ROLES)))  # no expanding IN: read directly
#: the task's candidate users by name, and members of its candidate groups: a unit ("rz-west") or a unit
#: and role ("lks:coordinator"; unit ids never contain a colon); not the excluded, the asker, the assignee
_COLLEAGUES = (
    select(User.username, User.display_name)
    .where(User.is_active.is_(True), User.username != bindparam("me"), User.username != bindparam("assignee"),
           User.username.not_in(select(_CANDIDATE.value).where(_CANDIDATE.task_id == bindparam("task_id"),
                                                               _CANDIDATE.kind == "not")),
           or_(User.username.in_(select(_CANDIDATE.value).where(_CANDIDATE.task_id == bindparam("task_id"),
                                                                _CANDIDATE.kind == "user")),
               User.id.in_(select(Membership.user_id).join(_CANDIDATE, and_(
                   _CANDIDATE.task_id == bindparam("task_id"), _CANDIDATE.kind == "group",
                   or_(_CANDIDATE.value == Membership.unit_id,
                       _CANDIDATE.value == Membership.unit_id + ":" + Membership.role)))
                   .where(_WORKING))),
           User.id.in_(select(Membership.user_id).where(_WORKING)))
    .order_by(User.display_name, User.username)
)
_DISPLAY_NAMES = select(User.username, User.display_name).where(User.username.in_(bindparam("names", expanding=True)))
