"""Moving running instances from one version of a procedure to another.

    plan = plan_migration(session, "consultation", from_version=1, to_version=2)    # the dry run
    [p for p in plan.instances if p.movable]
    report = migrate_instances(transaction, "consultation", 1, 2, user="carla", clock=clock)

Built on SpiffWorkflow's ``bpmn.util.diff``: a ``SpecDiff`` aligns the task specs of the two versions by
BPMN id (and by structure where an id is gone), ``migrate_workflow`` points every task at its new spec
and re-predicts the branches ahead of the waiting tasks. An instance can move when every element it
has passed or waits at still exists in the new version (a case cannot be at, or come from, a step that
is not there any more), and when the migrated state restores cleanly. The dry run performs the
migration in memory and reports what it found; nothing is stored.

On top of ``migrate_workflow`` (which resets every waiting task): a waiting task whose element did not
change keeps its data and its internal state, so a timer that was already running keeps its due time;
a changed timer starts anew. Open tasks of changed elements get their candidates, title, form and dates
from the new version (a claimed task stays with the person who claimed it).

Each instance moves in its own transaction, under the instance's row lock (the runtime's), with its
tasks and timers mirrored again and one audit event ``migrate`` (from/to version).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from SpiffWorkflow.bpmn.util.diff import SpecDiff, WorkflowDiff, migrate_workflow
from SpiffWorkflow.task import TaskState
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from . import audit, mirror, serialization
from .clock import Clock, engine_time
from .errors import Conflict, FallwerkError, NotFound
from .models import ProcessDefinition, ProcessInstance, Task, TaskCandidate
from .runtime import Runtime, make_script_engine
from .specs import DEFAULT_CACHE, LoadedDefinition, SpecCache

log = logging.getLogger(__name__)

LIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED
RESET = TaskState.READY | TaskState.WAITING
AHEAD = TaskState.PREDICTED_MASK | TaskState.FUTURE  # not reached yet: predicted again from the new version


@dataclass(frozen=True)
class Reason:
    """Why an instance cannot move (code for translations, element, English message)."""

    code: str  # position_removed | history_removed | subprocess_removed | not_restorable | not_running | moved
    element_id: str
    message: str

    def to_dict(self) -> dict:
        return {"code": self.code, "element_id": self.element_id, "message": self.message}


@dataclass(frozen=True)
class Note:
    """What moving changes for an instance (code, element, what changed)."""

    code: str  # task_changed | timer_restarted | incident
    element_id: str
    detail: str

    def to_dict(self) -> dict:
        return {"code": self.code, "element_id": self.element_id, "detail": self.detail}


@dataclass
class InstancePlan:
    instance_id: int
    case_number: str
    active: list[str]
    reasons: list[Reason] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def movable(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        return {"instance": self.instance_id, "case_number": self.case_number, "active": self.active,
                "movable": self.movable, "reasons": [r.to_dict() for r in self.reasons],
                "notes": [n.to_dict() for n in self.notes]}


@dataclass
class MigrationPlan:
    key: str
    from_version: int
    to_version: int
    instances: list[InstancePlan] = field(default_factory=list)

    @property
    def movable(self) -> list[InstancePlan]:
        return [p for p in self.instances if p.movable]

    @property
    def blocked(self) -> list[InstancePlan]:
        return [p for p in self.instances if not p.movable]

    def to_dict(self) -> dict:
        return {"key": self.key, "from": self.from_version, "to": self.to_version,
                "movable": len(self.movable), "blocked": len(self.blocked),
                "instances": [p.to_dict() for p in self.instances]}


@dataclass
class MigrationReport:
    key: str
    from_version: int
    to_version: int
    migrated: list[InstancePlan] = field(default_factory=list)
    failed: list[InstancePlan] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"key": self.key, "from": self.from_version, "to": self.to_version,
                "migrated": [p.to_dict() for p in self.migrated], "failed": [p.to_dict() for p in self.failed]}


# --- the dry run ---------------------------------------------------------------------------------------
def plan_migration(session: Session, key: str, from_version: int, to_version: int, *,
                   specs: SpecCache = DEFAULT_CACHE, clock: Clock | None = None) -> MigrationPlan:
    """What would move from `from_version` to `to_version`, and what cannot (and why). Stores nothing."""
    source, target = definitions(session, key, from_version, to_version)
    old, new = specs.get(source), specs.get(target)
    plan = MigrationPlan(key, from_version, to_version)
    for instance in running_instances(session, source):
        workflow = serialization.load_state(instance.state_json, old.spec, old.subprocess_specs,
                                            script_engine=make_script_engine())
        entry = _entry(instance, workflow)
        _migrate_workflow(workflow, new, entry, clock or Clock())
        plan.instances.append(entry)
    return plan


def definitions(session: Session, key: str, from_version: int, to_version: int):
    if from_version == to_version:
        raise FallwerkError(f"--from and --to are the same version ({from_version})")
    found = {d.version: d for d in session.scalars(select(ProcessDefinition).where(
        ProcessDefinition.key == key, ProcessDefinition.version.in_((from_version, to_version))))}
    for version in (from_version, to_version):
        if version not in found:
            raise NotFound(f"no deployed process '{key}' in version {version}")
    return found[from_version], found[to_version]


def running_instances(session: Session, definition: ProcessDefinition) -> list[ProcessInstance]:
    return list(session.scalars(select(ProcessInstance).where(
        ProcessInstance.definition_id == definition.id, ProcessInstance.status == "running")
        .order_by(ProcessInstance.id)))


# --- moving --------------------------------------------------------------------------------------------
def migrate_instance(session: Session, instance_id: int, target: ProcessDefinition, *, user: str,
                     clock: Clock | None = None, specs: SpecCache = DEFAULT_CACHE,
                     expected_source: int | None = None) -> InstancePlan:
    """Move one instance to `target` (same procedure) under its lock; the caller commits. Raises
    `Conflict` when it cannot move (the plan's reasons say why) and stores nothing then."""
    runtime = Runtime(session, clock=clock or Clock(), specs=specs)
    instance = runtime._lock(instance_id)
    source = instance.definition
    entry = InstancePlan(instance.id, instance.case_number, [])
    if instance.status != "running":
        entry.reasons.append(Reason("not_running", "-", f"instance {instance.id} is {instance.status}"))
    elif expected_source is not None and source.id != expected_source:
        entry.reasons.append(Reason("moved", "-", f"instance {instance.id} is on version {source.version} now"))
    elif source.key != target.key:
        entry.reasons.append(Reason("moved", "-", f"version {target.version} is of '{target.key}', "
                                                  f"not of '{source.key}'"))
    if entry.reasons:
        raise _refusal(entry)
    workflow = runtime._load(instance)
    entry = _entry(instance, workflow)
    new = specs.get(target)
    changed = _migrate_workflow(workflow, new, entry, runtime.clock)
    if not entry.movable:
        raise _refusal(entry)
    now = runtime.clock.now()
    instance.definition_id, instance.definition = target.id, target
    audit.record(session, at=now, actor=user, action="migrate", instance_id=instance.id, element_id=target.key,
                 from_version=source.version, to_version=target.version,
                 changed=sorted(n.element_id for n in entry.notes if n.code != "incident"))
    runtime._advance(instance, workflow, actor=user, action="migrate")
    _redescribe_open_tasks(runtime, instance, workflow, changed, now=now)
    session.flush()
    return entry


def migrate_instances(transaction: Callable[[], AbstractContextManager[Session]], key: str, from_version: int,
                      to_version: int, *, user: str, clock: Clock | None = None, specs: SpecCache = DEFAULT_CACHE,
                      only: list[int] | None = None) -> MigrationReport:
    """Move every running instance of `from_version` (or those of `only`) that can move, each in its own
    transaction (`transaction()` opens one and commits it); one that cannot stays and is reported."""
    with transaction() as session:
        source, target = definitions(session, key, from_version, to_version)
        ids = [i.id for i in running_instances(session, source)]
    if only is not None:
        ids = [i for i in ids if i in set(only)]
    report = MigrationReport(key, from_version, to_version)
    for instance_id in ids:
        try:
            with transaction() as session:
                target_row = session.get(ProcessDefinition, target.id)
                report.migrated.append(migrate_instance(session, instance_id, target_row, user=user, clock=clock,
                                                        specs=specs, expected_source=source.id))
        except MigrationRefused as exc:
            report.failed.append(exc.plan)
        except FallwerkError as exc:
            entry = InstancePlan(instance_id, "", [])
            entry.reasons.append(Reason("failed", "-", str(exc)))
            report.failed.append(entry)
    log.info("migration", extra={"key": key, "from": from_version, "to": to_version,
                                 "migrated": len(report.migrated), "failed": len(report.failed)})
    return report


class MigrationRefused(Conflict):
    """The instance cannot move; `plan` says why."""

    code = "migration_refused"

    def __init__(self, message: str, plan: InstancePlan):
        super().__init__(message)
        self.plan = plan


def _refusal(entry: InstancePlan) -> MigrationRefused:
    return MigrationRefused(f"instance {entry.instance_id} cannot move: "
                            + "; ".join(r.message for r in entry.reasons), entry)


# --- the workflow surgery ------------------------------------------------------------------------------
def _entry(instance: ProcessInstance, workflow) -> InstancePlan:
    active = sorted({t.task_spec.bpmn_id for t in workflow.get_tasks(state=LIVE) if t.task_spec.bpmn_id})
    entry = InstancePlan(instance.id, instance.case_number, active)
    if instance.has_incident:
        entry.notes.append(Note("incident", "-", "the instance has an open incident; moving runs its waiting "
                                                 "steps again"))
    return entry


def _migrate_workflow(workflow, new: LoadedDefinition, entry: InstancePlan, clock: Clock) -> dict[str, dict]:
    """Move `workflow` (in memory) to the new specs; reasons and notes go into `entry`. Returns the live
    elements whose spec changed, with their Camunda attributes before."""
    registry = serialization.SERIALIZER.registry
    parts = [(workflow, new.spec)]
    for sp in workflow.subprocesses.values():
        sp_spec = new.subprocess_specs.get(sp.spec.name)
        if sp_spec is None:
            owner = _element(workflow, sp)
            entry.reasons.append(Reason("subprocess_removed", owner, f"subprocess '{sp.spec.name}' (at {owner}) "
                                                                     "is not part of the new version"))
        else:
            parts.append((sp, sp_spec))
    if entry.reasons:
        return {}
    changed: dict[str, dict] = {}
    plans = []
    for part, spec in parts:
        try:
            spec_diff = SpecDiff(registry, part.spec, spec)
            diff = WorkflowDiff(part, spec_diff)
        except (KeyError, AttributeError) as exc:
            entry.reasons.append(Reason("not_restorable", "-", f"the versions cannot be aligned: {exc!r}"))
            return {}
        _position_reasons(part, spec_diff, spec, entry)
        changed.update(_changed_notes(part, spec_diff, entry))
        plans.append((part, spec, diff, spec_diff))
    if entry.reasons:
        return changed
    for part, spec, diff, spec_diff in plans:
        kept = {t.id: (copy.deepcopy(t.data), copy.deepcopy(t.internal_data), t.task_spec in spec_diff.changed)
                for t in part.get_tasks(state=RESET, skip_subprocesses=True)}
        with engine_time(clock):  # a timer that starts anew counts from the engine's clock
            migrate_workflow(diff, part, spec)
            _repredict_started(part)
        for task_id, (data, internal, was_changed) in kept.items():
            task = part.tasks.get(task_id)
            if task is None:
                continue
            task.data = data
            if not was_changed:
                task.internal_data = internal
    workflow.subprocess_specs = new.subprocess_specs
    _verify(workflow, new, entry)
    return changed


def _repredict_started(part) -> None:
    """`migrate_workflow` re-predicts the branches after waiting tasks only; a running subprocess (STARTED)
    would still continue on the old version's path, so predict its branch again too."""
    for task in part.get_tasks(state=TaskState.STARTED, skip_subprocesses=True):
        if task.children and all(child.has_state(AHEAD) for child in task.children):
            task._drop_children(force=True)
            task.task_spec._predict_hook(task)
            task.task_spec._predict(task, mask=AHEAD)


def _position_reasons(part, spec_diff: SpecDiff, spec, entry: InstancePlan) -> None:
    for task in part.get_tasks(skip_subprocesses=True):
        if task.has_state(AHEAD):
            continue
        aligned = spec_diff.alignment.get(task.task_spec)
        if aligned is not None:
            continue
        element = task.task_spec.bpmn_id or task.task_spec.name
        if task.has_state(LIVE):
            entry.reasons.append(Reason("position_removed", element, f"the instance is at {element}, which the "
                                                                     "new version does not have"))
        else:
            entry.reasons.append(Reason("history_removed", element, f"the instance has passed {element}, which "
                                                                    "the new version does not have"))


def _changed_notes(part, spec_diff: SpecDiff, entry: InstancePlan) -> dict[str, dict]:
    changed = {}
    for task in part.get_tasks(state=LIVE, skip_subprocesses=True):
        keys = spec_diff.changed.get(task.task_spec)
        if not keys or not task.task_spec.bpmn_id:
            continue
        changed[task.task_spec.bpmn_id] = dict(mirror.camunda_attrs(task.task_spec))
        timer = task.has_state(TaskState.WAITING) and "event_definition" in keys
        entry.notes.append(Note("timer_restarted" if timer else "task_changed", task.task_spec.bpmn_id,
                                ", ".join(sorted(keys))))
    return changed


def _verify(workflow, new: LoadedDefinition, entry: InstancePlan) -> None:
    """Every task points at a spec of the new version, and the state restores with it."""
    for part in [workflow, *workflow.subprocesses.values()]:
        for task in part.tasks.values():
            if part.spec.task_specs.get(task.task_spec.name) is not task.task_spec:
                element = task.task_spec.bpmn_id or task.task_spec.name
                entry.reasons.append(Reason("history_removed", element, f"{element} is not part of the new version"))
                return
    try:
        state = serialization.dump_state(workflow)
        serialization.load_state(state, new.spec, new.subprocess_specs, script_engine=make_script_engine())
    except Exception as exc:  # noqa: BLE001 - any failure means: do not move it
        entry.reasons.append(Reason("not_restorable", "-", f"the moved state does not restore: "
                                                           f"{type(exc).__name__}: {exc}"))


def _element(workflow, sp) -> str:
    owner = workflow.get_task_from_id(sp.parent_task_id) if getattr(sp, "parent_task_id", None) else None
    return (owner.task_spec.bpmn_id if owner is not None else None) or sp.spec.name


def _redescribe_open_tasks(runtime: Runtime, instance: ProcessInstance, workflow, changed: dict[str, dict], *,
                           now) -> None:
    """Open tasks of changed elements take their candidates, title and form from the new version, and their
    dates where the date attributes changed (an unchanged `P3D` is not counted again from now)."""
    if not changed:
        return
    rows = runtime.session.scalars(select(Task).where(Task.instance_id == instance.id, Task.state == "open",
                                                      Task.element_id.in_(list(changed)))).all()
    by_id = {str(t.id): t for t in workflow.get_tasks(state=TaskState.READY, manual=True)}
    for row in rows:
        spiff_task = by_id.get(row.id)
        if spiff_task is None:
            continue
        info = runtime._describe_or_incident(instance, spiff_task, now=now)
        spec = spiff_task.task_spec
        row.title = (spec.bpmn_name or spec.bpmn_id or "")[:255]
        row.lane, row.kind = spec.lane, mirror.task_kind(spec)
        row.form_ref, row.form_key = info.get("form_ref"), info.get("form_key")
        row.candidate_users = ",".join(info["candidate_users"])
        row.candidate_groups = ",".join(info["candidate_groups"])
        row.priority = info.get("priority", 50)
        before, after = changed.get(row.element_id, {}), mirror.camunda_attrs(spec)
        if before.get("dueDate") != after.get("dueDate"):
            row.due_at = info.get("due_at")
        if before.get("followUpDate") != after.get("followUpDate"):
            row.follow_up_at = info.get("follow_up_at")
        if row.assignee is None:
            row.assignee = info.get("assignee")
        runtime.session.execute(delete(TaskCandidate).where(TaskCandidate.task_id == row.id))
        for kind, values in (("user", info["candidate_users"]), ("group", info["candidate_groups"]),
                             ("not", info.get("excluded_users", ()))):
            for value in dict.fromkeys(values):
                runtime.session.add(TaskCandidate(task_id=row.id, kind=kind, value=value))
