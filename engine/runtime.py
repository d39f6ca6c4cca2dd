"""Running instances: start, complete, claim, message, cancel, fire timers, retry.

Every public method is one change to one instance: it locks the instance row (FOR UPDATE on
PostgreSQL; SQLite's write lock plus the optimistic `lock_version` check elsewhere), loads the
workflow, acts, runs engine steps, saves state, mirrors, audits and flushes. The caller commits.

An error while engine steps run never loses the instance: the state after the person's own act
(the completed form, the received message) is saved, the failing step stays waiting, and an
incident records what failed; `retry` runs the steps again.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.camunda.specs.user_task import Form as CamundaForm
from SpiffWorkflow.exceptions import SpiffWorkflowException, WorkflowException
from SpiffWorkflow.task import TaskState
from sqlalchemy import Select, String, bindparam, cast, func, or_, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.util import identity_key

from . import audit, direct, mirror, policy, serialization, writes
from .clock import Clock, engine_time
from .db import INTEGER_RANGE
from .deploy import form_reference, latest_definition, start_event_spec
from .errors import (
    ExpressionError,
    FallwerkError,
    ModelError,
    NotFound,
    PermissionDenied,
    StaleTask,
    ValidationFailed,
)
from .forms import deep_merge
from .identity import WORKING_ROLES
from .models import CaseFact, Incident, Membership, ProcessDefinition, ProcessInstance, Task, TaskCandidate, Unit, User
from .parser import MessageEventDefinition as ParsedMessageEventDefinition
from .reporting import facts as reporting_facts
from .specs import DEFAULT_CACHE, DEFAULT_RESTORED, RestoredWorkflows, SpecCache
from .workflow_tasks import tasks_in

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
SYSTEM = "system"
_LENT = "fallwerk.lent_workflows"  # session.info: workflows read by views in this session (see hand_in)


#: characters a task's draft may hold (a form's text as typed; far more than any form of the network needs)
MAX_DRAFT = 200_000


class DraftTooLarge(ValidationFailed):
    code = "draft_too_large"


#: engine steps (tasks run) one act may take without the case waiting: a loop that never waits is stopped.
#: SpiffWorkflow walks the task tree at every step, so the time grows with the square of the steps: 2,000
#: take about 4 s here, while the instance stays locked; no procedure of the network takes 100.
MAX_ENGINE_STEPS = 2_000


def run_engine_steps(workflow: BpmnWorkflow) -> None:
    """`do_engine_steps`, stopped by a ModelError at the element of the step after MAX_ENGINE_STEPS."""
    steps, limit = 0, MAX_ENGINE_STEPS

    def count(task) -> None:
        nonlocal steps
        steps += 1
        if steps > limit:
            raise ModelError(f"more than {limit:,} steps ran without the case waiting for a person, a message or "
                             "a timer: a loop of the model does not end", element_id=task.task_spec.bpmn_id
                             or task.task_spec.name)

    workflow.do_engine_steps(did_complete_task=count)


def make_script_engine():
    from .sandbox import SandboxScriptEngine

    return SandboxScriptEngine()


@dataclass
class Runtime:
    session: Session
    clock: Clock = field(default_factory=Clock)
    specs: SpecCache = field(default_factory=lambda: DEFAULT_CACHE)
    restored: RestoredWorkflows = field(default_factory=lambda: DEFAULT_RESTORED)
    _mirrored: dict[int, mirror.Mirrored] = field(default_factory=dict, init=False, repr=False)

    # --- starting ------------------------------------------------------------------------------------
    def start(self, key: str, *, user: str, data: dict | None = None, version: int | None = None) -> ProcessInstance:
        definition = self._definition(key, version)
        loaded = self.specs.get(definition)
        data = self._start_data(loaded, dict(data or {}), user)
        now = self.clock.now()
        workflow = BpmnWorkflow(loaded.spec, loaded.subprocess_specs, script_engine=make_script_engine())
        start_data = {**loaded.start_defaults, **data}
        workflow.get_tasks(state=TaskState.READY)[0].data.update(start_data)
        instance = ProcessInstance(
            case_number=_case_number(now),
            definition_id=definition.id,
            process_key=definition.key,
            status="running",
            has_incident=False,
            state_json="",
            serializer_version=serialization.SERIALIZER_VERSION,
            started_by=user,
            started_at=now,
            updated_at=now,
            active_elements="",
        )
        instance.definition = definition
        self.session.add(instance)
        self.session.flush()
        audit.record(self.session, at=now, actor=user, action="start", instance_id=instance.id,
                     element_id=definition.key, changed_keys=start_data.keys(), version=definition.version)
        self._advance(instance, workflow, actor=user, read=_Read(open_tasks=set(), facts=None))  # a new instance
        return instance

    def _start_data(self, loaded, data: dict, user: str) -> dict:
        """Start data validated against the start event's form (if it has one), with the starter's name."""
        start = start_event_spec(loaded.spec)
        form = task_form(start, loaded.forms) if start is not None else None
        if form is not None:
            data = form.validate(data)
            _check_storable(data)
        else:
            _check_keys(data)
        # `initiator` is who really started it: data cannot name someone else (tasks are assigned by it)
        data["initiator"] = user
        starter = mirror.camunda_attrs(start).get("initiator") if start is not None else None
        if starter and _KEY.match(starter):
            data[starter] = user  # Camunda's camunda:initiator="variable"
        return data

    # --- human tasks ---------------------------------------------------------------------------------
    def complete(self, task_id: str, *, user: str,
                 data: dict | Callable[[Task, ProcessDefinition], dict] | None = None) -> ProcessInstance:
        """Complete an open task with `data`, validated against its form. `data` may be a function of the
        task's row and version, called under the lock once the user's access is checked (the web app
        parses a form post against the task's form, which it learns only then; it may raise
        PermissionDenied after asking the policy)."""
        instance, row, read, access = self._lock_task(task_id, user)
        stored = instance.state_json
        workflow = self._load_ready(instance, row)
        self._may_act(row, user, access=access)
        if callable(data):
            policy.remember_candidates(self.session, row.id, access.candidate_pairs())
            data = data(row, instance.definition)
        spiff_task = workflow.get_task_from_id(UUID(task_id))
        clean = self.validate_task_data(row, spiff_task, dict(data or {}), loaded=self.specs.get(instance.definition))
        before = copy.deepcopy(spiff_task.data)

        def act(workflow: BpmnWorkflow) -> None:
            spiff_task = workflow.get_task_from_id(UUID(task_id))
            spiff_task.data = deep_merge(spiff_task.data, clean)
            with engine_time(self.clock):
                spiff_task.run()

        def replay() -> BpmnWorkflow:
            again = self._load(instance, stored)
            with engine_time(self.clock):
                again.refresh_timers()
            act(again)
            return again

        now = self.clock.now()
        act(workflow)
        mirror.complete_task(self.session, row, user=user, now=now)
        audit.record(self.session, at=now, actor=user, action="complete", instance_id=instance.id,
                     task_id=task_id, element_id=row.element_id,
                     changed_keys=audit.changed_keys(before, spiff_task.data))
        read.open_tasks.discard(task_id)
        self._advance(instance, workflow, actor=user, replay=replay, read=read)
        return instance

    def tasks_opened(self, instance_id: int) -> list[tuple[Task, list[tuple[str, str]]]] | None:
        """The task rows that the last change to this instance through this runtime opened, oldest first,
        each with its candidate entries (kind, value), if they are all the instance has open; else None
        (other tasks are open too, or this runtime has not changed the instance). The rows join the
        session as loaded rows, without a query (they were inserted in this transaction)."""
        mirrored = self._mirrored.get(instance_id)
        if mirrored is None or mirrored.still_open:
            return None
        opened = []
        for values in sorted(mirrored.created, key=lambda v: v["id"]):
            row = self.session.identity_map.get(identity_key(Task, values["id"]))
            if row is None:
                row = direct.adopt(self.session, Task, [(key, values.get(key)) for key, _ in _TASK_COLUMNS])
            pairs = [(c["kind"], c["value"]) for c in mirrored.candidates if c["task_id"] == values["id"]]
            opened.append((row, pairs))
        return opened

    def save_draft(self, task_id: str, *, user: str, data: dict) -> Task:
        import json

        row = self._task_row(task_id)
        if row.state != "open":
            raise StaleTask(_stale_message(row), element_id=row.element_id)
        self._may_act(row, user)
        text = json.dumps(data, ensure_ascii=False, default=str)
        if len(text) > MAX_DRAFT:  # read with the task on every page of it
            raise DraftTooLarge(f"a draft may hold at most {MAX_DRAFT:,} characters, not {len(text):,}")
        row.draft_json = text
        self.session.flush()
        return row

    def claim(self, task_id: str, *, user: str) -> Task:
        row = self._open_row(task_id)
        self._may_act(row, user, claiming=True)
        if row.assignee not in (None, user):
            raise StaleTask(f"task is already claimed by {row.assignee}", element_id=row.element_id)
        return self._set_assignee(row, user, actor=user, action="claim")

    def unclaim(self, task_id: str, *, user: str) -> Task:
        row = self._open_row(task_id)
        if row.assignee != user and not self._is_lead_for(row, user):
            raise PermissionDenied("only the assignee can release this task", element_id=row.element_id)
        return self._set_assignee(row, None, actor=user, action="unclaim")

    def assign(self, task_id: str, *, assignee: str, user: str) -> Task:
        """Hand a task over to a colleague who is a candidate for it."""
        row = self._open_row(task_id)
        if row.assignee not in (None, user) and not self._is_lead_for(row, user):
            raise PermissionDenied("only the assignee or a unit lead can hand this task over",
                                   element_id=row.element_id)
        self._may_act(row, user, claiming=True)
        self._may_act(row, assignee, claiming=True)
        return self._set_assignee(row, assignee, actor=user, action="assign")

    def _set_assignee(self, row: Task, assignee: str | None, *, actor: str, action: str) -> Task:
        self._lock(row.instance_id)
        self.session.refresh(row)
        if row.state != "open":
            raise StaleTask(_stale_message(row), element_id=row.element_id)
        row.assignee = assignee
        audit.record(self.session, at=self.clock.now(), actor=actor, action=action, instance_id=row.instance_id,
                     task_id=row.id, element_id=row.element_id, assignee=assignee)
        self.session.flush()
        return row

    # --- events --------------------------------------------------------------------------------------
    def send_message(self, instance_id: int, name: str, *, user: str, payload: dict | None = None,
                     precondition: Callable[[BpmnWorkflow], None] | None = None) -> ProcessInstance:
        """Send message `name` to the instance. `precondition(workflow)` runs under the instance's lock on
        its current state, and may refuse the message by raising (a FallwerkError): a second request that
        raced the first sees what the first did."""
        instance = self._lock(instance_id)
        self._require_running(instance)
        workflow = self._load(instance)
        if precondition is not None:
            precondition(workflow)
        payload = dict(payload or {})
        _check_keys(payload)
        event = _message_event(workflow, name, payload)
        try:
            with engine_time(self.clock):
                workflow.refresh_timers()  # a timer that fell due before the message came wins (event gateways)
                _start_nested_event_subprocesses(workflow, event)
                workflow.send_event(event)
        except WorkflowException as exc:
            raise FallwerkError(f"instance {instance.id} is not waiting for message '{name}'") from exc
        audit.record(self.session, at=self.clock.now(), actor=user, action="message", instance_id=instance.id,
                     element_id=name, changed_keys=payload.keys())
        self._advance(instance, workflow, actor=user)
        return instance

    def fire_timers(self, instance_id: int, *, actor: str = SYSTEM) -> ProcessInstance:
        """Fire whatever timers of this instance are due by the clock, and run it on."""
        instance = self._lock(instance_id)
        if instance.status != "running":
            return instance
        workflow = self._load(instance)
        self._advance(instance, workflow, actor=actor, action="timer")
        return instance

    def retry(self, instance_id: int, *, user: str) -> ProcessInstance:
        instance = self._lock(instance_id)
        self._require_running(instance)
        workflow = self._load(instance)
        for incident in self._open_incidents(instance.id):
            incident.resolved_at, incident.resolved_by = self.clock.now(), user
        instance.has_incident = False
        audit.record(self.session, at=self.clock.now(), actor=user, action="retry", instance_id=instance.id)
        self._advance(instance, workflow, actor=user)
        return instance

    def set_data(self, instance_id: int, values: dict, *, user: str, unset: tuple[str, ...] = (),
                 reason: str = "") -> ProcessInstance:
        """Correct a running instance's data (an administrator's act, audited); nothing runs: `retry` does.

        The values replace top-level keys (and `unset` removes keys) in the data of every task the instance
        continues from: ready, waiting and started tasks, and the task each waiting event inherits its data
        from again when it is refreshed.
        """
        instance = self._lock(instance_id)
        self._require_running(instance)
        workflow = self._load(instance)
        values = dict(values or {})
        _check_keys(values)
        _check_keys(dict.fromkeys(unset))
        if not values and not unset:
            raise ValidationFailed("nothing to change: give values to set or keys to remove")
        before = instance_data(workflow)
        live = workflow.get_tasks(state=TaskState.READY | TaskState.WAITING | TaskState.STARTED)
        targets = {t.id: t for t in live}
        targets.update({t.parent.id: t.parent for t in live if t.state == TaskState.WAITING and t.parent is not None})
        for task in targets.values():
            task.data.update(copy.deepcopy(values))
            for key in unset:
                task.data.pop(key, None)
        now = self.clock.now()
        audit.record(self.session, at=now, actor=user, action="data", instance_id=instance.id,
                     changed_keys=audit.changed_keys(before, instance_data(workflow)) | set(values) | set(unset),
                     reason=reason)
        self._save(instance, workflow)
        return instance

    def cancel(self, instance_id: int, *, user: str, reason: str = "") -> ProcessInstance:
        instance = self._lock(instance_id)
        self._require_running(instance)
        workflow = self._load(instance)
        workflow.cancel()
        now = self.clock.now()
        instance.status, instance.ended_at, instance.end_reason = "cancelled", now, reason or None
        audit.record(self.session, at=now, actor=user, action="cancel", instance_id=instance.id, reason=reason)
        self._save(instance, workflow)
        return instance

    # --- validation ----------------------------------------------------------------------------------
    def validate_task_data(self, row: Task, spiff_task, data: dict, *, loaded, partial: bool = False) -> dict:
        form = task_form(spiff_task.task_spec, loaded.forms)
        if form is None:
            _check_keys(data)
            return data
        # a field the caller did not send keeps the value the case already has, as a form pre-filled
        # from the case's data would send it (Camunda forms work that way)
        kept = {key: value for key, value in form.initial_values(spiff_task.data).items()
                if key.split(".")[0] not in data and key not in data and _has_path(spiff_task.data, key)}
        data = form.validate({**kept, **data}, partial=partial, context=spiff_task.data)
        _check_storable(data)
        return data

    # --- internals -----------------------------------------------------------------------------------
    def _definition(self, key: str, version: int | None) -> ProcessDefinition:
        if version is None:
            definition = latest_definition(self.session, key)
        else:
            definition = self.session.scalar(
                select(ProcessDefinition).where(ProcessDefinition.key == key, ProcessDefinition.version == version)
            )
        if definition is None:
            raise NotFound(f"no deployed process '{key}'" + (f" in version {version}" if version else ""))
        return definition

    def _lock(self, instance_id: int) -> ProcessInstance:
        instance = self.session.scalar(
            select(ProcessInstance)
            .where(ProcessInstance.id == instance_id)
            .with_for_update(of=ProcessInstance)
            .execution_options(populate_existing=True)
        )
        if instance is None:
            raise NotFound(f"no instance {instance_id}")
        return instance

    def _load(self, instance: ProcessInstance, state: str | None = None) -> BpmnWorkflow:
        text = instance.state_json if state is None else state
        workflow = self.restored.take(instance.definition.content_hash, text)
        if workflow is not None:
            return workflow
        loaded = self.specs.get(instance.definition)
        return serialization.load_state(text, loaded.spec, loaded.subprocess_specs,
                                        script_engine=make_script_engine())

    def load_workflow(self, instance: ProcessInstance) -> BpmnWorkflow:
        """Read-only access for views: the restored workflow of an instance (not locked). The caller must
        not change it: `hand_in` offers it to the next change of the same state."""
        workflow = self._load(instance)
        self.session.info.setdefault(_LENT, []).append((instance.definition.content_hash, instance.state_json,
                                                        workflow))
        return workflow

    def hand_in(self) -> None:
        """Offer the workflows this session's views read to the next change (see `RestoredWorkflows`):
        called by whoever owns the session, once those views are done with them."""
        for content_hash, state, workflow in self.session.info.pop(_LENT, ()):
            self.restored.hand_in(content_hash, state, workflow)

    def _task_row(self, task_id: str) -> Task:
        row = self.session.get(Task, task_id)
        if row is None:
            raise NotFound(f"no task {task_id}")
        return row

    def _open_row(self, task_id: str) -> Task:
        row = self._task_row(task_id)
        if row.state != "open":
            raise StaleTask(_stale_message(row), element_id=row.element_id)
        return row

    def _lock_task(self, task_id: str, username: str) -> tuple[ProcessInstance, Task, _Read, _Access]:
        """The task's instance, locked; the task's row as it is under that lock (it must be open); the
        user's access to it; and what the save will need of the instance's other rows (its open tasks,
        its facts). One query, unless it had to wait for the lock (see `_LOCK_READ`), sent straight to
        the driver: the ORM's processing of its 80 columns cost more than the query itself. The rows
        become the session's objects as if an ORM query had loaded them."""
        conn = self.session.connection()
        params = {"task_id": task_id, "username": username, "separator": _SEPARATOR}
        for _ in range(2):
            found = direct.fetch(conn, _LOCK_READ[conn.dialect.name], params)
            if not found:
                raise NotFound(f"no task {task_id}")
            instance_values, definition_values, task_values, fact_values, rest = direct.split(
                found[0], _INSTANCE_COLUMNS, _DEFINITION_COLUMNS, _TASK_COLUMNS, _FACT_COLUMNS)
            active, groups, candidates, open_tasks, seen_version = rest
            if seen_version == dict(instance_values)["lock_version"]:
                break
        instance = adopt_case(self.session, instance_values, definition_values)
        row = direct.adopt(self.session, Task, task_values)
        if row.state != "open" or instance.status != "running":
            raise StaleTask(_stale_message(row), element_id=row.element_id)
        facts = dict(fact_values) if fact_values[0][1] is not None else None  # the key is None: no facts row
        read = _Read(open_tasks=set(filter(None, (open_tasks or "").split(_SEPARATOR))), facts=facts)
        return instance, row, read, _Access.parse(username, active, groups, candidates)

    def _load_ready(self, instance: ProcessInstance, row: Task) -> BpmnWorkflow:
        """The instance's workflow, in which the task of `row` is still READY."""
        workflow = self._load(instance)
        # A boundary timer that fell due withdraws the task: find out before accepting a completion.
        with engine_time(self.clock):
            workflow.refresh_timers()
        if not tasks_in(workflow, TaskState.READY, manual=False):
            probe = workflow
        else:
            probe = self._load(instance)  # keep `workflow` clean: the worker records what fired
            with engine_time(self.clock):
                probe.refresh_timers()
                try:
                    run_engine_steps(probe)
                except Exception:  # noqa: BLE001 - the worker records it; here we only ask about the task
                    log.info("engine steps failed while checking task freshness", extra={"task": row.id})
        spiff_task = probe.get_task_from_id(UUID(row.id)) if UUID(row.id) in _all_ids(probe) else None
        if spiff_task is None or spiff_task.state != TaskState.READY:
            raise StaleTask("the task was withdrawn because its deadline passed", element_id=row.element_id)
        return workflow

    def _may_act(self, row: Task, username: str, *, claiming: bool = False, access: _Access | None = None) -> None:
        access = access or self._access(row, username)
        if not access.active:
            raise PermissionDenied(f"user {username} is deactivated")
        if not may_work_on(row, username, access.groups, access.candidates):
            raise PermissionDenied(f"{username} is not a candidate for this task", element_id=row.element_id)
        if not claiming and row.assignee not in (None, username):
            raise PermissionDenied(f"task is assigned to {row.assignee}", element_id=row.element_id)

    def _access(self, row: Task, username: str) -> _Access:
        """Whether the user is active, their groups and the task's candidates, read in one query."""
        found = self.session.connection().execute(_ACCESS, {"username": username, "task_id": row.id}).one()
        return _Access.parse(username, *found)

    def _is_lead_for(self, row: Task, username: str) -> bool:
        access = self._access(row, username)
        leads = {group.split(":", 1)[0] for group in access.groups if group.endswith(":lead")}
        return any(g.split(":", 1)[0] in leads for g in access.candidates["group"])

    def _require_running(self, instance: ProcessInstance) -> None:
        if instance.status != "running":
            raise StaleTask(f"instance {instance.id} is {instance.status}")

    def _open_incidents(self, instance_id: int) -> list[Incident]:
        return list(self.session.scalars(
            select(Incident).where(Incident.instance_id == instance_id, Incident.resolved_at.is_(None))
        ))

    def _advance(self, instance: ProcessInstance, workflow: BpmnWorkflow, *, actor: str, action: str = "run",
                 replay: Callable[[], BpmnWorkflow] | None = None, read: _Read | None = None) -> None:
        """Run engine steps and save; on failure keep the last good state and record an incident.

        The last good state is the workflow as it is now, before the steps: `replay()` rebuilds it
        when the steps fail (cheaper than a snapshot that is almost never used); without it, a
        snapshot is taken. `_save` changes nothing before the last step that runs model code has
        succeeded, so after a failure the good state is saved instead (no savepoint needed).
        `read`: see `_save`.
        """
        if replay is None:
            snapshot = serialization.dump_state(workflow)
            spec, subprocess_specs = workflow.spec, workflow.subprocess_specs

            def replay() -> BpmnWorkflow:
                return serialization.load_state(snapshot, spec, subprocess_specs, script_engine=make_script_engine())
        queued = writes.mark(self.session.connection())
        try:
            with engine_time(self.clock):
                workflow.refresh_timers()
                run_engine_steps(workflow)
            self._save(instance, workflow, read=read)
        except Exception as exc:  # noqa: BLE001 - any failure of model code becomes an incident
            writes.discard(self.session.connection(), queued)
            self._incident(instance, exc, actor=actor, action=action)
            workflow = replay()
            self._save(instance, workflow, describe_failures_as_incidents=True, read=read)

    def _incident(self, instance: ProcessInstance, exc: Exception, *, actor: str, action: str) -> Incident:
        element_id, message = describe_error(exc)
        attempt = 1 + sum(1 for _ in self.session.scalars(
            select(Incident.id).where(Incident.instance_id == instance.id, Incident.element_id == element_id)))
        incident = Incident(instance_id=instance.id, element_id=element_id, message=message[:4000],
                            error_type=type(exc).__name__, attempt=attempt, created_at=self.clock.now())
        self.session.add(incident)
        instance.has_incident = True
        audit.record(self.session, at=self.clock.now(), actor=actor, action="incident", instance_id=instance.id,
                     element_id=element_id, message=message[:500], during=action)
        log.warning("incident", extra={"instance": instance.id, "element": element_id, "error": message[:500]})
        return incident

    def _save(self, instance: ProcessInstance, workflow: BpmnWorkflow, *,
              describe_failures_as_incidents: bool = False, read: _Read | None = None) -> None:
        """Store the state, mirror tasks and timers, update the facts; one flush at the end.

        `read`: the instance's open task rows and facts, if the caller read them under the lock
        already (otherwise they are read here).

        What can fail on the model's account (state that cannot be stored, task attributes that cannot
        be resolved, timer values) is computed before the first change to the session.
        """
        now = self.clock.now()
        state = serialization.dump_state(workflow)
        timers = mirror.waiting_timers(workflow) if self.specs.get(instance.definition).has_timers else None
        describe = functools.partial(self._describe, instance, now=now)
        if describe_failures_as_incidents:
            describe = functools.partial(self._describe_or_incident, instance, now=now)
        with self.session.no_autoflush:
            mirrored = mirror.sync_tasks(self.session, instance, workflow, now=now, describe=describe,
                                         open_tasks=read.open_tasks if read else None)
            self._mirrored[instance.id] = mirrored
            self._save_instance(instance, workflow, state, now=now)
            if timers is not None:
                mirror.sync_timers(self.session, instance, workflow, now=now, waiting=timers)
            new_groups = [g for row in mirrored.created for g in row["candidate_groups"].split(",")]
            # the figures read the facts
            reporting_facts.record(self.session, instance, workflow, now=now, new_groups=new_groups,
                                   stored=read.facts if read else reporting_facts.UNREAD)
        writes.send(self.session.connection())  # the instance row first: the flush checks its version
        self.session.flush()

    def _save_instance(self, instance: ProcessInstance, workflow: BpmnWorkflow, state: str, *, now: datetime) -> None:
        """Queue the write of the instance's row (a plain update under the optimistic version check)
        and change the loaded `instance` with it now; changes the caller made to other attributes are
        flushed as usual, after the queue is sent."""
        values = {"state_json": state, "serializer_version": serialization.SERIALIZER_VERSION, "updated_at": now,
                  "status": instance.status, "ended_at": instance.ended_at}
        if instance.status == "running" and workflow.is_completed():
            values["status"], values["ended_at"] = "completed", now
            audit.record(self.session, at=now, actor=SYSTEM, action="end", instance_id=instance.id)
        unit = instance_data(workflow).get("responsible_unit")
        values["responsible_unit"] = unit if isinstance(unit, str) else instance.responsible_unit
        active = [t.task_spec.bpmn_id for t in tasks_in(workflow, TaskState.READY | TaskState.WAITING
                                                                  | TaskState.STARTED) if t.task_spec.bpmn_id]
        values["active_elements"] = ",".join(sorted(set(active)))[:4000]
        values["lock_version"] = instance.lock_version + 1

        def check(rowcount: int, _rows) -> None:
            if rowcount != 1:
                raise StaleDataError(f"instance {instance.id} was changed by someone else")

        writes.add(self.session.connection(), _SAVE_INSTANCE,
                   {**values, "instance_id": instance.id, "expected_version": instance.lock_version}, then=check)
        for name, value in values.items():
            set_committed_value(instance, name, value)

    def _describe_or_incident(self, instance: ProcessInstance, spiff_task, *, now: datetime) -> dict:
        """Like `_describe`, but a task whose attributes cannot be resolved goes to its initiator."""
        try:
            return self._describe(instance, spiff_task, now=now)
        except FallwerkError as exc:
            self._incident(instance, exc, actor=SYSTEM, action="mirror")
            return {"candidate_users": [instance.started_by], "candidate_groups": []}

    def _describe(self, instance: ProcessInstance, spiff_task, *, now: datetime) -> dict:
        """Resolve a new human task's candidates, assignee, dates and form from its Camunda attributes."""
        attrs = mirror.camunda_attrs(spiff_task.task_spec)
        resolve = _Resolver(spiff_task)
        users = _split(resolve(attrs.get("candidateUsers")))
        groups = _split(resolve(attrs.get("candidateGroups")))
        if not groups and spiff_task.task_spec.lane:
            groups = self._lane_groups(spiff_task.task_spec.lane)
        assignee = resolve(attrs.get("assignee")) or None
        if not users and not groups and not assignee:
            users = [instance.started_by]  # nobody named: the person who started it does it
        # four eyes: <camunda:property name="not_user" value="${recorded_by}"/> keeps that person out
        properties = getattr(spiff_task.task_spec, "extensions", None) or {}
        excluded = _split(resolve(properties.get("not_user")))
        priority = resolve(attrs.get("priority"))
        return {
            "candidate_users": users,
            "candidate_groups": groups,
            "assignee": assignee,
            "excluded_users": excluded,
            "due_at": _instant(resolve(attrs.get("dueDate")), now),
            "follow_up_at": _instant(resolve(attrs.get("followUpDate")), now),
            "priority": _priority(priority),
            "form_ref": form_reference(attrs),
            "form_key": attrs.get("formKey"),
        }

    def _lane_groups(self, lane: str) -> list[str]:
        lane_l = lane.strip().lower()
        for unit in self.session.scalars(select(Unit)):
            if lane_l in (unit.id.lower(), unit.name.lower()):
                return [unit.id]
        return []


# --- statements of the hot path, built once ---------------------------------------------------------
_SEPARATOR = "\x1f"


def _access_columns(aggregate, separator, task_id) -> tuple:
    """Whether user `username` is active, their groups, and the candidates of task `task_id`, as three
    columns; `aggregate(expression, separator)` is a string aggregation."""
    user = User.username == bindparam("username")
    return (
        select(cast(User.is_active, String)).where(user).scalar_subquery(),
        select(aggregate(Membership.unit_id + ":" + Membership.role, separator))
        .join(User, User.id == Membership.user_id)
        .where(user, or_(*(Membership.role == role for role in sorted(WORKING_ROLES)))).scalar_subquery(),
        select(aggregate(TaskCandidate.kind + " " + TaskCandidate.value, separator))
        .where(TaskCandidate.task_id == task_id).scalar_subquery(),
    )


_ACCESS = select(*_access_columns(func.aggregate_strings, _SEPARATOR, bindparam("task_id")))


def adopt_case(session: Session, instance_values: list, definition_values: list) -> ProcessInstance:
    """An instance's row and its version's row, read straight from the driver (`engine.direct`), as the
    session's objects, the version loaded as the instance's `definition`."""
    instance = direct.adopt(session, ProcessInstance, instance_values)
    set_committed_value(instance, "definition", direct.adopt(session, ProcessDefinition, definition_values))
    return instance


_INSTANCE_COLUMNS = direct.loaded_columns(ProcessInstance)
_DEFINITION_COLUMNS = direct.loaded_columns(ProcessDefinition)
_TASK_COLUMNS = direct.loaded_columns(Task)
_FACT_COLUMNS = direct.loaded_columns(CaseFact)


def _lock_read(aggregate) -> Select:
    """The task's row, its instance (locked) and version, the instance's facts, the user's access
    (whether active, their groups, the task's candidates), the ids of the instance's open tasks, and
    the instance's version as the query's snapshot has it. On PostgreSQL, a query that waited for the
    lock gets the instance's row as the holder committed it, but the other rows as they were before:
    the two versions differ then, and the query runs again (it holds the lock now). Changes to tasks
    and facts are made under the lock, and bump the version.

    `aggregate(expression, separator)`: the database's string aggregation."""
    sep = bindparam("separator", type_=String)
    opened, seen = aliased(Task), aliased(ProcessInstance)
    return (
        select(*(column for columns in (_INSTANCE_COLUMNS, _DEFINITION_COLUMNS, _TASK_COLUMNS, _FACT_COLUMNS)
                 for _, column in columns),
               *_access_columns(aggregate, sep, Task.id),
               select(aggregate(opened.id, sep))
               .where(opened.instance_id == Task.instance_id, opened.state == "open").scalar_subquery(),
               select(seen.lock_version).where(seen.id == Task.instance_id).scalar_subquery())
        .select_from(Task)
        .join(ProcessInstance, ProcessInstance.id == Task.instance_id)
        .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
        .outerjoin(CaseFact, CaseFact.instance_id == ProcessInstance.id)
        .where(Task.id == bindparam("task_id"))
        .with_for_update(of=ProcessInstance.__table__)
    )


_LOCK_READ = {"postgresql": _lock_read(func.string_agg), "sqlite": _lock_read(func.group_concat)}


_SAVE_INSTANCE = (
    update(ProcessInstance.__table__)
    .where(ProcessInstance.id == bindparam("instance_id"),
           ProcessInstance.lock_version == bindparam("expected_version"))
    .values({name: bindparam(name) for name in ("state_json", "serializer_version", "updated_at", "status", "ended_at",
                                                 "responsible_unit", "active_elements", "lock_version")})
)

# --- helpers -----------------------------------------------------------------------------------------
@dataclass
class _Access:
    active: bool
    groups: set[str] = field(default_factory=set)
    candidates: dict[str, set[str]] = field(default_factory=lambda: {"user": set(), "group": set(), "not": set()})

    def candidate_pairs(self) -> list[tuple[str, str]]:
        return [(kind, value) for kind, values in self.candidates.items() for value in values]

    @classmethod
    def parse(cls, username: str, active: str | None, groups: str | None, candidates: str | None) -> _Access:
        """From the columns of `_access_columns`."""
        if active is None:
            raise NotFound(f"Unknown user '{username}'")
        access = cls(active=active in ("1", "true"))
        for group in filter(None, (groups or "").split(_SEPARATOR)):
            access.groups |= {group.split(":", 1)[0], group}
        for candidate in filter(None, (candidates or "").split(_SEPARATOR)):
            kind, _, value = candidate.partition(" ")
            access.candidates.setdefault(kind, set()).add(value)
        return access


@dataclass
class _Read:
    """Rows of an instance read under its lock, which its save then need not read again."""

    open_tasks: set[str]  # ids of its open task rows
    facts: Mapping | None  # its case facts row (None: it has none yet)


def may_work_on(row: Task, username: str, groups: set[str], candidates: dict[str, set[str]]) -> bool:
    if username in candidates.get("not", ()):
        return False
    if row.assignee == username:
        return True
    return username in candidates.get("user", ()) or bool(groups & candidates.get("group", set()))


def task_form(task_spec, forms: dict):
    """The form a task's data is validated against, or None when the task declares none."""
    from . import forms as forms_module

    attrs = mirror.camunda_attrs(task_spec)
    ref = form_reference(attrs)
    if ref:
        definition = forms.get(ref)
        if definition is None:
            raise FallwerkError(f"form '{ref}' is not part of this version", element_id=task_spec.bpmn_id)
        return forms_module.load_form(definition)
    form = getattr(task_spec, "form", None)
    if form is None and attrs.get("form"):  # a start event's inline camunda:formData
        form = CamundaForm(init=attrs["form"])
    if form is not None and getattr(form, "fields", None):
        return forms_module.form_from_camunda(form, element_id=task_spec.bpmn_id or task_spec.name)
    return None


def completed_elements(workflow: BpmnWorkflow) -> list[str]:
    """BPMN ids of the elements that ran, in order of completion, each once."""
    done = sorted(workflow.get_tasks(state=TaskState.COMPLETED), key=lambda t: t.last_state_change)
    return list(dict.fromkeys(t.task_spec.bpmn_id for t in done if t.task_spec.bpmn_id))


def instance_data(workflow: BpmnWorkflow) -> dict:
    if workflow.is_completed():
        return dict(workflow.data)
    last = workflow.last_task
    return dict(last.data) if last is not None else dict(workflow.data)


def describe_error(exc: BaseException) -> tuple[str | None, str]:
    """The element a failure belongs to and a one-line message, from any exception."""
    element_id = None
    seen = exc
    while seen is not None:
        if isinstance(seen, FallwerkError) and seen.element_id:
            element_id = seen.element_id
            break
        task = getattr(seen, "task", None)
        if task is not None and getattr(task, "task_spec", None) is not None:
            element_id = task.task_spec.bpmn_id or task.task_spec.name
            break
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, SpiffWorkflowException):
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        notes = getattr(exc, "notes", None) or getattr(exc, "__notes__", None) or []
        if notes:
            message += " (" + "; ".join(str(n) for n in notes) + ")"
    elif isinstance(exc, FallwerkError):
        message = exc.message
    else:
        message = f"{type(exc).__name__}: {exc}"
    return element_id, message


def _message_event(workflow: BpmnWorkflow, name: str, payload: dict) -> BpmnEvent:
    """An event that the instance's waiting message catchers recognise (they compare classes)."""
    for task in workflow.get_tasks(state=TaskState.WAITING | TaskState.READY | TaskState.FUTURE):
        definition = getattr(task.task_spec, "event_definition", None)
        # an event-based gateway (or a multiple event) waits for several definitions at once
        for candidate in getattr(definition, "event_definitions", None) or [definition]:
            if isinstance(candidate, MessageEventDefinition) and candidate.name == name:
                cls = type(candidate)
                correlations = _correlations(workflow, candidate, payload)
                if hasattr(candidate, "result_var"):  # Camunda's flavour wraps the payload
                    return BpmnEvent(cls(name), {"payload": payload, "result_var": None}, correlations)
                return BpmnEvent(cls(name), payload, correlations)
    # nothing waits by that name yet (e.g. an event subprocess's start event): send our parser's flavour
    return BpmnEvent(ParsedMessageEventDefinition(name), {"payload": payload, "result_var": None})


def _start_nested_event_subprocesses(workflow: BpmnWorkflow, event: BpmnEvent) -> None:
    """Start the message event subprocesses of running called processes that catch `event`.

    SpiffWorkflow 3.2 starts message event subprocesses only for the top process; in BPMN an event
    subprocess belongs to every running instance of its process, called ones included (a consultation
    called from a proactive intervention can be escalated like any other).
    """
    for sub in list(workflow.subprocesses.values()):
        start = getattr(sub.spec, "start", None)
        if sub.completed or start is None:
            continue
        for name in getattr(start, "trigger_specs", ()):
            sp_spec = workflow.subprocess_specs.get(name)
            starts = [ts for ts in (sp_spec.bpmn_start_events if sp_spec else ())
                      if ts.event_definition == event.event_definition]
            waiting = any(
                other.get_next_task(state=TaskState.WAITING, spec_name=ts.name) is not None
                for other in workflow.subprocesses.values() if other.parent_workflow is sub for ts in starts
            )
            if starts and not waiting:
                start.trigger_wf(sub.task_tree, name)


def _correlations(workflow: BpmnWorkflow, definition: MessageEventDefinition, payload: dict) -> dict:
    """The message's correlation keys, read from its payload with the catcher's correlation properties
    (once an instance has correlated, it only catches messages whose keys match)."""
    if not definition.correlation_properties:
        return {}
    try:
        return definition.calculate_correlations(workflow.script_engine, definition.correlation_properties, payload)
    except Exception as exc:
        _, message = describe_error(exc)
        raise ValidationFailed(f"message '{definition.name}' lacks a correlation property: {message}") from exc


def _all_ids(workflow: BpmnWorkflow) -> set:
    ids = set(workflow.tasks)
    for sp in workflow.subprocesses.values():
        ids.update(sp.tasks)
    return ids


def _has_path(data: dict, dotted: str) -> bool:
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _check_keys(data: dict) -> None:
    bad = [k for k in data if not isinstance(k, str) or not _KEY.match(k)]
    if bad:
        raise ValidationFailed("invalid data keys", errors={str(k): ["not a valid variable name"] for k in bad})
    _check_storable(data)


def _check_storable(data: dict) -> None:
    """No mapping in the data may have the key the stored state marks typed values with, nor may it nest
    deeper than a stored case can be restored (`serialization.data_problems`)."""
    problems = serialization.data_problems(data)
    if problems:
        raise ValidationFailed("data that cannot be stored", errors={path: [message]
                                                                     for path, message in problems.items()})


_INTEGER = re.compile(r"\s*-?[0-9]{1,12}\s*")


def _priority(value) -> int:
    """A task's priority from its resolved `camunda:priority`: a whole number (kept within the column's
    range), else the default 50."""
    if not _INTEGER.fullmatch(str(value if value is not None else "")):
        return 50
    low, high = INTEGER_RANGE
    return min(max(int(value), low), high)


def _split(value: str | list | None) -> list[str]:
    parts = value if isinstance(value, list) else (value or "").split(",")
    return [part.strip() for part in parts if part and part.strip()]


class _Resolver:
    """Resolves `${...}` inside an attribute value against the task's data, in the sandbox."""

    def __init__(self, spiff_task):
        self.task = spiff_task

    def __call__(self, value: str | list | None) -> str | None:
        if isinstance(value, list):
            return ",".join(self(item) or "" for item in value)
        if value is None or ("${" not in value and "#{" not in value):
            return value
        from .expressions import resolve_template

        engine = self.task.workflow.script_engine
        try:
            return resolve_template(value, lambda expr: engine.evaluate(self.task, expr))
        except Exception as exc:
            _, message = describe_error(exc)
            raise ExpressionError(f"cannot resolve '{value}': {message}",
                                  element_id=self.task.task_spec.bpmn_id) from exc


def _instant(value, now: datetime) -> datetime | None:
    """A due date: an ISO instant or date, or an ISO duration (P3D) counted from now."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip()
    if text.upper().startswith("P"):
        from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

        try:
            return now + TimerEventDefinition.get_timedelta_from_start(
                TimerEventDefinition.parse_iso_duration(text), now)
        except Exception as exc:
            raise ExpressionError(f"invalid ISO-8601 duration '{text}'") from exc
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ExpressionError(f"invalid date '{text}'") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _case_number(now: datetime) -> str:
    """Pseudonymous: says nothing about the person, the unit or the order of cases."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    code = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{now.year}-{code[:4]}-{code[4:]}"


def _stale_message(row: Task) -> str:
    if row.state == "completed":
        return f"task already completed by {row.completed_by}"
    if row.state == "withdrawn":
        return "task was withdrawn (its deadline passed, or the case moved on)"
    return "task is no longer open"


