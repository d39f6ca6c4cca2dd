"""The timer worker: `--once --now`, structured logs, locking, and real worker processes.

The process tests start `fallwerk worker` processes against the test database, with timers due by
the real clock (the instances are started with the test clock two hours back and wait one hour):
several workers fire every timer exactly once, a worker killed with SIGKILL in the middle of a batch
loses nothing and a restart fires the rest exactly once, and SIGTERM lets a worker finish the
instance in hand and exit 0. "Exactly once" is checked from what each firing leaves in the same
transaction: one fired timer row, one "timer" audit event (append-only), one `after` task; an
instance not fired has none of these (workerkit.check_fired_at_most_once).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from engine import worker
from engine.cli import main
from engine.models import ProcessInstance, Timer
from tests import modelkit
from tests import workerkit as wk

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def test_worker_once_with_now_fires_what_is_due_three_days_ahead(org, monkeypatch):
    wk.deploy_models(org, wait=wk.catch_timer(value="P1D"), later=wk.catch_timer("later", value="P4D"),
                     deadline=modelkit.boundary_timer(duration="P2D"), cycle=wk.cycle_reminder(cycle="R3/PT1H"))
    soon, later, deadline, cycle = (wk.start(org, key) for key in ("wait", "later", "deadline", "cycle"))
    monkeypatch.setenv("FALLWERK_DATABASE_URL", org.url)
    three_days = (T0 + timedelta(days=3)).isoformat()
    result = CliRunner().invoke(main, ["worker", "--once", "--now", three_days, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["fired"] == 1 + 1 + 3 and out["failed"] == 0
    assert sorted(out["instances"]) == sorted([soon, deadline, cycle])
    assert {(t["instance"], t["element"], t["outcome"]) for t in out["timers"]} == {
        (soon, "pause", "fired"), (deadline, "timeout", "fired"), (cycle, "tick", "fired")}
    assert wk.open_elements(org, soon) == ["after"]
    assert wk.open_elements(org, deadline) == ["remind"]
    assert wk.open_elements(org, cycle) == ["remind"] * 3 + ["work"]
    assert wk.open_elements(org, later) == [] and wk.waiting(org, later) == [("pause", T0 + timedelta(days=4))]
    again = CliRunner().invoke(main, ["worker", "--once", "--now", three_days], catch_exceptions=False)
    assert again.stdout.strip() == "fired 0 timer(s), 0 failure(s)"


def test_each_firing_is_logged_with_structured_fields(org, caplog):
    wk.deploy_models(org, wait=wk.catch_timer(value="PT1H"))
    iid = wk.start(org, "wait")
    org.clock.at = T0 + timedelta(hours=1, seconds=30)
    with caplog.at_level(logging.INFO, logger="engine.worker"):
        worker.run_once(org.factory, org.clock)
    (record,) = [r for r in caplog.records if r.getMessage() == "timer fired"]
    assert (record.instance, record.element, record.outcome) == (iid, "pause", "fired")
    assert (record.due, record.lateness, record.attempt) == ((T0 + timedelta(hours=1)).isoformat(), 30.0, 1)
    line = worker.KeyValueFormatter().format(record)
    assert f"engine.worker timer fired instance={iid} element=pause due=2026-11-26T10:00:00+00:00 " \
           "outcome=fired lateness=30.0 attempt=1" in line
    assert json.loads(worker.JsonFormatter().format(record))["lateness"] == 30.0


def test_run_forever_fires_and_returns_when_stopped(org):
    wk.deploy_models(org, wait=wk.catch_timer(value="PT1H"))
    iid = wk.start(org, "wait")
    org.clock.at = T0 + timedelta(hours=2)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(org.factory, org.clock),
                              kwargs={"interval": 0.05, "stop": stop})
    thread.start()
    try:
        wk.wait_until(lambda: wk.open_elements(org, iid) == ["after"], timeout=10, what="the firing")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_an_instance_another_transaction_holds_is_skipped_not_fired_twice(org):
    if org.backend != "postgresql":
        pytest.skip("row locks with SKIP LOCKED are PostgreSQL's; SQLite lets one writer in at a time")
    wk.deploy_models(org, wait=wk.catch_timer(value="PT1H"))
    first_id, second_id = wk.start(org, "wait"), wk.start(org, "wait")
    org.clock.at = T0 + timedelta(hours=2)
    with org.transaction() as first:
        (firing,) = worker.fire_instance(first, first_id, org.clock)  # holds the lock, not committed yet
        assert firing.outcome == "fired"
        with org.transaction() as second:
            assert worker.fire_instance(second, first_id, org.clock) is None  # skipped, not waited for
            assert worker.claim_due_instance(second, org.clock).id == second_id  # the next one instead
    with org.transaction() as third:
        assert worker.fire_instance(third, first_id, org.clock) == []  # committed: nothing due any more
    assert wk.check_fired_at_most_once(org, [first_id, second_id]) == ({first_id}, {second_id})


def test_a_worker_pass_is_not_stuck_on_an_instance_it_cannot_load(org):
    wk.deploy_models(org, wait=wk.catch_timer(value="PT1H"))
    broken, fine = wk.start(org, "wait"), wk.start(org, "wait")
    with org.transaction() as s:
        s.get(ProcessInstance, broken).state_json = "{not json"
    stats = worker.run_once(org.factory, _at(org, hours=2))
    assert {(f.instance, f.outcome) for f in stats.firings} == {(broken, "retry"), (fine, "fired")}
    (row,) = wk.timers(org, broken)
    assert row.next_attempt_at == T0 + timedelta(hours=2, minutes=1)
    assert wk.instance(org, broken).has_incident
    assert worker.run_once(org.factory, _at(org, hours=2, seconds=30)).firings == []  # backing off


def test_a_stale_timer_row_is_withdrawn_not_retried_for_ever(org):
    wk.deploy_models(org, wait=wk.catch_timer(value="P3D"))
    iid = wk.start(org, "wait")
    with org.transaction() as s:  # a row the instance's state knows nothing of (say, left by an older version)
        s.add(Timer(instance_id=iid, task_id=str(uuid.uuid4()), element_id="gone", due_at=T0, state="waiting",
                    attempts=0))
    stats = worker.run_once(org.factory, _at(org, hours=1))
    assert [(f.element, f.outcome) for f in stats.firings] == [("gone", "withdrawn")]
    assert wk.waiting(org, iid) == [("pause", T0 + timedelta(days=3))]  # the real one is untouched


def _at(db, **delta):
    db.clock.at = T0 + timedelta(**delta)
    return db.clock


# --- real worker processes -------------------------------------------------------------------------------
def _due_by_the_real_clock(db) -> None:
    """Instances started now wait for a timer (PT1H) that fell due an hour ago by the real clock."""
    db.clock.at = datetime.now(UTC) - timedelta(hours=2)


@pytest.fixture
def workers(tmp_path):
    started: list[wk.WorkerProcess] = []

    def spawn(db, *args: str) -> wk.WorkerProcess:
        process = wk.WorkerProcess(db.url, tmp_path / f"worker-{len(started)}.log", *args)
        started.append(process)
        return process

    yield spawn
    for process in started:
        process.stop()


@pytest.mark.slow
def test_three_worker_processes_fire_each_of_240_timers_exactly_once(org, workers):
    if org.backend != "postgresql":
        pytest.skip("several workers share one PostgreSQL (FOR UPDATE SKIP LOCKED); SQLite has one writer")
    wk.deploy_models(org, wait=wk.catch_timer(value="PT1H"))
    procs = [workers(org, "--interval", "0.1", "--batch", "25") for _ in range(3)]
    wk.wait_until(lambda: all("worker started" in p.log() for p in procs), timeout=20, what="three workers")
    _due_by_the_real_clock(org)
    ids = wk.seed(org, "wait", 240, per_transaction=20)  # they fire while seeding goes on
    wk.wait_until(lambda: wk.fired_count(org, ids) == len(ids), timeout=90, what="every timer fired")
    for p in procs:
        p.signal(signal.SIGTERM)
    assert [p.wait() for p in procs] == [0, 0, 0]
    fired, pending = wk.check_fired_at_most_once(org, ids)
    assert (len(fired), pending) == (240, set())
    logged = [p.fired() for p in procs]
    assert sorted(i for part in logged for i in part) == sorted(ids)  # each logged by exactly one worker
    assert sum(1 for part in logged if part) >= 2, [len(part) for part in logged]  # the work was shared


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing_and_a_restart_fires_the_rest_exactly_once(org, workers):
    if org.backend != "postgresql":
        pytest.skip("the crash test runs against the production database, PostgreSQL")
    wk.deploy_models(org, slow=wk.slow_after_timer(loops=30_000))  # a firing takes some 15 ms longer
    _due_by_the_real_clock(org)
    ids = wk.seed(org, "slow", 120)
    victim = workers(org, "--interval", "0.1", "--batch", "120")
    wk.wait_until(lambda: wk.fired_count(org, ids) >= 20, timeout=60, what="the first firings")
    victim.signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    fired, pending = wk.check_fired_at_most_once(org, ids)  # nothing half-saved
    assert fired and pending, "the kill should land in the middle of the batch"
    restarted = [workers(org, "--interval", "0.1", "--batch", "50") for _ in range(2)]
    wk.wait_until(lambda: wk.fired_count(org, ids) == len(ids), timeout=90, what="the rest fired")
    for p in restarted:
        p.signal(signal.SIGTERM)
    assert [p.wait() for p in restarted] == [0, 0]
    fired_after, pending_after = wk.check_fired_at_most_once(org, ids)
    assert (len(fired_after), pending_after) == (120, set())
    assert sorted(i for p in restarted for i in p.fired()) == sorted(pending)  # the rest, each once


@pytest.mark.slow
def test_sigterm_finishes_the_instance_in_hand_and_exits_0(org, workers):
    wk.deploy_models(org, slow=wk.slow_after_timer(loops=200_000))  # about 100 ms a firing
    _due_by_the_real_clock(org)
    ids = wk.seed(org, "slow", 40)
    proc = workers(org, "--interval", "0.1", "--batch", "40")
    wk.wait_until(lambda: wk.fired_count(org, ids) >= 3, timeout=30, what="the first firings")
    sent = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - sent < 3  # the instance in hand, not the rest of the batch
    fired, pending = wk.check_fired_at_most_once(org, ids)  # the one in hand completed, nothing half-saved
    assert fired and pending
    log = proc.log()
    assert "worker stopping signal=SIGTERM" in log and "worker stopped" in log
    assert sorted(proc.fired()) == sorted(fired)
