"""Drive the corpus models (../shared/corpus) through the engine, the way a person and the worker would.

Each model is deployed with `engine.deploy.deploy`, started with `Runtime.start`, and then driven one
act at a time, each act in its own transaction as the CLI and the web app do it: a READY task is
completed with data valid for its form (the form's defaults and type-appropriate values, or what the
case table supplies), a message the case names is sent with `Runtime.send_message`, a due timer is
fired by moving the clock past it and running the worker (`worker.run_once`). Between acts the stored
state is restored and dumped again: it must come back identically.

`python -m tests.corpus_driver` prints the outcome of every case as a Markdown table (for
docs/corpus-results.md).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from SpiffWorkflow.bpmn.specs.defaults import EndEvent
from SpiffWorkflow.task import TaskState
from sqlalchemy import select

from engine import db as dbmod
from engine import identity, serialization, worker
from engine.clock import FixedClock
from engine.deploy import deploy
from engine.errors import ModelError
from engine.migrate import upgrade
from engine.models import Incident, ProcessInstance, Task, TaskCandidate, Timer
from engine.runtime import Runtime, completed_elements, task_form
from engine.workflow_tasks import tasks_in

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
DRIVER = "driver"  # the user who starts instances and works on tasks nobody else is named for
START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)

COMPLETED, FINDING, INCIDENT = "COMPLETED", "FINDING", "INCIDENT"


@dataclass(frozen=True)
class Message:
    name: str
    payload: dict = field(default_factory=dict)
    after: int = 0  # send once this many tasks have been completed and the instance waits for it


@dataclass(frozen=True)
class Case:
    """One executable process of a corpus file, how to drive it, and what must come of it."""

    model: str  # path below the corpus folder
    process: str  # the process id to start
    expect: str  # COMPLETED, FINDING or INCIDENT
    end: str | None = None  # COMPLETED: the end event that must have run
    through: tuple[str, ...] = ()  # COMPLETED: activities that must have run on the way
    match: str | None = None  # FINDING/INCIDENT: a regex the finding or incident message must match
    element: str | None = None  # FINDING/INCIDENT: the element it names
    with_files: tuple[str, ...] = ()  # further files of the folder the model needs (called processes, DMN, forms)
    data: dict = field(default_factory=dict)  # start data
    answers: dict = field(default_factory=dict)  # element id -> data, or a list of data, one per visit
    messages: tuple[Message, ...] = ()
    timers_first: bool = False  # fire due timers before completing open tasks
    max_steps: int = 40

    @property
    def id(self) -> str:
        return f"{Path(self.model).name}::{self.process}"

    @property
    def files(self) -> tuple[str, ...]:
        folder = Path(self.model).parent
        return (self.model, *(str(folder / name) for name in self.with_files))


@dataclass
class Run:
    outcome: str  # COMPLETED, FINDING, INCIDENT, STUCK, STEP-LIMIT, REFUSED
    detail: str = ""
    findings: list = field(default_factory=list)
    incidents: list[tuple[str | None, str]] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)  # BPMN ids that ran, in order
    end_events: list[str] = field(default_factory=list)
    acts: list[str] = field(default_factory=list)  # what the driver did, in order
    reloads: int = 0  # restores of the stored state that dumped identically

    def summary(self) -> str:
        if self.outcome == COMPLETED:
            return f"COMPLETED at {', '.join(self.end_events)} ({len(self.acts)} acts)"
        if self.outcome == FINDING:
            return "FINDING: " + "; ".join(f"{f.element_id}: {f.message}" for f in self.findings
                                           if f.severity == "error")
        if self.outcome == INCIDENT:
            return "INCIDENT: " + "; ".join(f"{e}: {m}" for e, m in self.incidents)
        return f"{self.outcome}: {self.detail}"


# --- databases ---------------------------------------------------------------------------------------
def migrated_sqlite(path: Path) -> Path:
    """An empty, migrated SQLite database file (use it as a template: copying is cheap)."""
    engine = dbmod.make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


class Database:
    def __init__(self, url: str):
        self.url = url
        self.engine = dbmod.make_engine(url)
        self.factory = dbmod.make_session_factory(self.engine)
        self.clock = FixedClock(START)

    def transaction(self):
        return dbmod.transaction(self.factory)

    def runtime(self, session) -> Runtime:
        return Runtime(session, clock=self.clock)

    def dispose(self) -> None:
        self.engine.dispose()


def sqlite_copy(template: Path, directory: Path, name: str) -> Database:
    path = directory / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".sqlite3")
    shutil.copy(template, path)
    return Database(f"sqlite:///{path}")


# --- form data -----------------------------------------------------------------------------------------
def value_for(form_field) -> Any:
    """A value valid for a form field: its default, else the smallest value its constraints allow."""
    if form_field.default is not None:
        return form_field.default
    c = form_field.constraints
    options = form_field.options
    kind = form_field.type
    if kind in ("select", "radio"):
        return options[0].value if options else None
    if kind in ("checklist", "taglist"):
        return [options[0].value] if options else []
    if kind == "checkbox":
        return True
    if kind == "number":
        low = c.minimum if c.minimum is not None else 1
        return int(low) if c.decimal_digits == 0 or low == int(low) else float(low)
    if kind == "datetime":
        return {"date": "2026-12-01", "time": "09:00"}.get(form_field.subtype or "", "2026-12-01T09:00:00")
    if c.validation_type == "email":
        return "driver@example.org"
    text = "x" * max(c.min_length or 1, 1)
    return text[: c.max_length] if c.max_length else text


def form_data(form, context: dict, override: dict) -> dict:
    data: dict = {}
    if form is not None:
        scope = dict(context)
        for form_field in form.fields:
            if form_field.key in override or form_field.is_readonly(scope):
                continue
            # like a browser form pre-filled from the case: what the case has is sent back as it is
            data[form_field.key] = context[form_field.key] if form_field.key in context else value_for(form_field)
        hidden = form.hidden_keys({**data, **override}, context=context)
        data = {k: v for k, v in data.items() if k not in hidden}
    data.update(override)
    return data


# --- the driver ----------------------------------------------------------------------------------------
def read_sources(case: Case) -> dict[str, bytes]:
    return {Path(name).name: (CORPUS / name).read_bytes() for name in case.files}


def dump_matches(session, rt: Runtime, instance: ProcessInstance) -> bool:
    workflow = rt.load_workflow(instance)
    assert_tasks_in_agrees(workflow)
    dumped = serialization.dump_state(workflow)
    return dumped == reference_dump(workflow) and json.loads(dumped) == json.loads(instance.state_json)


#: the states `tasks_in` is asked about, and then some
STATE_MASKS = (TaskState.READY, TaskState.WAITING, TaskState.STARTED, TaskState.FUTURE,
               TaskState.READY | TaskState.WAITING | TaskState.STARTED, TaskState.WAITING | TaskState.READY,
               TaskState.NOT_FINISHED_MASK, TaskState.ANY_MASK, TaskState.LIKELY | TaskState.COMPLETED)


def assert_tasks_in_agrees(workflow) -> None:
    """`engine.workflow_tasks.tasks_in` finds the tasks SpiffWorkflow's tree walk finds."""
    for state in STATE_MASKS:
        for manual in (None, True, False):
            walked = workflow.get_tasks(state=state, manual=manual)
            found = tasks_in(workflow, state, manual=manual)
            assert len(found) == len(set(found)) and set(found) == set(walked), \
                (TaskState.get_name(state), manual, sorted(t.task_spec.name for t in set(found) ^ set(walked)))


def reference_dump(workflow) -> str:
    """The state as SpiffWorkflow's own converter makes it, without the spec: what `dump_state` must write,
    key order included."""
    with serialization._EncoderMode():
        dct = serialization.SERIALIZER.to_dict(workflow)
    del dct["spec"], dct["subprocess_specs"]
    dct.update(fallwerk_state_version=serialization.STATE_VERSION,
               **{serialization.SERIALIZER.VERSION_KEY: serialization.SPIFF_VERSION})
    return serialization._dumps(dct)


def _actor(session, row: Task) -> str:
    """Make sure somebody may work on the task, and return who."""
    now = START
    if row.assignee:
        identity.add_user(session, row.assignee, now=now)
        return row.assignee
    candidates = session.scalars(select(TaskCandidate).where(TaskCandidate.task_id == row.id)).all()
    users = [c.value for c in candidates if c.kind == "user"]
    if users:
        identity.add_user(session, users[0], now=now)
        return users[0]
    driver = identity.add_user(session, DRIVER, now=now)
    for group in (c.value for c in candidates if c.kind == "group"):
        unit, _, role = group.partition(":")
        identity.add_unit(session, unit)
        identity.add_membership(session, driver, unit, role or "counsellor")
    return DRIVER


def _answer(case: Case, element_id: str, visits: dict[str, int]) -> dict:
    given = case.answers.get(element_id, {})
    if isinstance(given, list):
        index = visits.get(element_id, 0)
        given = given[min(index, len(given) - 1)] if given else {}
    visits[element_id] = visits.get(element_id, 0) + 1
    return dict(given)


def drive(case: Case, database: Database) -> Run:
    run = Run(outcome="STEP-LIMIT")
    sources = read_sources(case)
    with database.transaction() as s:
        identity.add_user(s, DRIVER, now=START)
    try:
        with database.transaction() as s:
            result = deploy(s, sources, user=DRIVER, now=database.clock.now(), note=case.id)
    except ModelError as exc:
        run.outcome, run.findings = FINDING, list(exc.findings)
        return run
    run.findings = list(result.findings)
    if case.process not in {d.key for d in result.created}:
        run.outcome, run.detail = "NOT-DEPLOYED", f"deployed {[d.key for d in result.created]}"
        return run
    with database.transaction() as s:
        instance_id = database.runtime(s).start(case.process, user=DRIVER, data=dict(case.data)).id
    run.acts.append("start")

    pending = list(case.messages)
    visits: dict[str, int] = {}
    tasks_done = 0
    for _ in range(case.max_steps):
        with database.transaction() as s:
            rt = database.runtime(s)
            instance = s.get(ProcessInstance, instance_id)
            if not dump_matches(s, rt, instance):
                raise AssertionError(f"{case.id}: the stored state does not restore identically")
            run.reloads += 1
            status, has_incident = instance.status, instance.has_incident
            open_rows = s.scalars(select(Task).where(Task.instance_id == instance_id, Task.state == "open")
                                  .order_by(Task.created_at, Task.element_id)).all()
            timers = s.scalars(select(Timer).where(Timer.instance_id == instance_id, Timer.state == "waiting")
                               .order_by(Timer.due_at)).all()
            next_due = timers[0].due_at if timers else None
            waiting_for = _waiting_messages(rt.load_workflow(instance))
            if status == "completed" or has_incident:
                _finish(run, s, rt, instance)
                return run
        message = next((m for m in pending if m.after <= tasks_done and m.name in waiting_for), None)
        if message is not None:
            pending.remove(message)
            with database.transaction() as s:
                database.runtime(s).send_message(instance_id, message.name, user=DRIVER, payload=message.payload)
            run.acts.append(f"message {message.name}")
        elif next_due is not None and (case.timers_first or not open_rows):
            _fire(database, next_due)
            run.acts.append(f"timer {timers[0].element_id}")
        elif open_rows:
            row = open_rows[0]
            with database.transaction() as s:
                rt = database.runtime(s)
                row = s.get(Task, row.id)
                user = _actor(s, row)
                instance = s.get(ProcessInstance, instance_id)
                workflow = rt.load_workflow(instance)
                spiff_task = next(t for t in workflow.get_tasks(state=TaskState.READY) if str(t.id) == row.id)
                form = task_form(spiff_task.task_spec, rt.specs.get(instance.definition).forms)
                data = form_data(form, spiff_task.data, _answer(case, row.element_id, visits))
            with database.transaction() as s:
                database.runtime(s).complete(row.id, user=user, data=data)
            tasks_done += 1
            run.acts.append(f"complete {row.element_id}")
        else:
            run.outcome = "STUCK"
            run.detail = f"waiting at {instance.active_elements or '-'}; messages it waits for: {sorted(waiting_for)}"
            return run
    with database.transaction() as s:
        instance = s.get(ProcessInstance, instance_id)
        run.detail = f"{case.max_steps} acts; waiting at {instance.active_elements}"
        run.completed = completed_elements(database.runtime(s).load_workflow(instance))
    return run


def _fire(database: Database, due: datetime) -> None:
    if database.clock.now() <= due:
        database.clock.at = due + timedelta(seconds=1)
    worker.run_once(database.factory, database.clock)


def _waiting_messages(workflow) -> set[str]:
    from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
    from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition

    names = set()
    for task in workflow.get_tasks(state=TaskState.WAITING | TaskState.READY):
        definition = getattr(task.task_spec, "event_definition", None)
        inner = definition.event_definitions if isinstance(definition, MultipleEventDefinition) else [definition]
        names |= {d.name for d in inner if isinstance(d, MessageEventDefinition)}
    return names


def _finish(run: Run, session, rt: Runtime, instance: ProcessInstance) -> None:
    workflow = rt.load_workflow(instance)
    assert_tasks_in_agrees(workflow)
    run.completed = completed_elements(workflow)
    ends = [t for t in workflow.get_tasks(state=TaskState.COMPLETED) if isinstance(t.task_spec, EndEvent)]
    run.end_events = list(dict.fromkeys(t.task_spec.bpmn_id for t in
                                        sorted(ends, key=lambda t: t.last_state_change) if t.task_spec.bpmn_id))
    if instance.has_incident:
        run.outcome = INCIDENT
        run.incidents = [(i.element_id, i.message) for i in session.scalars(
            select(Incident).where(Incident.instance_id == instance.id).order_by(Incident.id))]
    else:
        run.outcome = COMPLETED


def drive_in_temp_sqlite(case: Case, template: Path, directory: Path) -> Run:
    database = sqlite_copy(template, directory, case.id)
    try:
        return drive(case, database)
    finally:
        database.dispose()


def main(argv: list[str]) -> int:
    from tests.test_corpus_run import CASES

    with tempfile.TemporaryDirectory() as tmp:
        template = migrated_sqlite(Path(tmp) / "template.sqlite3")
        for case in CASES:
            if argv and not any(a in case.id for a in argv):
                continue
            try:
                run = drive_in_temp_sqlite(case, template, Path(tmp))
                text = run.summary()
            except Exception as exc:  # noqa: BLE001 - a report, not a test
                text = f"DRIVER ERROR {type(exc).__name__}: {exc}"
                run = None
            print(f"{case.id:70} {text}")
            if run is not None and argv:
                print("   acts:", run.acts)
                print("   completed:", run.completed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
