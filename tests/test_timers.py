"""Every kind of waiting timer is mirrored into the timers table with its due time, and fires when due.

Models are inline (tests/workerkit.py); each timer leads to a user task, so a firing shows as a new
open task and as one "timer" audit event. Time moves with the test database's FixedClock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from SpiffWorkflow.task import TaskState
from sqlalchemy import select

from engine import worker
from engine.errors import FallwerkError, StaleTask
from engine.mirror import TIMER_VALUES, waiting_timer
from engine.models import Incident, ProcessInstance
from tests import modelkit
from tests import workerkit as wk

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _at(db, **delta) -> None:
    db.clock.at = T0 + timedelta(**delta)


def _fire(db, **delta) -> worker.WorkerStats:
    """One worker pass at T0 + delta."""
    _at(db, **delta)
    return worker.run_once(db.factory, db.clock)


def _timer_events(db, iid) -> list[tuple[str, str]]:
    return [(e.element_id, e.detail) for e in wk.audit_actions(db, iid, "timer")]


def _workflow(db, iid):
    with db.transaction() as s:
        return db.runtime(s).load_workflow(s.get(ProcessInstance, iid))


def test_an_intermediate_timer_is_mirrored_and_fires_when_due_not_before(org):
    wk.deploy_models(org, wait=wk.catch_timer(value="P3D"))
    iid = wk.start(org, "wait")
    assert wk.waiting(org, iid) == [("pause", T0 + timedelta(days=3))]
    assert _fire(org, days=3).fired == 0  # due at that instant: not yet passed
    assert wk.open_elements(org, iid) == []
    stats = _fire(org, days=3, seconds=1)
    assert (stats.fired, stats.instances) == (1, [iid])
    assert wk.open_elements(org, iid) == ["after"]
    (row,) = wk.timers(org, iid, state=None)
    assert (row.state, row.fired_at) == ("fired", T0 + timedelta(days=3, seconds=1))
    ((element, detail),) = _timer_events(org, iid)
    assert element == "pause" and '"late_seconds": 1.0' in detail
    assert _fire(org, days=9).fired == 0  # fired once, never again


@pytest.mark.parametrize("value", ["2026-12-01T10:00:00Z", "2026-12-01T11:00:00+01:00"])
def test_a_time_date_timer_is_mirrored_in_utc(org, value):
    wk.deploy_models(org, date=wk.catch_timer("date", value, "timeDate"))
    iid = wk.start(org, "date")
    assert wk.waiting(org, iid) == [("pause", datetime(2026, 12, 1, 10, 0, tzinfo=UTC))]
    _fire(org, days=5, hours=1, seconds=1)
    assert wk.open_elements(org, iid) == ["after"]


def test_a_timer_date_from_process_data(org):
    wk.deploy_models(org, expr=wk.catch_timer("expr", "${deadline}", "timeDate"))
    iid = wk.start(org, "expr", deadline="2026-12-24T08:00:00Z")
    assert wk.waiting(org, iid) == [("pause", datetime(2026, 12, 24, 8, 0, tzinfo=UTC))]


def test_a_duration_from_process_data_longer_than_a_century_is_an_incident_at_once(org):
    """SpiffWorkflow counts the days of every month of a duration: P9999999999Y kept a process busy for hours."""
    wk.deploy_models(org, expr=wk.catch_timer("expr", "${wait}", "timeDuration"))
    iid = wk.start(org, "expr", wait="P9999999999Y")
    with org.transaction() as s:
        assert s.get(ProcessInstance, iid).has_incident
        [incident] = s.scalars(select(Incident).where(Incident.instance_id == iid)).all()
        assert "longer than 100 years" in incident.message
    assert wk.waiting(org, wk.start(org, "expr", wait="P2D"))  # a sensible one waits as before


def test_an_interrupting_boundary_timer_withdraws_the_task(org):
    wk.deploy_models(org, deadline=modelkit.boundary_timer(duration="P2D"))
    iid = wk.start(org, "deadline")
    (work,) = wk.open_tasks(org, iid)
    assert wk.waiting(org, iid) == [("timeout", T0 + timedelta(days=2))]
    _fire(org, days=2, minutes=1)
    assert wk.open_elements(org, iid) == ["remind"]
    assert wk.timers(org, iid) == []
    with org.transaction() as s:
        assert s.get(type(work), work.id).state == "withdrawn"


def test_a_non_interrupting_boundary_timer_adds_work_and_keeps_the_task(org):
    wk.deploy_models(org, nonint=modelkit.boundary_timer("nonint", duration="P2D", interrupting=False))
    iid = wk.start(org, "nonint")
    assert wk.waiting(org, iid) == [("timeout", T0 + timedelta(days=2))]
    _fire(org, days=2, minutes=1)
    assert wk.open_elements(org, iid) == ["remind", "work"]
    assert [t.state for t in wk.timers(org, iid, state=None)] == ["fired"]


def test_a_timer_withdrawn_before_it_fell_due_leaves_no_trace_and_never_fires(org):
    wk.deploy_models(org, deadline=modelkit.boundary_timer(duration="P2D"))
    iid = wk.start(org, "deadline")
    (work,) = wk.open_tasks(org, iid)
    _at(org, days=1)
    with org.transaction() as s:
        org.runtime(s).complete(work.id, user="alice")
    assert wk.timers(org, iid, state=None) == []
    assert _fire(org, days=5).fired == 0
    assert _timer_events(org, iid) == []


def test_cancelling_an_instance_removes_its_timers(org):
    wk.deploy_models(org, wait=wk.catch_timer())
    iid = wk.start(org, "wait")
    with org.transaction() as s:
        org.runtime(s).cancel(iid, user="lena")
    assert wk.timers(org, iid, state=None) == []


def test_a_cycle_fires_three_times_one_hour_apart_then_stops(org):
    wk.deploy_models(org, cycle=wk.cycle_reminder(cycle="R3/PT1H"))
    iid = wk.start(org, "cycle")
    assert wk.waiting(org, iid) == [("tick", T0 + timedelta(hours=1))]
    for n in (1, 2, 3):
        _fire(org, hours=n, minutes=1)
        assert wk.open_elements(org, iid) == ["remind"] * n + ["work"]
        assert wk.waiting(org, iid) == ([("tick", T0 + timedelta(hours=n + 1))] if n < 3 else [])
    assert _fire(org, days=2).fired == 0
    fired = wk.timers(org, iid, state="fired")
    assert [t.due_at for t in fired] == [T0 + timedelta(hours=h) for h in (1, 2, 3)]
    assert len(_timer_events(org, iid)) == 3


def test_a_jump_ahead_fires_every_missed_cycle_in_one_pass(org):
    wk.deploy_models(org, cycle=wk.cycle_reminder(cycle="R3/PT1H"))
    iid = wk.start(org, "cycle")
    stats = _fire(org, days=3)
    assert stats.fired == 3
    assert wk.open_elements(org, iid) == ["remind", "remind", "remind", "work"]
    assert [f.lateness for f in stats.firings] == [3 * 86400 - h * 3600 for h in (1, 2, 3)]


def test_an_event_based_gateway_mirrors_its_timer_branch(org):
    wk.deploy_models(org, gate=wk.gateway(timers=(("late", "P3D"),)))
    iid = wk.start(org, "gate")
    assert wk.waiting(org, iid) == [("late", T0 + timedelta(days=3))]  # the timer's element, not the gateway
    (task,) = [t for t in _workflow(org, iid).get_tasks(state=TaskState.WAITING) if t.task_spec.bpmn_id == "gw"]
    assert task.internal_data[TIMER_VALUES] == {"1": (T0 + timedelta(days=3)).isoformat()}
    _fire(org, days=3, seconds=1)
    assert wk.open_elements(org, iid) == ["after_late"]
    assert [t.state for t in wk.timers(org, iid, state=None)] == ["fired"]
    with pytest.raises(FallwerkError, match="not waiting for message 'reply'"), org.transaction() as s:
        org.runtime(s).send_message(iid, "reply", user="alice")


def test_a_message_at_the_gateway_before_the_deadline_withdraws_the_timer(org):
    wk.deploy_models(org, gate=wk.gateway(timers=(("late", "P3D"),)))
    iid = wk.start(org, "gate")
    _at(org, days=1)
    with org.transaction() as s:
        org.runtime(s).send_message(iid, "reply", user="alice", payload={"answer": "ja"})
    assert wk.open_elements(org, iid) == ["answered"]
    assert wk.timers(org, iid, state=None) == []
    assert _fire(org, days=9).fired == 0


@pytest.mark.parametrize("branches", [(("soon", "P1D"), ("later", "P3D")), (("later", "P3D"), ("soon", "P1D"))])
def test_a_gateway_with_two_timers_fires_the_earlier_one_only_whatever_the_order_of_its_flows(org, branches):
    # SpiffWorkflow 3.2.0 alone lets both timers share one value: it fires the "P3D" branch, after three
    # days, whenever that branch's flow comes first (mirror._multiple_has_fired fixes this)
    wk.deploy_models(org, two=wk.gateway("two", timers=branches, message=False))
    iid = wk.start(org, "two")
    assert wk.waiting(org, iid) == [("soon", T0 + timedelta(days=1))]
    (task,) = [t for t in _workflow(org, iid).get_tasks(state=TaskState.WAITING) if t.task_spec.bpmn_id == "gw"]
    assert sorted(task.internal_data[TIMER_VALUES].values()) == [(T0 + timedelta(days=d)).isoformat() for d in (1, 3)]
    _fire(org, days=5)  # both are due by now: still only the earlier one wins
    assert wk.open_elements(org, iid) == ["after_soon"]
    assert [(t.element_id, t.state) for t in wk.timers(org, iid, state=None)] == [("soon", "fired")]
    assert _fire(org, days=9).fired == 0


def test_a_message_after_the_gateway_deadline_is_refused_because_the_timer_won(org):
    wk.deploy_models(org, gate=wk.gateway(timers=(("late", "P3D"),)))
    iid = wk.start(org, "gate")
    _at(org, days=4)  # the deadline passed, the worker has not run yet
    with pytest.raises(FallwerkError, match="not waiting for message 'reply'"), org.transaction() as s:
        org.runtime(s).send_message(iid, "reply", user="alice")
    _fire(org, days=4)
    assert wk.open_elements(org, iid) == ["after_late"]


def test_timers_inside_an_embedded_subprocess_and_on_its_boundary(org):
    wk.deploy_models(org, nested=wk.in_subprocess(inner="P1D", outer="P5D"))
    iid = wk.start(org, "nested")
    assert wk.waiting(org, iid) == [("sub_pause", T0 + timedelta(days=1)), ("sub_deadline", T0 + timedelta(days=5))]
    _fire(org, days=1, minutes=1)
    assert wk.open_elements(org, iid) == ["sub_task"]
    assert wk.waiting(org, iid) == [("sub_deadline", T0 + timedelta(days=5))]
    _fire(org, days=5, minutes=1)
    assert wk.open_elements(org, iid) == ["escalate"]
    assert [(t.element_id, t.state) for t in wk.timers(org, iid, state=None)] == [
        ("sub_pause", "fired"), ("sub_deadline", "fired")]


def test_a_timer_inside_a_called_process(org):
    wk.deploy_models(org, caller=wk.with_call_activity(value="P2D"))
    iid = wk.start(org, "caller")
    assert wk.waiting(org, iid) == [("c_pause", T0 + timedelta(days=2))]
    _fire(org, days=2, minutes=1)
    assert wk.open_elements(org, iid) == ["c_task"]


def test_a_timer_starting_a_non_interrupting_event_subprocess(org):
    # (SpiffWorkflow 3.2.0 ignores isInterrupting on an event subprocess's start: it never interrupts)
    wk.deploy_models(org, watch=wk.event_subprocess_timer(value="P4D", interrupting=False))
    iid = wk.start(org, "watch")
    assert wk.waiting(org, iid) == [("ev_start", T0 + timedelta(days=4))]
    _fire(org, days=4, minutes=1)
    assert wk.open_elements(org, iid) == ["nudge", "work"]


def test_a_process_started_by_hand_waits_on_its_start_timer(org):
    body = "\n".join([f'<bpmn:startEvent id="start">{wk.timer_definition("PT2H")}</bpmn:startEvent>',
                      modelkit.user_task("after", "Danach"), '<bpmn:endEvent id="end" />',
                      modelkit.flow("f1", "start", "after"), modelkit.flow("f2", "after", "end")])
    wk.deploy_models(org, later=modelkit.definitions("later", body))
    iid = wk.start(org, "later")
    assert wk.waiting(org, iid) == [("start", T0 + timedelta(hours=2))]
    _fire(org, hours=2, minutes=1)
    assert wk.open_elements(org, iid) == ["after"]


def test_state_written_by_the_stock_gateway_implementation_is_read_as_the_first_timer(org):
    wk.deploy_models(org, two=wk.gateway("two", timers=(("a", "P3D"), ("b", "P1D")), message=False))
    iid = wk.start(org, "two")
    (task,) = [t for t in _workflow(org, iid).get_tasks(state=TaskState.WAITING) if t.task_spec.bpmn_id == "gw"]
    task.internal_data.pop(TIMER_VALUES)
    task.internal_data["event_value"] = (T0 + timedelta(days=3)).isoformat()
    assert waiting_timer(task) == (T0 + timedelta(days=3), "a")


# --- a form submitted after its deadline ---------------------------------------------------------------
def _complete(db, task_id, user="alice", **data):
    with db.transaction() as s:
        return db.runtime(s).complete(task_id, user=user, data=data)


def test_a_form_submitted_after_its_interrupting_deadline_is_refused_as_withdrawn(org):
    wk.deploy_models(org, deadline=modelkit.boundary_timer(duration="P2D"))
    iid = wk.start(org, "deadline")
    (work,) = wk.open_tasks(org, iid)
    _at(org, days=2, minutes=1)  # due, and the worker has not come round yet
    with pytest.raises(StaleTask, match="withdrawn"):
        _complete(org, work.id)
    assert wk.audit_actions(org, iid, "complete") == []  # nothing of the submission was kept
    _fire(org, days=2, minutes=2)
    assert wk.open_elements(org, iid) == ["remind"]
    with pytest.raises(StaleTask, match="withdrawn"):
        _complete(org, work.id)


def test_a_form_submitted_just_before_its_deadline_is_accepted_and_the_timer_never_fires(org):
    wk.deploy_models(org, deadline=modelkit.boundary_timer(duration="P2D"))
    iid = wk.start(org, "deadline")
    (work,) = wk.open_tasks(org, iid)
    _at(org, days=2)  # the very instant: not passed yet
    assert _complete(org, work.id).status == "completed"
    assert _fire(org, days=3).fired == 0 and _timer_events(org, iid) == []


def test_a_form_submitted_after_a_non_interrupting_deadline_is_accepted_and_the_reminder_fires(org):
    wk.deploy_models(org, nonint=modelkit.boundary_timer("nonint", duration="P2D", interrupting=False))
    iid = wk.start(org, "nonint")
    (work,) = wk.open_tasks(org, iid)
    _at(org, days=2, minutes=1)
    _complete(org, work.id)
    assert wk.open_elements(org, iid) == ["remind"]  # the reminder the deadline owed, and the work is done
    assert [t.state for t in wk.timers(org, iid, state=None)] == ["fired"]
    assert [e.action for e in wk.audit_actions(org, iid)][-2:] == ["complete", "timer"]
    assert _fire(org, days=3).fired == 0


def test_a_form_inside_a_subprocess_whose_deadline_passed_is_refused_as_withdrawn(org):
    wk.deploy_models(org, nested=wk.in_subprocess(inner="P1D", outer="P5D"))
    iid = wk.start(org, "nested")
    _fire(org, days=1, minutes=1)
    (task,) = wk.open_tasks(org, iid)
    _at(org, days=5, minutes=1)
    with pytest.raises(StaleTask, match="withdrawn"):
        _complete(org, task.id)
