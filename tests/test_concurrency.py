"""Two people acting on the same instance at the same moment: exactly one wins, nothing is half-saved."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select, text

from engine.errors import Conflict, StaleTask
from engine.models import AuditEvent, Task
from tests import modelkit
from tests.test_runtime import _deploy, _open, _start


def _race(db, task_id: str, users: list[str]) -> list[object]:
    """Complete one task from several threads released together; returns each outcome."""
    barrier = threading.Barrier(len(users))
    outcomes: list[object] = [None] * len(users)

    def act(index: int, user: str) -> None:
        barrier.wait()
        try:
            with db.transaction() as s:
                db.runtime(s).complete(task_id, user=user)
            outcomes[index] = "ok"
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test inspects
            outcomes[index] = exc

    threads = [threading.Thread(target=act, args=(i, u)) for i, u in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_two_people_completing_the_same_task_exactly_one_wins(org):
    _deploy(org, chain=modelkit.chain(n=3))
    for _ in range(5):  # several rounds: a race that happens to serialise must not pass by luck
        iid = _start(org, "chain")
        (task,) = _open(org, iid)
        outcomes = _race(org, task.id, ["alice", "bob"])
        assert outcomes.count("ok") == 1, outcomes
        (loser,) = [o for o in outcomes if o != "ok"]
        assert isinstance(loser, StaleTask | Conflict), repr(loser)
        assert "already completed" in str(loser)
        (next_task,) = _open(org, iid)
        assert next_task.element_id == "t2"
        with org.transaction() as s:
            completions = s.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.instance_id == iid, AuditEvent.action == "complete"))
            assert completions == 1
            assert s.get(Task, task.id).completed_by in ("alice", "bob")


def test_parallel_work_on_different_instances_does_not_interfere(org):
    _deploy(org, chain=modelkit.chain(n=2))
    ids = [_start(org, "chain") for _ in range(6)]
    tasks = [_open(org, iid)[0].id for iid in ids]
    barrier = threading.Barrier(len(tasks))
    errors = []

    def act(task_id):
        barrier.wait()
        try:
            with org.transaction() as s:
                org.runtime(s).complete(task_id, user="alice")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=act, args=(t,)) for t in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert all(_open(org, iid)[0].element_id == "t2" for iid in ids)


def _wait_until_someone_waits_for_a_lock(db) -> None:
    if db.engine.dialect.name != "postgresql":
        time.sleep(0.5)  # SQLite: the second writer waits in BEGIN IMMEDIATE
        return
    deadline = time.monotonic() + 10
    with db.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                       "AND datname = current_database()"))
            conn.rollback()
            if waiting:
                return
            time.sleep(0.01)
    raise AssertionError("the second completion never waited for the lock")


def test_a_completion_that_waited_for_the_lock_sees_the_tasks_as_the_first_one_left_them(org):
    """Two parallel tasks completed at once: the second completion waits for the first's lock, and
    must then work with the first's result. (PostgreSQL hands a query that waited for a row lock the
    locked row as committed, but joined rows as they were before the wait; read that way, the first
    task would look open still, and the second completion would withdraw it.)"""
    _deploy(org, split=modelkit.split())
    iid = _start(org, "split")
    a, b = _open(org, iid)
    outcome = []

    def second() -> None:
        try:
            with org.transaction() as s:
                org.runtime(s).complete(b.id, user="bob")
            outcome.append("ok")
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test inspects
            outcome.append(exc)

    thread = threading.Thread(target=second)
    with org.transaction() as s:
        org.runtime(s).complete(a.id, user="alice")
        thread.start()
        _wait_until_someone_waits_for_a_lock(org)
    thread.join(timeout=60)
    assert outcome == ["ok"]
    with org.transaction() as s:
        states = dict(s.execute(select(Task.element_id, Task.state).where(Task.instance_id == iid)).all())
        assert states == {"a": "completed", "b": "completed", "c": "open"}
        assert s.get(Task, a.id).completed_by == "alice"


def test_a_sqlite_writer_that_cannot_get_the_lock_gets_sqlalchemys_error(tmp_path, sqlite_template):
    """SQLite transactions begin with BEGIN IMMEDIATE (sent to the driver): while another writer holds
    the lock past the timeout, the begin fails as SQLAlchemy's OperationalError, and nothing is left open."""
    import shutil

    import pytest
    from sqlalchemy.exc import OperationalError

    from engine import db as dbmod

    path = tmp_path / "locked.sqlite3"
    shutil.copy(sqlite_template, path)
    holder = dbmod.make_engine(f"sqlite:///{path}")
    impatient = dbmod.make_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    try:
        with holder.begin() as held:
            held.execute(text("DELETE FROM units"))
            with pytest.raises(OperationalError, match="database is locked"), impatient.begin() as conn:
                conn.execute(text("SELECT 1"))
        with impatient.begin() as conn:  # the lock is free again, and the failed begin left nothing behind
            assert conn.scalar(text("SELECT count(*) FROM units")) == 0
    finally:
        holder.dispose()
        impatient.dispose()
