"""Multi-instance activities over a camunda:collection (or a loopCardinality) end with the same data whether
the instance was restored in a new process between acts (a CLI call per act, another web worker, a
restart) or stayed in one, and instances of one version never change each other's run (engine.spiff_fixes,
`_camunda_multi_instance`).

A "process" here is a Runtime with its own spec cache and restored-workflow pool: a new one per act is what
a CLI call per act gives; one shared by all acts is a long-lived worker.
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from engine import serialization
from engine.deploy import deploy
from engine.models import Incident, ProcessDefinition, ProcessInstance, Task
from engine.runtime import Runtime, instance_data
from engine.specs import RestoredWorkflows, SpecCache
from tests import modelkit
from tests.conftest import CORPUS

REVIEWERS = ["alice", "bob", "lena"]
VOTES = {"alice": 1, "bob": 2, "lena": 3}


class Process:
    """What one server process holds: its spec cache and its restored workflows."""

    def __init__(self):
        self.specs = SpecCache()
        self.restored = RestoredWorkflows()


class Acts:
    """Runs each act in a new process (`restart`) or all of them in one."""

    def __init__(self, db, *, restart: bool, shared: Process | None = None):
        self.db = db
        self.restart = restart
        self.process = shared or Process()

    def runtime(self, session) -> Runtime:
        if self.restart:
            self.process = Process()
        return Runtime(session, clock=self.db.clock, specs=self.process.specs, restored=self.process.restored)

    def start(self, key: str, user: str = "carla", **data) -> int:
        with self.db.transaction() as s:
            return self.runtime(s).start(key, user=user, data=data).id

    def complete(self, task_id: str, user: str, **data) -> None:
        with self.db.transaction() as s:
            self.runtime(s).complete(task_id, user=user, data=data)

    def open_tasks(self, instance_id: int) -> list[Task]:
        with self.db.transaction() as s:
            return s.scalars(select(Task).where(Task.instance_id == instance_id, Task.state == "open")
                             .order_by(Task.created_at, Task.id)).all()

    def task_of(self, instance_id: int, assignee: str) -> Task:
        (task,) = [t for t in self.open_tasks(instance_id) if t.assignee == assignee]
        return task

    def state(self, instance_id: int) -> tuple[str, dict]:
        with self.db.transaction() as s:
            instance = s.get(ProcessInstance, instance_id)
            return instance.status, instance_data(self.runtime(s).load_workflow(instance))


def _deploy(db, **sources):
    with db.transaction() as s:
        return deploy(s, {f"{k}.bpmn": v for k, v in sources.items()}, user="carla", now=db.clock.now())


def _loop(sequential: bool, inner: str) -> str:
    flag = ' isSequential="true"' if sequential else ""
    return f"<bpmn:multiInstanceLoopCharacteristics{flag} {inner}"


VOTE_FORM = ('<bpmn:extensionElements><camunda:formData><camunda:formField id="vote" type="long" />'
             "</camunda:formData></bpmn:extensionElements>")


def vote_by_subprocess(pid: str, *, sequential: bool = False) -> bytes:
    """Each reviewer votes in an instance of a sub-process, which writes the vote into its item of the collection."""
    loop = _loop(sequential, 'camunda:collection="${reviewers}" camunda:elementVariable="reviewer" />')
    inner = "\n".join([
        '<bpmn:startEvent id="sub_start" />',
        modelkit.user_task("cast", "Abstimmen", 'camunda:assignee="${reviewer}"', VOTE_FORM),
        '<bpmn:scriptTask id="record" scriptFormat="python">'
        '<bpmn:script>reviewer = {"name": reviewer, "vote": vote}</bpmn:script></bpmn:scriptTask>',
        '<bpmn:endEvent id="sub_end" />',
        modelkit.flow("s1", "sub_start", "cast"), modelkit.flow("s2", "cast", "record"),
        modelkit.flow("s3", "record", "sub_end"),
    ])
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        f'<bpmn:subProcess id="review">{loop}{inner}</bpmn:subProcess>',
        '<bpmn:endEvent id="end" />',
        modelkit.flow("f1", "start", "review"), modelkit.flow("f2", "review", "end"),
    ])
    return modelkit.definitions(pid, body)


def vote_by_user_task(pid: str, *, sequential: bool = False) -> bytes:
    """The prober's model: a multi-instance user task over the reviewers, then a task that waits."""
    loop = _loop(sequential, 'camunda:collection="${reviewers}" camunda:elementVariable="reviewer" />')
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        modelkit.user_task("review", "Prüfen", 'camunda:assignee="${reviewer}"', VOTE_FORM + loop),
        modelkit.user_task("after", "Danach", 'camunda:candidateGroups="lks"'),
        '<bpmn:endEvent id="end" />',
        modelkit.flow("f1", "start", "review"), modelkit.flow("f2", "review", "after"),
        modelkit.flow("f3", "after", "end"),
    ])
    return modelkit.definitions(pid, body)


def count_by_cardinality(pid: str, *, sequential: bool, cardinality: str = "3", element: str = "i") -> bytes:
    """loopCardinality instances of a user task; each sees its index as `element` (if given)."""
    variable = f' camunda:elementVariable="{element}"' if element else ""
    loop = _loop(sequential, f"{variable}><bpmn:loopCardinality>{cardinality}"
                             "</bpmn:loopCardinality></bpmn:multiInstanceLoopCharacteristics>")
    form = ('<bpmn:extensionElements><camunda:formData><camunda:formField id="seen" type="long" />'
            "</camunda:formData></bpmn:extensionElements>")
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        modelkit.user_task("count", "Zählen", 'camunda:candidateGroups="lks"', form + loop),
        '<bpmn:endEvent id="end" />',
        modelkit.flow("f1", "start", "count"), modelkit.flow("f2", "count", "end"),
    ])
    return modelkit.definitions(pid, body)


def _vote(acts: Acts, instance_id: int, order=REVIEWERS) -> None:
    for user in order:
        acts.complete(acts.task_of(instance_id, user).id, user, vote=VOTES[user])


EXPECTED_VOTES = [{"name": user, "vote": VOTES[user]} for user in REVIEWERS]


@pytest.mark.parametrize("sequential", [False, True], ids=["parallel", "sequential"])
def test_a_vote_over_a_collection_ends_the_same_with_or_without_a_new_process_between_acts(org, sequential):
    _deploy(org, vote=vote_by_subprocess("vote", sequential=sequential))
    outcomes = []
    for restart in (False, True):
        acts = Acts(org, restart=restart)
        iid = acts.start("vote", reviewers=list(REVIEWERS))
        _vote(acts, iid, REVIEWERS if sequential else reversed(REVIEWERS))
        outcomes.append(acts.state(iid))
    in_one_process, restarted = outcomes
    assert in_one_process == ("completed", {"reviewers": EXPECTED_VOTES, "initiator": "carla"})
    assert restarted == in_one_process


@pytest.mark.parametrize("sequential", [False, True], ids=["parallel", "sequential"])
def test_a_multi_instance_user_task_keeps_its_collection_across_processes(org, sequential):
    """The prober's model (/tmp/probe-engine/repro/mivote.bpmn): ["u1", "u2"] became ["u1", "u2", "u1", "u2"]."""
    _deploy(org, mivote=vote_by_user_task("mivote", sequential=sequential))
    outcomes = []
    for restart in (False, True):
        acts = Acts(org, restart=restart)
        iid = acts.start("mivote", reviewers=list(REVIEWERS))
        _vote(acts, iid)
        (after,) = acts.open_tasks(iid)
        assert after.element_id == "after"
        outcomes.append(acts.state(iid))
    in_one_process, restarted = outcomes
    assert in_one_process[1]["reviewers"] == REVIEWERS
    assert restarted == in_one_process


def test_two_instances_of_a_version_interleaved_do_not_change_each_other(org):
    _deploy(org, vote=vote_by_subprocess("vote"))
    one_process = Acts(org, restart=False)
    first = Acts(org, restart=True).start("vote", reviewers=["alice", "bob"])  # started in an earlier process
    # the next acts in one long-lived process: the first instance's completion comes before and after the
    # second instance starts the same activity on the shared spec
    one_process.complete(one_process.task_of(first, "alice").id, "alice", vote=1)
    second = one_process.start("vote", reviewers=["lena", "bob", "alice"])
    one_process.complete(one_process.task_of(first, "bob").id, "bob", vote=2)
    one_process.complete(one_process.task_of(second, "bob").id, "bob", vote=5)
    third = one_process.start("vote", reviewers=[])
    _vote(one_process, second, order=["alice", "lena"])
    assert one_process.state(first) == ("completed", {
        "reviewers": [{"name": "alice", "vote": 1}, {"name": "bob", "vote": 2}], "initiator": "carla"})
    assert one_process.state(second) == ("completed", {
        "reviewers": [{"name": "lena", "vote": 3}, {"name": "bob", "vote": 5}, {"name": "alice", "vote": 1}],
        "initiator": "carla"})
    assert one_process.state(third) == ("completed", {"reviewers": [], "initiator": "carla"})


@pytest.mark.parametrize("sequential", [False, True], ids=["parallel", "sequential"])
def test_a_loop_cardinality_gives_every_instance_its_index_in_every_process(org, sequential):
    """Sequential: without camunda:elementVariable (with one, SpiffWorkflow merges the first instance's
    index into the activity's data, and the second instance then fails on it, in every process)."""
    element = None if sequential else "i"
    _deploy(org, counting=count_by_cardinality("counting", sequential=sequential, element=element))
    outcomes = []
    for restart in (False, True):
        acts = Acts(org, restart=restart)
        iid = acts.start("counting")
        seen = []
        while tasks := acts.open_tasks(iid):
            with org.transaction() as s:
                instance = s.get(ProcessInstance, iid)
                workflow = acts.runtime(s).load_workflow(instance)
                index = workflow.get_task_from_id(uuid.UUID(tasks[0].id)).data.get("i", len(seen))
            seen.append(index)
            acts.complete(tasks[0].id, "carla", seen=index)
        outcomes.append((acts.state(iid)[0], sorted(seen)))
    assert outcomes == [("completed", [0, 1, 2])] * 2


def test_a_loop_cardinality_that_is_not_a_whole_number_is_an_incident_and_changes_no_other_instance(org):
    _deploy(org, counting=count_by_cardinality("counting", sequential=False, cardinality="${limit}"))
    acts = Acts(org, restart=False)
    bad = acts.start("counting", limit=["a", "b"])
    with org.transaction() as s:
        assert s.get(ProcessInstance, bad).has_incident
        (incident,) = s.scalars(select(Incident)).all()
        assert incident.element_id == "count" and "whole number" in incident.message
    good = acts.start("counting", limit=2)
    tasks = acts.open_tasks(good)
    assert len(tasks) == 2
    for task in tasks:
        acts.complete(task.id, "carla", seen=1)
    assert acts.state(good)[0] == "completed"


def test_the_corpus_model_ends_with_its_original_collection_across_processes(org):
    source = (CORPUS / "spiffworkflow" / "parallel_multiinstance_collection.bpmn").read_bytes()
    _deploy(org, parallel_multiinstance_collection=source)
    for restart in (False, True):
        acts = Acts(org, restart=restart)
        iid = acts.start("main", user="carla", input_data=[1, 2, 3])
        while tasks := acts.open_tasks(iid):
            acts.complete(tasks[-1].id, "carla")
        assert acts.state(iid) == ("completed", {"input_data": [1, 2, 3], "initiator": "carla"})


def test_a_versions_stored_spec_holds_the_multi_instance_attributes_as_parsed(org):
    """Deriving the data input and the input item leaves the stored text (and so the content hash) as it
    was: redeploying an unchanged model stays a no-op across the fix."""
    first = _deploy(org, vote=vote_by_subprocess("vote"))
    acts = Acts(org, restart=False)
    _vote(acts, acts.start("vote", reviewers=list(REVIEWERS)))
    again = _deploy(org, vote=vote_by_subprocess("vote"))
    assert again.created == [] and [d.version for d in again.unchanged] == [d.version for d in first.created]
    with org.transaction() as s:
        spec_json = s.scalars(select(ProcessDefinition.spec_json)).one()
    review = json.loads(spec_json)["spec"]["task_specs"]["review"]
    assert review["data_input"] is None and review["input_item"] is None
    assert review["data_output"]["bpmn_id"] == "reviewers"
    spec, _, _ = serialization.spec_from_json(spec_json)
    assert spec.task_specs["review"].data_input.bpmn_id == "reviewers"
    assert spec.task_specs["review"].input_item.bpmn_id == "reviewer"
