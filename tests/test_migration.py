"""Migrating running instances from version N to N+1: dry run, bulk, audit, tasks and timers mirrored again."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from engine import migration
from engine.cli import main
from engine.deploy import deploy
from engine.errors import Conflict
from engine.models import AuditEvent, ProcessInstance, Task, TaskCandidate, Timer
from tests.modelkit import definitions, flow, user_task
from tests.test_modelling import procedure

WHO = "carla"


def without_intake() -> bytes:
    """Version 3 drops the intake task: start -> gateway -> advise -> end."""
    xml = procedure().decode()
    xml = xml.replace(user_task("intake", "Anfrage erfassen", 'camunda:assignee="${initiator}"'), "")
    xml = xml.replace(flow("f1", "start", "intake"), "").replace(flow("f2", "intake", "gw"), flow("f1", "start", "gw"))
    return xml.encode()


def _deploy(db, content: bytes) -> int:
    with db.transaction() as s:
        return deploy(s, {"beratung.bpmn": content}, user=WHO, now=db.clock.now()).created[0].version


def _start(db) -> int:
    with db.transaction() as s:
        return db.runtime(s).start("beratung", user="alice").id


def _open(db, case: int) -> Task:
    with db.transaction() as s:
        return s.scalars(select(Task).where(Task.instance_id == case, Task.state == "open")).one()


def _complete(db, case: int, data=None) -> None:
    task = _open(db, case)
    with db.transaction() as s:
        db.runtime(s).complete(task.id, user="alice", data=data or {})


def _migrate(db, a=1, b=2, **kwargs):
    return migration.migrate_instances(db.transaction, "beratung", a, b, user=WHO, clock=db.clock, **kwargs)


def _plan(db, a=1, b=2):
    with db.transaction() as s:
        return migration.plan_migration(s, "beratung", a, b, clock=db.clock)


def _version(db, case: int) -> int:
    with db.transaction() as s:
        return s.get(ProcessInstance, case).definition.version


@pytest.fixture
def two_versions(org):
    _deploy(org, procedure())
    at_intake, at_advise = _start(org), _start(org)
    _complete(org, at_advise)
    _deploy(org, procedure(extra_task=True))
    return org, at_intake, at_advise


def test_the_dry_run_lists_what_would_move_and_stores_nothing(two_versions):
    db, at_intake, at_advise = two_versions
    plan = _plan(db)
    assert [(p.instance_id, p.movable, p.active) for p in plan.instances] == [
        (at_intake, True, ["intake"]), (at_advise, True, ["advise", "deadline"])]
    assert plan.to_dict()["movable"] == 2
    assert _version(db, at_intake) == 1 and _version(db, at_advise) == 1
    with db.transaction() as s:
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "migrate")).all() == []


def test_an_instance_whose_position_or_path_is_gone_cannot_move_and_the_plan_says_why(org):
    _deploy(org, procedure())
    at_intake, at_advise = _start(org), _start(org)
    _complete(org, at_advise)
    _deploy(org, without_intake())
    plan = {p.instance_id: p for p in _plan(org).instances}
    assert [(r.code, r.element_id) for r in plan[at_intake].reasons] == [("position_removed", "intake")]
    assert [(r.code, r.element_id) for r in plan[at_advise].reasons] == [("history_removed", "intake")]
    report = _migrate(org)
    assert report.migrated == [] and {p.instance_id for p in report.failed} == {at_intake, at_advise}
    assert _version(org, at_intake) == 1


def test_bulk_migration_moves_each_instance_audits_it_and_it_runs_on_the_new_version(two_versions):
    db, at_intake, at_advise = two_versions
    report = _migrate(db)
    assert sorted(p.instance_id for p in report.migrated) == [at_intake, at_advise] and report.failed == []
    assert _version(db, at_intake) == 2 and _version(db, at_advise) == 2
    with db.transaction() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "migrate").order_by(AuditEvent.id)).all()
        assert [(e.instance_id, e.actor, json.loads(e.detail)["from_version"], json.loads(e.detail)["to_version"])
                for e in events] == [(at_intake, WHO, 1, 2), (at_advise, WHO, 1, 2)]
    open_before = _open(db, at_advise)
    assert open_before.element_id == "advise"  # the same task, still open, still the same id
    _complete(db, at_advise)
    assert _open(db, at_advise).element_id == "review"  # only version 2 has this step


def test_a_running_timer_keeps_its_due_time_when_its_element_did_not_change(two_versions):
    db, _, at_advise = two_versions
    with db.transaction() as s:
        due = s.scalars(select(Timer.due_at).where(Timer.instance_id == at_advise)).one()
    db.clock.advance(days=1)
    _migrate(db)
    with db.transaction() as s:
        assert s.scalars(select(Timer.due_at).where(Timer.instance_id == at_advise, Timer.state == "waiting")).all() \
            == [due]


def test_a_changed_timer_starts_anew_and_the_dry_run_says_so(org):
    _deploy(org, procedure())
    case = _start(org)
    _complete(org, case)
    _deploy(org, procedure(timer="P5D"))
    org.clock.advance(days=1)
    [entry] = _plan(org).instances
    assert ("timer_restarted", "deadline") in [(n.code, n.element_id) for n in entry.notes]
    _migrate(org)
    with org.transaction() as s:
        due = s.scalars(select(Timer.due_at).where(Timer.instance_id == case, Timer.state == "waiting")).one()
    assert due == org.clock.now() + timedelta(days=5)


def test_an_open_task_of_a_changed_element_gets_its_new_candidates(org):
    _deploy(org, procedure())
    case = _start(org)
    _complete(org, case)
    task = _open(org, case)
    _deploy(org, procedure(group="lks:coordinator", name="Beraten (LKS)"))
    [entry] = _plan(org).instances
    assert ("task_changed", "advise") in [(n.code, n.element_id) for n in entry.notes]
    _migrate(org)
    with org.transaction() as s:
        row = s.get(Task, task.id)
        assert (row.state, row.title, row.candidate_groups) == ("open", "Beraten (LKS)", "lks:coordinator")
        assert s.scalars(select(TaskCandidate.value).where(TaskCandidate.task_id == task.id)).all() \
            == ["lks:coordinator"]
    with org.transaction() as s, pytest.raises(Exception, match="not a candidate"):
        org.runtime(s).complete(task.id, user="alice", data={})
    with org.transaction() as s:
        org.runtime(s).complete(task.id, user="carla", data={})


def test_migrating_one_instance_twice_is_refused(two_versions):
    db, at_intake, _ = two_versions
    _migrate(db, only=[at_intake])
    with db.transaction() as s:
        source = s.scalars(select(ProcessInstance).where(ProcessInstance.id == at_intake)).one().definition
        with pytest.raises(Conflict, match="is on version 2 now"):
            migration.migrate_instance(s, at_intake, source, user=WHO, clock=db.clock, expected_source=-1)


def test_same_version_or_unknown_version_is_an_error(two_versions):
    db = two_versions[0]
    with pytest.raises(Exception, match="same version"):
        _plan(db, 1, 1)
    with pytest.raises(Exception, match="version 9"):
        _plan(db, 1, 9)


def test_a_workflow_with_a_subprocess_migrates(org):
    def model(extra: str = "") -> bytes:
        inner = ('<bpmn:subProcess id="sub"><bpmn:startEvent id="s_start" />'
                 + user_task("inner", "Innen", 'camunda:candidateGroups="rz-west"') + '<bpmn:endEvent id="s_end" />'
                 + flow("s1", "s_start", "inner") + flow("s2", "inner", "s_end") + "</bpmn:subProcess>")
        tail = (user_task("after", "Danach", 'camunda:candidateGroups="rz-west"') + flow("f3", "sub", "after")
                + flow("f4", "after", "end")) if extra else flow("f3", "sub", "end")
        body = ('<bpmn:startEvent id="start" />' + inner + '<bpmn:endEvent id="end" />'
                + flow("f1", "start", "sub") + tail)
        return definitions("beratung", body)

    _deploy(org, model())
    case = _start(org)
    _deploy(org, model(extra="yes"))
    assert [p.movable for p in _plan(org).instances] == [True]
    _migrate(org)
    _complete(org, case)
    assert _open(org, case).element_id == "after"


def test_the_cli_runs_a_dry_run_and_a_migration_with_json_output(two_versions, monkeypatch):
    db, at_intake, at_advise = two_versions
    monkeypatch.setenv("FALLWERK_DATABASE_URL", db.url)
    runner = CliRunner()
    dry = runner.invoke(main, ["migrate", "beratung", "--from", "1", "--to", "2", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    payload = json.loads(dry.output)
    assert payload["movable"] == 2 and [i["instance"] for i in payload["instances"]] == [at_intake, at_advise]
    assert _version(db, at_intake) == 1
    text = runner.invoke(main, ["migrate", "beratung", "--from", "1", "--to", "2", "--dry-run"])
    assert f"{at_intake}" in text.output and "would move" in text.output
    done = runner.invoke(main, ["migrate", "beratung", "--from", "1", "--to", "2", "--user", WHO, "--json"])
    assert done.exit_code == 0, done.output
    assert len(json.loads(done.output)["migrated"]) == 2
    assert _version(db, at_advise) == 2
    failed = runner.invoke(main, ["migrate", "beratung", "--from", "1", "--to", "7"])
    assert failed.exit_code == 1 and "no deployed process 'beratung' in version 7" in failed.stderr
