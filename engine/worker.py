"""The timer worker: fires due timers and runs their instances on.

Several workers may poll one PostgreSQL database: each claims due timers with
`FOR UPDATE SKIP LOCKED`, so no timer fires twice, and each instance is then changed under its own
row lock in its own transaction. A worker killed mid-batch loses nothing: an uncommitted firing
rolls back and the timer is still due for the next poll.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from .clock import Clock
from .db import transaction
from .mirror import retry_delay
from .models import ProcessInstance, Timer
from .runtime import Runtime

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


@dataclass
class WorkerStats:
    fired: int = 0
    failed: int = 0
    instances: list[int] = field(default_factory=list)


def due_instances(session: Session, clock: Clock, limit: int) -> list[int]:
    now = clock.now()
    query = (
        select(Timer.instance_id)
        .where(Timer.state == "waiting", Timer.due_at < now,
               or_(Timer.next_attempt_at.is_(None), Timer.next_attempt_at <= now))
        .order_by(Timer.due_at)
        .limit(limit)
    )
    return list(dict.fromkeys(session.scalars(query)))


def fire_instance(session: Session, instance_id: int, clock: Clock) -> tuple[int, bool]:
    """Fire the due timers of one instance. Returns (timers fired, failed?). Caller commits."""
    now = clock.now()
    due = session.scalars(
        select(Timer)
        .where(Timer.instance_id == instance_id, Timer.state == "waiting", Timer.due_at < now,
               or_(Timer.next_attempt_at.is_(None), Timer.next_attempt_at <= now))
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        return 0, False  # another worker has them
    before_incident = session.get(ProcessInstance, instance_id).has_incident
    instance = Runtime(session, clock=clock).fire_timers(instance_id)
    failed = instance.has_incident and not before_incident
    fired = 0
    for timer in due:
        if timer.state == "fired":
            fired += 1
        elif failed:
            timer.attempts += 1
            if timer.attempts >= MAX_ATTEMPTS:
                timer.state = "failed"
            else:
                timer.next_attempt_at = now + retry_delay(timer.attempts)
        log.info("timer", extra={"instance": instance_id, "element": timer.element_id,
                                 "due": timer.due_at.isoformat(), "outcome": timer.state})
    return fired, failed


def run_once(factory: sessionmaker[Session], clock: Clock | None = None, *, batch: int = 100) -> WorkerStats:
    clock = clock or Clock()
    stats = WorkerStats()
    with transaction(factory) as session:
        candidates = due_instances(session, clock, batch)
    for instance_id in candidates:
        try:
            with transaction(factory) as session:
                fired, failed = fire_instance(session, instance_id, clock)
        except Exception:
            log.exception("worker could not fire timers", extra={"instance": instance_id})
            stats.failed += 1
            continue
        stats.fired += fired
        stats.failed += int(failed)
        if fired or failed:
            stats.instances.append(instance_id)
    return stats


def run_forever(factory: sessionmaker[Session], clock: Clock | None = None, *, interval: float = 1.0,
                batch: int = 100, stop: threading.Event | None = None) -> None:
    """Poll until SIGTERM or SIGINT; finishes the instance in hand before it stops."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    log.info("worker started", extra={"interval": interval, "batch": batch})
    while not stop.is_set():
        stats = run_once(factory, clock, batch=batch)
        if stats.fired or stats.failed:
            log.info("worker pass", extra={"fired": stats.fired, "failed": stats.failed})
        if not stats.instances:
            stop.wait(interval)
    log.info("worker stopped")
