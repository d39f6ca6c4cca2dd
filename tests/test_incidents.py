"""Incidents: a failure while running an instance never loses it; timers back off, then wait for a person.

A failing step (an expression error, a missing variable, an exhausted sandbox bound) rolls the
instance back to its last good state and records an incident; `fallwerk incidents` lists it,
`fallwerk show` displays it, `fallwerk data` corrects the data (audited) and `fallwerk retry` runs the
instance on. A model fix reaches a running instance by migrating it to the fixed version.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from engine import worker
from engine.cli import main
from engine.errors import StaleTask, ValidationFailed
from engine.migration import migrate_instances
from engine.models import Incident, ProcessInstance, Task
from engine.runtime import instance_data
from tests import modelkit
from tests import workerkit as wk

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _incidents(db, iid, open_only=True) -> list[Incident]:
    with db.transaction() as s:
        query = select(Incident).where(Incident.instance_id == iid).order_by(Incident.id)
        if open_only:
            query = query.where(Incident.resolved_at.is_(None))
        return list(s.scalars(query))


def _data(db, iid) -> dict:
    with db.transaction() as s:
        return instance_data(db.runtime(s).load_workflow(s.get(ProcessInstance, iid)))


@pytest.fixture
def cli(org, monkeypatch):
    """`fallwerk ...` in-process against the test database, at the test clock's instant."""
    monkeypatch.setenv("FALLWERK_DATABASE_URL", org.url)
    runner = CliRunner()

    def run(*args, ok=True):
        result = runner.invoke(main, ["--now", org.clock.now().isoformat(), *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.stderr or result.output
        return result

    return run


def _pass(db, **delta) -> worker.WorkerStats:
    db.clock.at = T0 + timedelta(**delta)
    return worker.run_once(db.factory, db.clock)


def test_a_timer_whose_instance_fails_is_retried_after_1_5_25_minutes_then_left_failed(org, cli):
    wk.deploy_models(org, fragile=wk.failing_after_timer(value="PT1H"))
    iid = wk.start(org, "fragile", price=5)
    due = T0 + timedelta(hours=1)
    schedule = [0, 1, 5, 25]  # minutes after the previous attempt
    at = due + timedelta(seconds=1)
    for attempt, wait in enumerate(schedule, start=1):
        at += timedelta(minutes=wait)
        org.clock.at = at - timedelta(seconds=2)
        if attempt > 1:  # not before its time
            assert worker.run_once(org.factory, org.clock).firings == []
        org.clock.at = at
        (firing,) = worker.run_once(org.factory, org.clock).firings
        assert (firing.outcome, firing.attempt) == ("retry" if attempt < 4 else "failed", attempt)
        (row,) = wk.timers(org, iid, state=None)
        assert row.attempts == attempt
        assert row.next_attempt_at == (at + timedelta(minutes=schedule[attempt]) if attempt < 4 else None)
        (incident,) = _incidents(org, iid)  # one open incident, the newest attempt's
        assert (incident.element_id, incident.attempt) == ("script", attempt)
        assert "count" in incident.message
        instance = wk.instance(org, iid)
        assert (instance.status, instance.has_incident) == ("running", True)
        assert wk.waiting(org, iid) == ([("pause", due)] if attempt < 4 else [])  # last good state kept
    assert row.state == "failed"
    assert _pass(org, days=30).firings == []  # left for a person
    assert len(_incidents(org, iid, open_only=False)) == 4

    listed = cli("incidents").output
    assert listed.count(f"#{iid} ") == 1 and "script:" in listed and "(attempt 4)" in listed
    shown = cli("show", str(iid)).output
    assert "[INCIDENT]" in shown and "[OPEN] at script (attempt 4)" in shown
    assert "timer pause due 2026-11-26T10:00:00Z: FAILED" in shown

    cli("data", str(iid), "--set", '{"count": 3}', "--reason", "Anzahl fehlte", "--user", "lena")
    (fix,) = wk.audit_actions(org, iid, "data")
    assert (fix.actor, fix.changed_keys) == ("lena", "count") and "Anzahl fehlte" in fix.detail
    assert wk.open_elements(org, iid) == []  # correcting data runs nothing

    retried = json.loads(cli("retry", str(iid), "--user", "lena", "--json").output)
    assert retried["has_incident"] is False
    assert wk.open_elements(org, iid) == ["after"]
    assert _data(org, iid)["total"] == 15
    assert [t.state for t in wk.timers(org, iid, state=None)] == ["fired"]
    assert _incidents(org, iid) == []
    assert "no incidents" in cli("incidents").output


def test_a_timer_that_fires_once_the_data_is_fixed_during_back_off(org):
    wk.deploy_models(org, fragile=wk.failing_after_timer(value="PT1H"))
    iid = wk.start(org, "fragile", price=5)
    assert _pass(org, hours=1, seconds=1).firings[0].outcome == "retry"
    with org.transaction() as s:
        org.runtime(s).set_data(iid, {"count": 2}, user="lena")
    (firing,) = _pass(org, hours=1, minutes=1, seconds=1).firings  # the worker's next attempt succeeds
    assert firing.outcome == "fired" and firing.lateness == 61.0
    assert wk.open_elements(org, iid) == ["after"]
    assert _data(org, iid)["total"] == 10
    assert wk.instance(org, iid).has_incident  # the incident stays until someone looks: retry resolves it
    with org.transaction() as s:
        org.runtime(s).retry(iid, user="lena")
    assert _incidents(org, iid) == []


def test_a_failing_step_after_a_form_keeps_the_form_and_the_instance(org):
    wk.deploy_models(org, calc=modelkit.with_script("calc", "ratio = price / count"))
    iid = wk.start(org, "calc", price=5, count=0)
    (first,) = wk.open_tasks(org, iid)
    with org.transaction() as s:
        instance = org.runtime(s).complete(first.id, user="alice", data={})
        assert instance.has_incident and instance.status == "running"
    (incident,) = _incidents(org, iid)
    assert incident.element_id == "script" and "ZeroDivisionError" in incident.message + incident.error_type
    with org.transaction() as s:
        org.runtime(s).set_data(iid, {"count": 5}, user="lena", reason="Zähler war 0")
        org.runtime(s).retry(iid, user="lena")
    assert wk.open_elements(org, iid) == ["after"]
    assert _data(org, iid)["ratio"] == 1


def test_a_missing_variable_in_a_gateway_condition_is_an_incident_at_the_gateway(org):
    wk.deploy_models(org, cond=modelkit.with_script("cond", "x = 1", condition="${approved}"))
    iid = wk.start(org, "cond")
    (first,) = wk.open_tasks(org, iid)
    with org.transaction() as s:
        org.runtime(s).complete(first.id, user="alice", data={})
    (incident,) = _incidents(org, iid)
    assert incident.element_id == "gw" and "approved" in incident.message
    with org.transaction() as s:
        org.runtime(s).set_data(iid, {"approved": True}, user="lena")
        org.runtime(s).retry(iid, user="lena")
    assert wk.open_elements(org, iid) == ["after"]


@pytest.mark.parametrize("script, bound", [("big = 'a' * (10 ** 8)", "size bound"),
                                           ("n = 0\nwhile True:\n    n = n + 1", "time")])
def test_an_exhausted_sandbox_bound_while_a_timer_fires_is_an_incident_and_loses_nothing(org, script, bound):
    wk.deploy_models(org, greedy=wk.failing_after_timer("greedy", value="PT1H", script=script))
    iid = wk.start(org, "greedy")
    (firing,) = _pass(org, hours=2).firings
    assert firing.outcome == "retry"
    (incident,) = _incidents(org, iid)
    assert incident.element_id == "script" and bound in incident.message
    assert incident.error_type == "SandboxViolation"
    assert wk.waiting(org, iid) == [("pause", T0 + timedelta(hours=1))]
    assert wk.instance(org, iid).status == "running"


def test_a_model_fix_reaches_a_running_instance_by_migrating_it_then_retry(org, cli):
    wk.deploy_models(org, fragile=wk.failing_after_timer(value="PT1H"))
    iid = wk.start(org, "fragile", price=5)
    for minutes in (0, 1, 6, 31):
        _pass(org, hours=1, minutes=minutes, seconds=1)
    assert [t.state for t in wk.timers(org, iid, state=None)] == ["failed"]
    wk.deploy_models(org, fragile=wk.failing_after_timer(value="PT1H", script="total = price * 2"))
    report = migrate_instances(org.transaction, "fragile", 1, 2, user="carla", clock=org.clock)
    assert [p.instance_id for p in report.migrated] == [iid]
    assert wk.open_elements(org, iid) == ["after"]  # moving ran the waiting step on the new version
    assert [t.state for t in wk.timers(org, iid, state=None)] == ["fired"]
    cli("retry", str(iid), "--user", "carla")  # and a person closes the incident
    assert _incidents(org, iid) == [] and not wk.instance(org, iid).has_incident
    assert _data(org, iid)["total"] == 10


def test_correcting_data_is_refused_for_bad_keys_ended_instances_and_empty_changes(org):
    wk.deploy_models(org, fragile=wk.failing_after_timer(value="PT1H"))
    iid = wk.start(org, "fragile", price=5)
    with pytest.raises(ValidationFailed), org.transaction() as s:
        org.runtime(s).set_data(iid, {"not a key": 1}, user="lena")
    with pytest.raises(ValidationFailed, match="nothing to change"), org.transaction() as s:
        org.runtime(s).set_data(iid, {}, user="lena")
    with org.transaction() as s:
        org.runtime(s).set_data(iid, {"count": 1, "note": "x"}, user="lena", unset=("price",))
    assert "price" not in _data(org, iid) and _data(org, iid)["count"] == 1
    with org.transaction() as s:
        org.runtime(s).cancel(iid, user="lena")
    with pytest.raises(StaleTask), org.transaction() as s:
        org.runtime(s).set_data(iid, {"count": 2}, user="lena")


def test_the_reserved_variable_typename_stops_a_model_at_deploy_or_at_its_save(org):
    """Stored, a task whose data has the variable "typename" would be taken for a typed value, and the case
    could not be restored. Scripts and expressions may not name it (deploy refuses them); should it come
    in another way, the save refuses it at the element that set it, which becomes an incident."""
    from engine import serialization
    from engine.errors import ModelError
    from tests.test_runtime import _deploy

    with pytest.raises(ModelError) as refused:
        _deploy(org, marker=modelkit.with_script("marker", 'typename = "datetime"'))
    assert "forbidden name 'typename'" in str(refused.value.findings)
    workflow, script = _ran_a_script(org)
    script.data["typename"] = "datetime"
    with pytest.raises(ModelError, match="'typename' is reserved") as refused:
        serialization.dump_state(workflow)
    assert refused.value.element_id == "script"


def test_datetimes_and_times_a_script_builds_are_stored_and_come_back(org):
    script = "\n".join([
        "deadline = datetime.datetime(2026, 12, 1, 9, 0)",
        "parsed = datetime.datetime.fromisoformat('2026-12-01T09:00+01:00')",
        "client = dict(client)",
        "client['checked_at'] = datetime.datetime.strptime('01.01.2026', '%d.%m.%Y')",
        "meeting = datetime.time(9, 30)",
        "pause = datetime.timedelta(seconds=1, microseconds=5)",
    ])
    wk.deploy_models(org, dated=modelkit.with_script("dated", script))
    iid = wk.start(org, "dated", client={"name": "Ada"})
    (first,) = wk.open_tasks(org, iid)
    with org.transaction() as s:
        assert not org.runtime(s).complete(first.id, user="alice", data={}).has_incident
    data = _data(org, iid)
    assert data["deadline"] == datetime(2026, 12, 1, 9, 0)
    assert data["parsed"] == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert data["client"] == {"name": "Ada", "checked_at": datetime(2026, 1, 1)}
    assert data["meeting"] == dt_time(9, 30) and data["pause"] == timedelta(seconds=1, microseconds=5)
    assert wk.open_elements(org, iid) == ["after"]


@pytest.mark.parametrize("script, problem", [
    ("x = {'typename': 'Decimal', 'value': '1.5'}", "x.typename: 'typename' is reserved"),
    ("y = [{'a': {'typename': 'datetime'}}]", "y[0].a.typename: 'typename' is reserved"),
    ("counts = {1: 'one'}", "counts[1]: keys must be text, not int 1"),
    ("big = 10 ** 5000", "big: a whole number of more than 4,300 digits cannot be stored"),
    ("raw = b'abc'", "raw: a value of type 'bytes' cannot be stored"),
    ("tags = {'a'}", "tags: a value of type 'set' cannot be stored"),
    ("text = json_loads('\"\\\\ud800\"')", "text: text with an unpaired surrogate"),
    ("client['inner']['when'] = {2: 'x'}", "client.inner.when[2]: keys must be text"),
    ("client = lambda: 1", "the data variable 'client' cannot hold a function"),
])
def test_data_a_script_cannot_store_is_an_incident_at_the_script_and_nothing_is_lost(org, script, problem):
    wk.deploy_models(org, odd=modelkit.with_script("odd", script))
    iid = wk.start(org, "odd", client={"inner": {}})
    (first,) = wk.open_tasks(org, iid)
    with org.transaction() as s:
        assert org.runtime(s).complete(first.id, user="alice", data={}).has_incident
    (incident,) = _incidents(org, iid)
    assert incident.element_id == "script" and problem in incident.message
    assert _data(org, iid) == {"initiator": "alice", "client": {"inner": {}}}


def _ran_a_script(org):
    """A case whose script task ran (its workflow, read back) and that task."""
    wk.deploy_models(org, plain=modelkit.with_script("plain", "n = 1"))
    iid = wk.start(org, "plain")
    (task,) = wk.open_tasks(org, iid)
    with org.transaction() as s:
        org.runtime(s).complete(task.id, user="alice", data={})
        workflow = org.runtime(s).load_workflow(s.get(ProcessInstance, iid))
    return workflow, next(t for t in workflow.tasks.values() if t.task_spec.bpmn_id == "script")


def test_data_a_decision_makes_that_cannot_be_stored_is_refused_at_the_save(org):
    """Not only scripts: whatever model code leaves in a task's data is checked when the state is saved."""
    from engine import serialization
    from engine.errors import ModelError

    workflow, script = _ran_a_script(org)
    script.data["result"] = {"rows": [{3: "x"}], "at": dt_time(9, 0)}
    with pytest.raises(ModelError, match=r"result\.rows\[0\]\[3\]: keys must be text") as refused:
        serialization.dump_state(workflow)
    assert refused.value.element_id == "script"


@pytest.mark.parametrize("act", ["start", "complete", "set_data", "message"])
def test_text_with_an_unpaired_surrogate_is_refused_as_input(org, act):
    """Stored, it would make every later display of the case fail (it cannot be encoded as UTF-8)."""
    wk.deploy_models(org, plain=modelkit.with_script("plain", "n = 1"), waiter=modelkit.message_wait())
    bad = {"note": "ok", "nested": {"a": ["\ud800"]}}
    iid = wk.start(org, "waiter" if act == "message" else "plain")
    with pytest.raises(ValidationFailed) as refused, org.transaction() as s:
        runtime = org.runtime(s)
        if act == "start":
            runtime.start("plain", user="alice", data=bad)
        elif act == "complete":
            task_id = s.scalars(select(Task.id).where(Task.instance_id == iid)).one()
            runtime.complete(task_id, user="alice", data=bad)
        elif act == "set_data":
            runtime.set_data(iid, bad, user="lena")
        else:
            runtime.send_message(iid, "go", user="alice", payload=bad)
    assert "unpaired surrogate" in refused.value.errors["nested.a[0]"][0]


def test_a_loop_that_never_waits_is_an_incident_at_the_loop_and_the_case_keeps_its_state(org, monkeypatch):
    from engine import runtime

    assert runtime.MAX_ENGINE_STEPS == 2_000
    monkeypatch.setattr(runtime, "MAX_ENGINE_STEPS", 300)  # the bound's steps take long in SpiffWorkflow
    body = "\n".join([
        '<bpmn:startEvent id="start" />', modelkit.user_task("first", "Erfassen"),
        '<bpmn:scriptTask id="inc"><bpmn:script>i = i + 1</bpmn:script></bpmn:scriptTask>',
        '<bpmn:exclusiveGateway id="gw" default="back" />', modelkit.user_task("after", "Weiter"),
        '<bpmn:endEvent id="end" />',
        modelkit.flow("f1", "start", "first"), modelkit.flow("f2", "first", "inc"), modelkit.flow("f3", "inc", "gw"),
        modelkit.flow("out", "gw", "after", "i >= n"), modelkit.flow("back", "gw", "inc"),
        modelkit.flow("f4", "after", "end"),
    ])
    wk.deploy_models(org, spin=modelkit.definitions("spin", body))
    iid = wk.start(org, "spin", i=0, n=10**9)
    (first,) = wk.open_tasks(org, iid)
    with org.transaction() as s:
        assert org.runtime(s).complete(first.id, user="alice", data={}).has_incident
    (incident,) = _incidents(org, iid)
    assert incident.element_id in ("inc", "gw") and "more than 300 steps" in incident.message
    assert _data(org, iid)["i"] == 0 and wk.instance(org, iid).status == "running"
    with org.transaction() as s:
        org.runtime(s).set_data(iid, {"n": 140}, user="lena")  # 280 steps: within the bound
        org.runtime(s).retry(iid, user="lena")
    assert wk.open_elements(org, iid) == ["after"] and _data(org, iid)["i"] == 140
