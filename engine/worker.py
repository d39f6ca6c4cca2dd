"""The timer worker: fires due timers and runs their instances on.

A pass (`run_once`) repeats, up to `batch` times: in a transaction of its own, claim the instance with
the most overdue timer (`claim_due_instance`: the timers table's index, and on PostgreSQL
`FOR UPDATE SKIP LOCKED` on the instance row, so several workers share the work without waiting for
each other or taking the same instance, and an instance a person is changing right now is left for
later), fire its due timers, run it on, commit. Every change to an instance's timers happens under the
instance lock (the runtime mirrors timers on every save), so a timer fires at most once; the
runtime's optimistic `lock_version` check is a second guard. A worker killed at any moment loses
nothing: the uncommitted firing rolls back and the timer is still due for the next pass of any
worker.

A firing that fails (the instance records an incident and keeps its last good state) is retried with
back-off, 1, 5 and 25 minutes after the first, second and third failure; after the fourth failed
attempt the timer is left `failed` with the instance's incident until someone runs `fallwerk retry`.

`run_forever` polls until SIGTERM or SIGINT, finishes the instance in hand and returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, event, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from . import mirror
from .clock import Clock
from .db import transaction
from .mirror import retry_delay
from .models import Incident, ProcessInstance, Timer
from .runtime import Runtime

log = logging.getLogger(__name__)

#: the first firing and three retries (after 1, 5 and 25 minutes); then the timer is left failed
MAX_ATTEMPTS = 4
#: timers of one instance fired in one transaction when a jump in time makes cycles fall due again
MAX_ROUNDS = 100
WORKER = "system"
#: how many of the most overdue timers a claim picks its instance from (more than workers run at once)
CLAIM_WINDOW = 50


@dataclass
class Firing:
    """What happened to one due timer."""

    instance: int
    element: str
    due: datetime
    outcome: str  # fired, withdrawn, retry, failed, not-fired
    lateness: float | None = None  # seconds between due and fired
    attempt: int = 0
    next_attempt_at: datetime | None = None


@dataclass
class WorkerStats:
    fired: int = 0
    failed: int = 0  # instances whose firing failed in this pass
    instances: list[int] = field(default_factory=list)
    firings: list[Firing] = field(default_factory=list)


def _due(now: datetime):
    return (Timer.state == "waiting", Timer.due_at < now,
            or_(Timer.next_attempt_at.is_(None), Timer.next_attempt_at <= now))


def claim_due_instance(session: Session, clock: Clock, exclude: list[int] | tuple = ()) -> ProcessInstance | None:
    """Lock an instance among those with the most overdue timers that no other transaction holds
    (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so workers never wait for each other nor take the same one).

    The candidates are the instances of the `CLAIM_WINDOW` most overdue timers, read from the timers
    index alone; only then is one instance row locked (sorting due rows joined with their instances'
    state would cost a sort of the whole backlog for every claim)."""
    candidates = select(Timer.instance_id).where(*_due(clock.now())).order_by(Timer.due_at).limit(CLAIM_WINDOW)
    if exclude:
        candidates = candidates.where(Timer.instance_id.not_in(list(exclude)))
    query = (
        select(ProcessInstance).where(ProcessInstance.id.in_(candidates.scalar_subquery()))
        .limit(1)
        .with_for_update(of=ProcessInstance, skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return session.scalar(query)


def fire_instance(session: Session, instance_id: int, clock: Clock) -> list[Firing] | None:
    """Fire the due timers of one instance and run it on. Returns what happened to each due timer,
    or None when the instance is locked by another transaction. The caller commits."""
    instance = session.scalar(
        select(ProcessInstance).where(ProcessInstance.id == instance_id)
        .with_for_update(of=ProcessInstance, skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return None if instance is None else _fire_locked(session, instance, clock)


def _fire_locked(session: Session, instance: ProcessInstance, clock: Clock) -> list[Firing]:
    now = clock.now()
    instance_id = instance.id
    if instance.status != "running":  # stale rows of an ended instance: nothing can fire any more
        session.execute(delete(Timer).where(Timer.instance_id == instance_id, Timer.state == "waiting"))
        log.warning("dropped timers of an ended instance", extra={"instance": instance_id, "status": instance.status})
        return []
    firings: list[Firing] = []
    due = list(session.scalars(select(Timer).where(Timer.instance_id == instance_id, *_due(now))
                               .order_by(Timer.due_at, Timer.id)))
    for _ in range(MAX_ROUNDS):
        if not due:
            break
        with _added(session) as added:  # what the run adds, without asking the database again
            Runtime(session, clock=clock).fire_timers(instance_id, actor=WORKER)
        incident = max((o for o in added if isinstance(o, Incident)), key=lambda i: i.id, default=None)
        if incident is None and any(t.state == "waiting" and t in session for t in due):
            _reconcile(session, instance, clock)  # due but not fired: is the mirror stale?
        new_timers = sorted((o for o in added if isinstance(o, Timer) and o in session), key=lambda t: t.due_at)
        for timer in due:
            firings.append(_outcome(session, timer, now, failed=incident is not None))
        # a cycle that fell due more than once fired that often in one run: the mirror added rows for it
        firings += [_outcome(session, t, now, failed=False) for t in new_timers if t.state == "fired"]
        if incident is not None:
            _supersede(session, incident, now)
            break
        if not any(f.outcome == "fired" for f in firings):
            break  # nothing moved: do not spin
        due = [t for t in new_timers if t.state == "waiting" and t.due_at < now]  # a cycle's next instant
    return firings


def _reconcile(session: Session, instance: ProcessInstance, clock: Clock) -> None:
    """Mirror the instance's timers again from its state, so that a row its state knows nothing of (left
    by a save that skipped the timer mirror, or written by hand) is withdrawn instead of retried."""
    workflow = Runtime(session, clock=clock).load_workflow(instance)
    mirror.sync_timers(session, instance, workflow, now=clock.now())
    session.flush()


@contextlib.contextmanager
def _added(session: Session):
    added: list = []

    def collect(_session, obj) -> None:
        added.append(obj)

    event.listen(session, "after_attach", collect)
    try:
        yield added
    finally:
        event.remove(session, "after_attach", collect)


def _outcome(session: Session, timer: Timer, now: datetime, *, failed: bool) -> Firing:
    firing = Firing(instance=timer.instance_id, element=timer.element_id, due=timer.due_at, outcome="fired",
                    attempt=timer.attempts + 1)
    if timer.state == "fired":
        firing.lateness = round((timer.fired_at - timer.due_at).total_seconds(), 3)
        return firing
    if timer.state != "waiting" or timer not in session:
        firing.outcome = "withdrawn"
        return firing
    timer.attempts += 1
    if failed and timer.attempts >= MAX_ATTEMPTS:
        timer.state, timer.next_attempt_at = "failed", None
        firing.outcome = "failed"
    else:
        # failed: back off; due but not fired without an error (should not happen): look again later
        timer.next_attempt_at = now + retry_delay(timer.attempts)
        firing.outcome, firing.next_attempt_at = ("retry" if failed else "not-fired"), timer.next_attempt_at
    return firing


def _supersede(session: Session, incident: Incident, now: datetime) -> None:
    """A timer retried and failed again at the same element: keep one open incident, the newest."""
    session.execute(
        update(Incident)
        .where(Incident.instance_id == incident.instance_id, Incident.id < incident.id,
               Incident.resolved_at.is_(None),
               Incident.element_id.is_(None) if incident.element_id is None
               else Incident.element_id == incident.element_id)
        .values(resolved_at=now, resolved_by=f"{WORKER}:attempt {incident.attempt}")
    )


def run_once(factory: sessionmaker[Session], clock: Clock | None = None, *, batch: int = 100,
             stop: threading.Event | None = None) -> WorkerStats:
    """One pass: at most `batch` instances, the most overdue first, each claimed, fired and committed in
    a transaction of its own; stops early when `stop` is set or nothing else is due."""
    clock = clock or Clock()
    stats = WorkerStats()
    attempted: list[int] = []  # never twice in one pass, whatever happens to an instance
    while len(attempted) < batch and not (stop is not None and stop.is_set()):
        instance_id = None
        try:
            with transaction(factory) as session:
                instance = claim_due_instance(session, clock, attempted)
                if instance is None:
                    break
                instance_id = instance.id
                attempted.append(instance_id)
                firings = _fire_locked(session, instance, clock)
        except Exception as exc:  # not a failure of model code (that is an incident): e.g. unreadable state
            if instance_id is None:
                raise  # no instance claimed: the database itself failed (run_forever waits and tries again)
            log.exception("worker could not fire timers", extra={"instance": instance_id})
            firings = _record_crash(factory, instance_id, clock, exc)
        for firing in firings:
            _log(firing)
        stats.firings.extend(firings)
        stats.fired += sum(1 for f in firings if f.outcome == "fired")
        if any(f.outcome in ("retry", "failed") for f in firings):
            stats.failed += 1
        if firings:
            stats.instances.append(instance_id)
    return stats


def _record_crash(factory: sessionmaker[Session], instance_id: int, clock: Clock, exc: Exception) -> list[Firing]:
    """Back off from an instance that could not even be run, and record an incident, so that it does not
    come back in every pass (ahead of everything else, being the most overdue)."""
    now = clock.now()
    try:
        with transaction(factory) as session:
            runtime = Runtime(session, clock=clock)
            instance = runtime._lock(instance_id)
            due = session.scalars(select(Timer).where(Timer.instance_id == instance_id, *_due(now))).all()
            if due:
                incident = runtime._incident(instance, exc, actor=WORKER, action="timer")
                session.flush()
                _supersede(session, incident, now)
            return [_outcome(session, timer, now, failed=True) for timer in due]
    except Exception:
        log.exception("worker could not record the failure", extra={"instance": instance_id})
        return [Firing(instance=instance_id, element="?", due=now, outcome="retry")]


def _log(firing: Firing) -> None:
    extra = {"instance": firing.instance, "element": firing.element, "due": firing.due.isoformat(),
             "outcome": firing.outcome, "lateness": firing.lateness, "attempt": firing.attempt}
    if firing.next_attempt_at is not None:
        extra["next_attempt"] = firing.next_attempt_at.isoformat()
    level = logging.INFO if firing.outcome in ("fired", "withdrawn") else logging.WARNING
    log.log(level, "timer %s", firing.outcome, extra=extra)


def run_forever(factory: sessionmaker[Session], clock: Clock | None = None, *, interval: float = 1.0,
                batch: int = 100, stop: threading.Event | None = None) -> None:
    """Poll until SIGTERM or SIGINT (or `stop`); finishes the instance in hand before it returns.

    A second signal while the worker finishes stops it at once (the instance in hand rolls back).
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        def _signal(signum, _frame):
            if stop.is_set():
                raise SystemExit(128 + signum)
            log.info("worker stopping", extra={"signal": signal.Signals(signum).name})
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _signal)
    log.info("worker started", extra={"interval": interval, "batch": batch})
    failures = 0
    while not stop.is_set():
        try:
            stats = run_once(factory, clock, batch=batch, stop=stop)
        except Exception:  # the database is away: wait and try again, longer each time
            failures += 1
            log.exception("worker pass failed", extra={"failures": failures})
            stop.wait(min(interval * 2 ** failures, 60.0))
            continue
        failures = 0
        if stats.fired or stats.failed:
            log.info("worker pass", extra={"fired": stats.fired, "failed": stats.failed,
                                           "instances": len(stats.instances)})
        if not stats.instances:
            stop.wait(interval)
    log.info("worker stopped")


# --- logging ------------------------------------------------------------------------------------------
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class KeyValueFormatter(logging.Formatter):
    """`2026-12-03T09:00:01Z INFO engine.worker timer fired instance=12 element=late due=… lateness=0.4`"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z"
        line = f"{stamp} {record.levelname} {record.name} {record.getMessage()}"
        for key, value in _fields(record).items():
            text = value.isoformat() if isinstance(value, datetime) else str(value)
            line += f" {key}={json.dumps(text) if (' ' in text or not text) else text}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                   + f".{int(record.msecs):03d}Z",
                   "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                   **_fields(record)}
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure_logging(*, as_json: bool = False, level: str | int | None = None) -> None:
    """Structured log lines on stderr for the worker: key=value text, or JSON lines."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter() if as_json else KeyValueFormatter())
    logging.getLogger("engine").setLevel(level or logging.INFO)
