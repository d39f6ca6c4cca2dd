"""Inline BPMN with every kind of waiting timer, and helpers for timer, worker and incident tests.

Each model leads from a timer to a user task, so a firing is visible as a new open task (and,
in the audit trail, as a "timer" run of the instance).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

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
