"""Workflows a view read, handed in for the next change of the same state (engine.specs.RestoredWorkflows)."""

from __future__ import annotations

import json

import pytest
from SpiffWorkflow.task import TaskState
from sqlalchemy import select

from engine import mirror, serialization
from engine.deploy import deploy
from engine.errors import ValidationFailed
from engine.models import ProcessInstance, Task
from engine.specs import RestoredWorkflows
from tests import modelkit


@pytest.fixture
def restores(monkeypatch):
    """The number of workflows restored from stored state so far."""
    count = [0]
    load_state = serialization.load_state

    def counted(*args, **kwargs):
        count[0] += 1
        return load_state(*args, **kwargs)

    monkeypatch.setattr(serialization, "load_state", counted)
    return count


@pytest.fixture
def case(org):
    with org.transaction() as s:
        deploy(s, {"chain.bpmn": modelkit.chain(n=3)}, user="carla", now=org.clock.now())
        return org.runtime(s).start("chain", user="alice").id


def _read(db, instance_id, *, hand_in=True):
    """What a task page does: read the workflow, then hand it in when the request ends."""
    with db.transaction() as s:
        runtime = db.runtime(s)
        workflow = runtime.load_workflow(s.get(ProcessInstance, instance_id))
        if hand_in:
            runtime.hand_in()
        return workflow


def _open_task(db, instance_id):
    with db.transaction() as s:
        return s.scalars(select(Task).where(Task.instance_id == instance_id, Task.state == "open")).one()


def _complete(db, task_id, **data):
    with db.transaction() as s:
        db.runtime(s).complete(task_id, user="alice", data=data)


def test_a_change_takes_the_workflow_a_view_read_of_the_same_state(org, case, restores):
    read = _read(org, case)
    assert restores[0] == 1
    _complete(org, _open_task(org, case).id, note="eins")
    assert restores[0] == 1  # the change restored nothing
    with org.transaction() as s:
        instance = s.get(ProcessInstance, case)
        assert json.loads(serialization.dump_state(read)) == json.loads(instance.state_json)  # the very object
    assert _open_task(org, case).element_id == "t2"
    # the workflow the change took is gone: the next change restores again
    _complete(org, _open_task(org, case).id)
    assert restores[0] == 2


def test_a_workflow_not_handed_in_is_not_reused(org, case, restores):
    _read(org, case, hand_in=False)
    _complete(org, _open_task(org, case).id)
    assert restores[0] == 2


def test_a_workflow_of_an_older_state_is_not_taken(org, case, restores):
    _read(org, case)  # the state after the start, handed in
    first = _open_task(org, case).id
    with org.transaction() as s:  # another worker completes the task: it has a cache of its own
        other = org.runtime(s)
        other.restored = RestoredWorkflows()
        other.complete(first, user="alice", data={})
    assert restores[0] == 2
    _complete(org, _open_task(org, case).id)  # from the state the other worker saved
    assert restores[0] == 3


def test_a_change_that_fails_after_taking_the_workflow_leaves_nothing_behind(org, case, restores, monkeypatch):
    _read(org, case)
    task = _open_task(org, case).id

    def broken(*args, **kwargs):
        raise RuntimeError("the disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(mirror, "complete_task", broken)
        with pytest.raises(RuntimeError):
            _complete(org, task)  # the taken workflow had the task run already: it must not come back
    with pytest.raises(ValidationFailed):
        _complete(org, task, **{"no-variable-name": 1})
    _complete(org, task, note="eins")
    with org.transaction() as s:
        instance = s.get(ProcessInstance, case)
        workflow = org.runtime(s).load_workflow(instance)
        done = [t.task_spec.name for t in workflow.get_tasks(state=TaskState.COMPLETED)]
    assert done.count("t1") == 1
    assert _open_task(org, case).element_id == "t2"


def test_the_cache_keeps_the_newest_entries():
    cache = RestoredWorkflows(size=2)
    for n in range(3):
        cache.hand_in("v1", f"state {n}", n)
    assert cache.take("v1", "state 0") is None
    assert cache.take("v1", "state 2") == 2
    assert cache.take("v1", "state 2") is None  # taken once
    assert cache.take("v1", "state 1") == 1
    cache.hand_in("v1", "state 3", 3)
    assert cache.take("v2", "state 3") is None  # another version's spec, the same text
