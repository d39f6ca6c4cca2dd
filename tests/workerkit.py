"""Inline BPMN with every kind of waiting timer, and helpers for timer, worker and incident tests.

Each model leads from a timer to a user task, so a firing is visible as a new open task (and,
in the audit trail, as a "timer" run of the instance).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from engine.deploy import deploy
from engine.models import AuditEvent, ProcessInstance, Task, Timer
from tests.modelkit import definitions, flow, user_task

XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def timer_definition(value: str, kind: str = "timeDuration", tid: str = "td") -> str:
    return (f'<bpmn:timerEventDefinition id="{tid}"><bpmn:{kind} xsi:type="bpmn:tFormalExpression" {XSI}>'
            f"{value}</bpmn:{kind}></bpmn:timerEventDefinition>")


def catch_timer(pid: str = "wait", value: str = "P3D", kind: str = "timeDuration") -> bytes:
    """Start, an intermediate timer catch event, a user task `after`, end."""
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        f'<bpmn:intermediateCatchEvent id="pause">{timer_definition(value, kind)}</bpmn:intermediateCatchEvent>',
        user_task("after", "Nachfassen", 'camunda:candidateGroups="rz-west"'),
        '<bpmn:endEvent id="end" />',
        flow("f1", "start", "pause"),
        flow("f2", "pause", "after"),
        flow("f3", "after", "end"),
    ])
    return definitions(pid, body)


def cycle_reminder(pid: str = "cycle", cycle: str = "R3/PT1H") -> bytes:
    """A user task `work` with a non-interrupting boundary cycle timer: each firing adds a `remind` task."""
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        user_task("work", "Bearbeiten", 'camunda:candidateGroups="rz-west"'),
        f'<bpmn:boundaryEvent id="tick" attachedToRef="work" cancelActivity="false">'
        f'{timer_definition(cycle, "timeCycle")}</bpmn:boundaryEvent>',
        user_task("remind", "Erinnerung", 'camunda:candidateGroups="rz-west"'),
        '<bpmn:endEvent id="end" />',
        '<bpmn:endEvent id="end_remind" />',
        flow("f1", "start", "work"),
        flow("f2", "work", "end"),
        flow("f3", "tick", "remind"),
        flow("f4", "remind", "end_remind"),
    ])
    return definitions(pid, body)


def gateway(pid: str = "gate", timers: tuple[tuple[str, str], ...] = (("late", "P3D"),),
            message: bool = True) -> bytes:
    """An event-based gateway: a message `reply` (to `answered`) and timer branches (each to `after_<id>`)."""
    extra = '<bpmn:message id="Msg_reply" name="reply" />\n' if message else ""
    parts = ['<bpmn:startEvent id="start" />', '<bpmn:eventBasedGateway id="gw" />', flow("f0", "start", "gw")]
    if message:
        parts += [
            '<bpmn:intermediateCatchEvent id="reply"><bpmn:messageEventDefinition id="md" messageRef="Msg_reply" />'
            "</bpmn:intermediateCatchEvent>",
            user_task("answered", "Antwort lesen", 'camunda:candidateGroups="rz-west"'),
            '<bpmn:endEvent id="end_reply" />',
            flow("f_reply", "gw", "reply"), flow("f_answered", "reply", "answered"),
            flow("f_reply_end", "answered", "end_reply"),
        ]
    for tid, value in timers:
        parts += [
            f'<bpmn:intermediateCatchEvent id="{tid}">{timer_definition(value, tid=f"td_{tid}")}'
            "</bpmn:intermediateCatchEvent>",
            user_task(f"after_{tid}", f"Nach {tid}", 'camunda:candidateGroups="rz-west"'),
            f'<bpmn:endEvent id="end_{tid}" />',
            flow(f"f_{tid}", "gw", tid), flow(f"f_{tid}_task", tid, f"after_{tid}"),
            flow(f"f_{tid}_end", f"after_{tid}", f"end_{tid}"),
        ]
    return definitions(pid, "\n".join(parts), extra)


def in_subprocess(pid: str = "nested", inner: str = "P1D", outer: str = "P5D") -> bytes:
    """An embedded subprocess waiting on a timer, with an interrupting boundary timer on the subprocess."""
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        '<bpmn:subProcess id="sub">',
        '<bpmn:startEvent id="sub_start" />',
        f'<bpmn:intermediateCatchEvent id="sub_pause">{timer_definition(inner, tid="td_inner")}'
        "</bpmn:intermediateCatchEvent>",
        user_task("sub_task", "Im Teilprozess", 'camunda:candidateGroups="rz-west"'),
        '<bpmn:endEvent id="sub_end" />',
        flow("sf1", "sub_start", "sub_pause"), flow("sf2", "sub_pause", "sub_task"), flow("sf3", "sub_task", "sub_end"),
        "</bpmn:subProcess>",
        f'<bpmn:boundaryEvent id="sub_deadline" attachedToRef="sub" cancelActivity="true">'
        f'{timer_definition(outer, tid="td_outer")}</bpmn:boundaryEvent>',
        user_task("escalate", "Eskalieren", 'camunda:candidateGroups="rz-west:lead"'),
        '<bpmn:endEvent id="end" />',
        '<bpmn:endEvent id="end_late" />',
        flow("f1", "start", "sub"), flow("f2", "sub", "end"),
        flow("f3", "sub_deadline", "escalate"), flow("f4", "escalate", "end_late"),
    ])
    return definitions(pid, body)


def with_call_activity(pid: str = "caller", child: str = "callee", value: str = "P2D") -> bytes:
    """A process calling `child`, whose only work is to wait for a timer and then a user task."""
    caller = "\n".join([
        '<bpmn:startEvent id="start" />',
        f'<bpmn:callActivity id="call" name="Aufruf" calledElement="{child}" />',
        user_task("done", "Abschluss", 'camunda:candidateGroups="rz-west"'),
        '<bpmn:endEvent id="end" />',
        flow("f1", "start", "call"), flow("f2", "call", "done"), flow("f3", "done", "end"),
    ])
    callee = "\n".join([
        '<bpmn:startEvent id="c_start" />',
        f'<bpmn:intermediateCatchEvent id="c_pause">{timer_definition(value, tid="td_child")}'
        "</bpmn:intermediateCatchEvent>",
        user_task("c_task", "Im aufgerufenen Prozess", 'camunda:candidateGroups="rz-west"'),
        '<bpmn:endEvent id="c_end" />',
        flow("cf1", "c_start", "c_pause"), flow("cf2", "c_pause", "c_task"), flow("cf3", "c_task", "c_end"),
    ])
    text = definitions(pid, caller).decode()
    child_process = (f'<bpmn:process id="{child}" name="{child}" isExecutable="true">\n{callee}\n'
                     "</bpmn:process>\n</bpmn:definitions>")
    return text.replace("</bpmn:definitions>", child_process).encode()


def event_subprocess_timer(pid: str = "watch", value: str = "P4D", interrupting: bool = False) -> bytes:
    """A user task `work`, and an event subprocess started by a timer that adds a `nudge` task."""
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        user_task("work", "Bearbeiten", 'camunda:candidateGroups="rz-west"'),
        '<bpmn:endEvent id="end" />',
        flow("f1", "start", "work"), flow("f2", "work", "end"),
        '<bpmn:subProcess id="watcher" triggeredByEvent="true">',
        f'<bpmn:startEvent id="ev_start" isInterrupting="{"true" if interrupting else "false"}">'
        f'{timer_definition(value, tid="td_ev")}</bpmn:startEvent>',
        user_task("nudge", "Nachhaken", 'camunda:candidateGroups="rz-west:lead"'),
        '<bpmn:endEvent id="ev_end" />',
        flow("ef1", "ev_start", "nudge"), flow("ef2", "nudge", "ev_end"),
        "</bpmn:subProcess>",
    ])
    return definitions(pid, body)


def failing_after_timer(pid: str = "fragile", value: str = "PT1H", script: str = "total = price * count") -> bytes:
    """A timer, then a script task that fails while `count` is missing, then a user task `after`."""
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        f'<bpmn:intermediateCatchEvent id="pause">{timer_definition(value)}</bpmn:intermediateCatchEvent>',
        f'<bpmn:scriptTask id="script" name="Rechnen" scriptFormat="python"><bpmn:script><![CDATA[{script}]]>'
        "</bpmn:script></bpmn:scriptTask>",
        user_task("after", "Weiter", 'camunda:candidateGroups="rz-west"'),
        '<bpmn:endEvent id="end" />',
        flow("f1", "start", "pause"), flow("f2", "pause", "script"), flow("f3", "script", "after"),
        flow("f4", "after", "end"),
    ])
    return definitions(pid, body)


# --- database helpers ----------------------------------------------------------------------------------
def deploy_models(db, **sources) -> None:
    with db.transaction() as s:
        deploy(s, {f"{k}.bpmn": v for k, v in sources.items()}, user="carla", now=db.clock.now())


def start(db, key: str, user: str = "alice", **data) -> int:
    with db.transaction() as s:
        return db.runtime(s).start(key, user=user, data=data).id


def timers(db, instance_id: int | None = None, state: str | None = "waiting") -> list[Timer]:
    with db.transaction() as s:
        query = select(Timer).order_by(Timer.due_at, Timer.element_id, Timer.id)
        if instance_id is not None:
            query = query.where(Timer.instance_id == instance_id)
        if state is not None:
            query = query.where(Timer.state == state)
        return list(s.scalars(query))


def waiting(db, instance_id: int) -> list[tuple[str, datetime]]:
    """(element, due) of the waiting timers of an instance, by due time."""
    return [(t.element_id, t.due_at) for t in timers(db, instance_id)]


def open_tasks(db, instance_id: int) -> list[Task]:
    with db.transaction() as s:
        return list(s.scalars(select(Task).where(Task.instance_id == instance_id, Task.state == "open")
                              .order_by(Task.element_id, Task.created_at)))


def open_elements(db, instance_id: int) -> list[str]:
    return [t.element_id for t in open_tasks(db, instance_id)]


def instance(db, instance_id: int) -> ProcessInstance:
    with db.transaction() as s:
        return s.get(ProcessInstance, instance_id)


def audit_actions(db, instance_id: int, action: str | None = None) -> list[AuditEvent]:
    with db.transaction() as s:
        query = select(AuditEvent).where(AuditEvent.instance_id == instance_id).order_by(AuditEvent.id)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        return list(s.scalars(query))


def slow_after_timer(pid: str = "slow", value: str = "PT1H", loops: int = 0) -> bytes:
    """A timer, then a script task that counts to `loops` (to make a firing take a while), then `after`."""
    script = f"n = 0\nfor i in range({loops}):\n    n = n + 1"
    return failing_after_timer(pid, value=value, script=script)


# --- worker processes ----------------------------------------------------------------------------------
FALLWERK = Path(sys.executable).with_name("fallwerk")


def seed(db, key: str, n: int, *, per_transaction: int = 50, user: str = "alice", **data) -> list[int]:
    """Start `n` instances, `per_transaction` in each transaction."""
    ids: list[int] = []
    while len(ids) < n:
        with db.transaction() as s:
            runtime = db.runtime(s)
            ids += [runtime.start(key, user=user, data=data).id for _ in range(min(per_transaction, n - len(ids)))]
    return ids


class WorkerProcess:
    """`fallwerk worker` in a process of its own, against the database at `url`, logging to a file."""

    def __init__(self, url: str, log: Path, *args: str):
        self.log_path = log
        env = {**os.environ, "FALLWERK_DATABASE_URL": url, "FALLWERK_LOG_LEVEL": "INFO"}
        with open(log, "wb") as out:
            self.process = subprocess.Popen([str(FALLWERK), "worker", *args], env=env, stdout=out,
                                            stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def fired(self) -> list[int]:
        """Instances this worker logged a firing for."""
        return [int(m) for m in re.findall(r"timer fired instance=(\d+) ", self.log())]

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 10) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def fired_count(db, ids: list[int]) -> int:
    """Timers of `ids` fired so far (on SQLite read without taking the write lock a worker is busy with)."""
    if db.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(f"file:{db.engine.url.database}?mode=ro", uri=True)) as conn:
            marks = ",".join("?" * len(ids))
            return conn.execute(f"SELECT count(*) FROM timers WHERE state = 'fired' AND instance_id IN ({marks})",
                                ids).fetchone()[0]
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Timer).where(Timer.instance_id.in_(ids),
                                                                      Timer.state == "fired"))


def check_fired_at_most_once(db, ids: list[int], element: str = "after") -> tuple[set[int], set[int]]:
    """Every instance either fired its one timer exactly once (one fired row, one "timer" audit event,
    one `element` task) or not at all (one waiting row, no event, no task): nothing half-saved, nothing
    twice. Returns (fired, waiting) instance ids."""
    with db.transaction() as s:
        rows = s.execute(select(Timer.instance_id, Timer.state, func.count()).where(Timer.instance_id.in_(ids))
                         .group_by(Timer.instance_id, Timer.state)).all()
        events = dict(s.execute(select(AuditEvent.instance_id, func.count()).where(
            AuditEvent.instance_id.in_(ids), AuditEvent.action == "timer").group_by(AuditEvent.instance_id)).all())
        tasks = dict(s.execute(select(Task.instance_id, func.count()).where(
            Task.instance_id.in_(ids), Task.element_id == element).group_by(Task.instance_id)).all())
        active = dict(s.execute(select(ProcessInstance.id, ProcessInstance.active_elements)
                                  .where(ProcessInstance.id.in_(ids))).all())
    timers_by: dict[int, dict[str, int]] = {}
    for instance_id, state, count in rows:
        timers_by.setdefault(instance_id, {})[state] = count
    fired, pending = set(), set()
    for instance_id in ids:
        states = timers_by.get(instance_id)
        if states == {"fired": 1}:
            assert (events.get(instance_id), tasks.get(instance_id)) == (1, 1), instance_id
            assert element in active[instance_id].split(","), instance_id
            fired.add(instance_id)
        else:
            assert states == {"waiting": 1}, (instance_id, states)
            assert (events.get(instance_id), tasks.get(instance_id)) == (None, None), instance_id
            pending.add(instance_id)
    return fired, pending
