"""Two people acting on the same instance at the same moment: exactly one wins, nothing is half-saved."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

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
