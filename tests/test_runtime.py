"""The engine's runtime: deploying versions, running instances, tasks, messages, incidents."""

from __future__ import annotations

import json
import logging

import pytest
from SpiffWorkflow.task import TaskState
from sqlalchemy import delete, event, func, select, text

from engine import identity, serialization
from engine.deploy import deploy
from engine.errors import ModelError, NotFound, PermissionDenied, StaleTask, ValidationFailed
from engine.identity import get_user
from engine.models import AuditEvent, Incident, ProcessDefinition, ProcessInstance, Task, TaskCandidate
from engine.queries import open_tasks_for_user
from engine.runtime import completed_elements
from tests import modelkit


def _deploy(db, **sources):
    with db.transaction() as s:
        return deploy(s, {f"{k}.bpmn": v for k, v in sources.items()}, user="carla", now=db.clock.now())


def _open(db, instance_id):
    with db.transaction() as s:
        return s.scalars(select(Task).where(Task.instance_id == instance_id, Task.state == "open")
                         .order_by(Task.element_id)).all()


def _start(db, key, user="alice", **data):
    with db.transaction() as s:
        return db.runtime(s).start(key, user=user, data=data).id


def _complete(db, task_id, user, **data):
    with db.transaction() as s:
        return db.runtime(s).complete(task_id, user=user, data=data)


def _reload_equal(db, instance_id):
    """Save/restore check: the stored state restores to a workflow that dumps to the same state."""
    with db.transaction() as s:
        instance = s.get(ProcessInstance, instance_id)
        workflow = db.runtime(s).load_workflow(instance)
        assert json.loads(serialization.dump_state(workflow)) == json.loads(instance.state_json)


def test_deploying_unchanged_content_is_a_no_op_and_a_change_is_a_new_version(db):
    first = _deploy(db, chain=modelkit.chain(n=2))
    again = _deploy(db, chain=modelkit.chain(n=2))
    changed = _deploy(db, chain=modelkit.chain(n=3))
    assert [d.version for d in first.created] == [1]
    assert again.created == [] and [d.version for d in again.unchanged] == [1]
    assert again.deployment_id is None
    assert [d.version for d in changed.created] == [2]


def test_a_deploy_with_an_error_stores_nothing(db):
    broken = modelkit.definitions("broken", '<bpmn:startEvent id="s" /><bpmn:userTask id="u" />'
                                  '<bpmn:sequenceFlow id="f" sourceRef="s" targetRef="nowhere" />')
    with pytest.raises(ModelError) as info, db.transaction() as s:
        deploy(s, {"ok.bpmn": modelkit.chain(), "broken.bpmn": broken}, user="carla", now=db.clock.now())
    assert info.value.findings
    with db.transaction() as s:
        assert s.scalar(select(ProcessDefinition.id)) is None


def test_running_instances_stay_on_their_version(org):
    _deploy(org, chain=modelkit.chain(n=2))
    old = _start(org, "chain")
    _deploy(org, chain=modelkit.chain(n=3))
    new = _start(org, "chain")
    with org.transaction() as s:
        assert s.get(ProcessInstance, old).definition.version == 1
        assert s.get(ProcessInstance, new).definition.version == 2
    for _ in range(2):
        (task,) = _open(org, old)
        _complete(org, task.id, "alice")
    with org.transaction() as s:
        assert s.get(ProcessInstance, old).status == "completed"


def test_an_approval_runs_through_with_candidates_due_dates_and_a_camunda_condition(org):
    _deploy(org, approval=modelkit.approval())
    iid = _start(org, "approval", unit="rz-west")
    (request,) = _open(org, iid)
    assert request.assignee == "alice"
    _reload_equal(org, iid)
    _complete(org, request.id, "alice", amount="300", reason="Fortbildung")
    (decide,) = _open(org, iid)
    assert decide.candidate_groups == "rz-west:lead"
    assert decide.priority == 70
    assert decide.due_at == org.clock.now().replace(day=29)
    _reload_equal(org, iid)
    with pytest.raises(PermissionDenied):
        _complete(org, decide.id, "alice", approved=True)
    instance = _complete(org, decide.id, "lena", approved=True)
    assert instance.status == "completed"
    with org.transaction() as s:
        assert "end_yes" in completed_elements(org.runtime(s).load_workflow(s.get(ProcessInstance, iid)))


@pytest.mark.parametrize("value, priority", [("7", 7), (" -5 ", -5), ("²", 50), ("--5", 50), ("", 50), ("x", 50),
                                             ("99999999999", 2**31 - 1), ("1" * 40, 50)])
def test_a_task_priority_is_a_whole_number_in_the_columns_range_or_the_default(org, value, priority):
    _deploy(org, prio=modelkit.definitions("prio", "\n".join([
        '<bpmn:startEvent id="start" />',
        modelkit.user_task("t", "T", 'camunda:candidateGroups="rz-west" camunda:priority="${p}"'),
        '<bpmn:endEvent id="end" />', modelkit.flow("f1", "start", "t"), modelkit.flow("f2", "t", "end")])))
    (task,) = _open(org, _start(org, "prio", p=value))
    assert task.priority == priority


def test_the_default_flow_is_taken_when_the_condition_is_false(org):
    _deploy(org, approval=modelkit.approval())
    iid = _start(org, "approval", unit="rz-west")
    _complete(org, _open(org, iid)[0].id, "alice", amount=9000)
    _complete(org, _open(org, iid)[0].id, "lena", approved=True)
    with org.transaction() as s:
        assert "end_no" in completed_elements(org.runtime(s).load_workflow(s.get(ProcessInstance, iid)))


def test_form_data_is_validated_on_the_server_and_nothing_is_saved_on_error(org):
    _deploy(org, approval=modelkit.approval())
    iid = _start(org, "approval", unit="rz-west")
    (request,) = _open(org, iid)
    with pytest.raises(ValidationFailed) as info:
        _complete(org, request.id, "alice", amount=99999)
    assert "amount" in info.value.errors
    with pytest.raises(ValidationFailed) as info:
        _complete(org, request.id, "alice", amount=5, smuggled="x")
    assert "smuggled" in info.value.errors
    assert [t.id for t in _open(org, iid)] == [request.id]


def test_completing_a_task_twice_fails_clearly(org):
    _deploy(org, chain=modelkit.chain(n=2))
    iid = _start(org, "chain")
    (task,) = _open(org, iid)
    _complete(org, task.id, "alice")
    with pytest.raises(StaleTask, match="already completed by alice"):
        _complete(org, task.id, "bob")


def test_completion_checks_who_acts_under_the_lock(org):
    """Candidates by group and by name, the four-eyes exclusion, deactivated and unknown users."""
    four_eyes = modelkit.definitions("four_eyes", "\n".join([
        '<bpmn:startEvent id="start" />',
        modelkit.user_task("check", "Prüfen", 'camunda:candidateGroups="rz-west" camunda:candidateUsers="otto"',
                           body='<bpmn:extensionElements><camunda:properties>'
                                '<camunda:property name="not_user" value="${initiator}" />'
                                '</camunda:properties></bpmn:extensionElements>'),
        '<bpmn:endEvent id="end" />',
        modelkit.flow("f1", "start", "check"), modelkit.flow("f2", "check", "end"),
    ]))
    _deploy(org, four_eyes=four_eyes)
    (task,) = _open(org, _start(org, "four_eyes", user="alice"))
    with pytest.raises(PermissionDenied, match="not a candidate"):
        _complete(org, task.id, "alice")  # in the group, but she started it
    with pytest.raises(PermissionDenied, match="not a candidate"):
        _complete(org, task.id, "carla")
    with pytest.raises(NotFound, match="Unknown user"):
        _complete(org, task.id, "nobody")
    with org.transaction() as s:
        get_user(s, "bob").is_active = False
    with pytest.raises(PermissionDenied, match="deactivated"):
        _complete(org, task.id, "bob")
    assert [t.state for t in _open(org, task.instance_id)] == ["open"]
    assert _complete(org, task.id, "otto").status == "completed"  # named as a candidate
    with org.transaction() as s:
        row = s.get(Task, task.id)
        assert (row.state, row.completed_by, row.assignee) == ("completed", "otto", "otto")
        assert (row.candidate_groups, row.candidate_users) == ("rz-west", "otto")  # the record stays
        assert s.scalars(select(TaskCandidate).where(TaskCandidate.task_id == task.id)).all() == []  # inbox entries go


def test_the_mirror_never_reopens_a_finished_row_nor_gives_it_candidate_entries(org):
    _deploy(org, chain=modelkit.chain(n=2))
    iid = _start(org, "chain")
    (task,) = _open(org, iid)
    with org.transaction() as s:  # a row closed while its task is still READY in the state (history)
        s.get(Task, task.id).state = "withdrawn"
        s.execute(delete(TaskCandidate).where(TaskCandidate.task_id == task.id))
    with org.transaction() as s:  # a save that mirrors the READY task again
        org.runtime(s).set_data(iid, {"note": "x"}, user="lena")
    with org.transaction() as s:
        assert s.get(Task, task.id).state == "withdrawn"
        assert s.scalars(select(TaskCandidate).where(TaskCandidate.task_id == task.id)).all() == []


def test_the_runtime_hands_the_rows_a_completion_opened_to_the_caller_without_a_query(org):
    _deploy(org, chain=modelkit.chain(n=2), split=modelkit.split())
    chain = _start(org, "chain")
    (first,) = _open(org, chain)
    with org.transaction() as s:
        runtime = org.runtime(s)
        runtime.complete(first.id, user="alice", data={})
        statements = []

        def record(_conn, _cursor, statement, *_args):
            statements.append(statement)

        event.listen(org.engine, "before_cursor_execute", record)
        try:
            ((row, pairs),) = runtime.tasks_opened(chain)
            assert (row.element_id, row.state, row.assignee, row.ended_at) == ("t2", "open", None, None)
        finally:
            event.remove(org.engine, "before_cursor_execute", record)
        assert statements == [] and pairs == [("group", "rz-west")]
        assert row is s.get(Task, row.id)  # the session's row: no second copy
    (second,) = _open(org, chain)
    assert second.id == row.id

    split = _start(org, "split")
    a, b = _open(org, split)
    with org.transaction() as s:
        runtime = org.runtime(s)
        runtime.complete(a.id, user="alice", data={})
        assert runtime.tasks_opened(split) is None  # b stays open: the caller asks the database
        runtime.complete(b.id, user="bob", data={})
        ((row, pairs),) = runtime.tasks_opened(split)
        assert row.element_id == "c" and pairs == [("group", "rz-west")]
        assert org.runtime(s).tasks_opened(split) is None  # another runtime knows nothing


def test_a_completion_reads_the_rows_afresh_even_when_the_session_holds_older_ones(org):
    """The lock read (straight from the driver) updates the session's loaded objects as an ORM query with
    populate_existing would: a task someone else completed meanwhile is stale, not open."""
    _deploy(org, chain=modelkit.chain(n=2))
    iid = _start(org, "chain")
    (first,) = _open(org, iid)
    with org.transaction() as s:
        loaded_task, loaded_instance = s.get(Task, first.id), s.get(ProcessInstance, iid)
        assert (loaded_task.state, loaded_instance.lock_version) == ("open", 2)
        s.commit()  # the objects stay loaded (and SQLite lets the other writer in)
        _complete(org, first.id, "bob")
        with pytest.raises(StaleTask):
            org.runtime(s).complete(first.id, user="alice", data={})
        assert s.get(Task, first.id) is loaded_task
        assert (loaded_task.state, loaded_task.completed_by, loaded_instance.lock_version) == ("completed", "bob", 3)
    (second,) = _open(org, iid)
    with org.transaction() as s:
        instance = org.runtime(s).complete(second.id, user="alice", data={})
        assert instance is s.get(ProcessInstance, iid) and instance.definition.key == "chain"
    with org.transaction() as s:
        assert s.get(ProcessInstance, iid).status == "completed"


def test_claim_unclaim_and_hand_over(org):
    _deploy(org, chain=modelkit.chain(n=1))
    iid = _start(org, "chain")
    (task,) = _open(org, iid)
    with org.transaction() as s:
        org.runtime(s).claim(task.id, user="alice")
    with pytest.raises(PermissionDenied):
        _complete(org, task.id, "bob")
    with pytest.raises(StaleTask), org.transaction() as s:
        org.runtime(s).claim(task.id, user="bob")
    with org.transaction() as s:
        org.runtime(s).assign(task.id, assignee="bob", user="alice")
    with pytest.raises(PermissionDenied), org.transaction() as s:
        org.runtime(s).assign(task.id, assignee="otto", user="bob")  # otto is not a candidate
    with org.transaction() as s:
        org.runtime(s).unclaim(task.id, user="bob")
        assert s.get(Task, task.id).assignee is None
    _complete(org, task.id, "bob")


def test_the_inbox_query_returns_exactly_what_a_user_may_work_on(org):
    _deploy(org, chain=modelkit.chain(n=1), approval=modelkit.approval())
    chain_id = _start(org, "chain")
    approval_id = _start(org, "approval", unit="rz-west")
    with org.transaction() as s:
        def inbox(name):
            return sorted((t.instance_id, t.element_id) for t in open_tasks_for_user(s, get_user(s, name)))

        assert inbox("alice") == [(chain_id, "t1"), (approval_id, "request")]
        assert inbox("bob") == [(chain_id, "t1")]
        assert inbox("otto") == []
        assert inbox("carla") == []


def test_messages_reach_a_waiting_instance(org):
    _deploy(org, waiter=modelkit.message_wait())
    iid = _start(org, "waiter")
    assert _open(org, iid) == []
    with pytest.raises(Exception, match="not waiting for message 'other'"), org.transaction() as s:
        org.runtime(s).send_message(iid, "other", user="alice")
    with org.transaction() as s:
        org.runtime(s).send_message(iid, "go", user="alice", payload={"note": "los"})
    (after,) = _open(org, iid)
    assert after.element_id == "after"


def test_cancel_withdraws_open_tasks(org):
    _deploy(org, chain=modelkit.chain(n=2))
    iid = _start(org, "chain")
    (task,) = _open(org, iid)
    with org.transaction() as s:
        org.runtime(s).cancel(iid, user="lena", reason="Doppelt erfasst")
    assert _open(org, iid) == []
    with pytest.raises(StaleTask):
        _complete(org, task.id, "alice")


def test_a_failing_expression_becomes_an_incident_and_retry_runs_it_again(org):
    _deploy(org, calc=modelkit.with_script("calc", "total = price * count"))
    iid = _start(org, "calc", price=5)
    (first,) = _open(org, iid)
    instance = _complete(org, first.id, "alice")
    assert instance.has_incident and instance.status == "running"
    with org.transaction() as s:
        (incident,) = s.scalars(select(Incident)).all()
        assert incident.element_id == "script"
        assert "count" in incident.message
        assert s.get(Task, first.id).state == "completed"  # the person's work is kept
    with org.transaction() as s:
        instance = org.runtime(s).retry(iid, user="lena")
        assert instance.has_incident  # still failing: the data was not fixed
        assert s.scalar(select(Incident.attempt).order_by(Incident.id.desc()).limit(1)) == 2


def test_every_change_is_audited_with_the_changed_keys(org):
    _deploy(org, approval=modelkit.approval())
    iid = _start(org, "approval", unit="rz-west")
    _complete(org, _open(org, iid)[0].id, "alice", amount=10, reason="x")
    with org.transaction() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.instance_id == iid).order_by(AuditEvent.id)).all()
    assert [(e.actor, e.action) for e in events] == [("alice", "start"), ("alice", "complete")]
    assert events[1].changed_keys == "amount,reason"


def test_the_audit_table_refuses_updates_and_deletes(db):
    _deploy(db, chain=modelkit.chain(n=1))
    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement))


def test_unknown_process_and_task_are_not_found(org):
    with pytest.raises(NotFound), org.transaction() as s:
        org.runtime(s).start("nope", user="alice")
    with pytest.raises(NotFound):
        _complete(org, "00000000-0000-0000-0000-000000000000", "alice")


def _deploy_corpus(db, *names):
    from engine.deploy import read_sources
    from tests.conftest import CORPUS

    with db.transaction() as s:
        return deploy(s, read_sources([CORPUS / "camunda-examples" / n for n in names]), user="carla",
                      now=db.clock.now())


def test_start_data_is_validated_against_the_start_events_inline_form(org):
    _deploy_corpus(org, "loanApproval.bpmn")
    with pytest.raises(ValidationFailed) as info, org.transaction() as s:
        org.runtime(s).start("generatedFormsQuickstart", user="alice", data={"firstname": "x" * 30})
    assert {"firstname", "lastname"} <= set(info.value.errors)
    with org.transaction() as s:
        instance = org.runtime(s).start("generatedFormsQuickstart", user="alice", data={
            "firstname": "Ada", "lastname": "Lovelace", "netIncome": 100, "loanAmount": 5, "loanType": "mortage"})
        assert instance.status == "running"


def test_camunda_forms_referenced_by_form_key_are_deployed_and_enforced(org):
    result = _deploy_corpus(org, "invoiceApproval.bpmn", "start-form.form", "task-form.form")
    (definition,) = result.created
    assert definition.start_form == "start-form"
    with pytest.raises(ValidationFailed), org.transaction() as s:
        org.runtime(s).start("camundaFormsQuickstart", user="alice", data={"creditor": "ACME", "bogus": 1})
    with org.transaction() as s:
        iid = org.runtime(s).start("camundaFormsQuickstart", user="alice", data={
            "creditor": "Great Pizza for Everyone Inc.", "amount": "30", "invoiceNumber": "C-23232323"}).id
    with org.transaction() as s:
        (task,) = s.scalars(select(Task).where(Task.instance_id == iid, Task.state == "open")).all()
    assert task.form_ref == "task-form"
    with org.transaction() as s:
        identity.add_user(s, "demo", now=org.clock.now())
    with pytest.raises(ValidationFailed):
        _complete(org, task.id, "demo", approved="maybe", undeclared=True)


def test_running_a_case_logs_no_case_data_whatever_the_log_level(org, caplog):
    """SpiffWorkflow would log each state change with the task's data; logs must never hold case data."""
    caplog.set_level(logging.DEBUG)  # the root logger and pytest's handler take everything
    _deploy(org, chain=modelkit.chain(n=2))
    iid = _start(org, "chain", client_name="Erika Mustermann")
    (task,) = _open(org, iid)
    _complete(org, task.id, "alice", notes="vertrauliche Angabe")
    logged = [json.dumps(vars(r), default=str) + r.getMessage() for r in caplog.records]
    assert not [line for line in logged if "Mustermann" in line or "vertrauliche" in line]
    assert not [r for r in caplog.records if r.name.startswith("spiff") and r.levelno < logging.WARNING]


def test_data_with_the_stored_states_type_marker_is_refused_wherever_it_comes_in(org):
    """SpiffWorkflow marks typed values in the stored state with a "typename" key: case data with that key
    made the case impossible to restore. Start data, task data, message payloads and set data are refused,
    at any depth, and nothing is stored."""
    _deploy(org, chain=modelkit.chain(n=2), waiter=modelkit.message_wait())
    with org.transaction() as s:
        before = s.scalar(select(func.count()).select_from(ProcessInstance))
    with pytest.raises(ValidationFailed) as refused:
        _start(org, "chain", typename="Beratung")
    assert refused.value.errors == {"typename": ["'typename' is reserved for the engine's stored values"]}
    with org.transaction() as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == before
    iid = _start(org, "chain")
    (task,) = _open(org, iid)
    with pytest.raises(ValidationFailed) as refused:
        _complete(org, task.id, "alice", people=[{"name": "A", "typename": "x"}])
    assert list(refused.value.errors) == ["people[0].typename"]
    with pytest.raises(ValidationFailed), org.transaction() as s:
        org.runtime(s).set_data(iid, {"note": {"typename": "datetime", "value": "2026-01-01"}}, user="lena")
    waiting = _start(org, "waiter")
    with pytest.raises(ValidationFailed), org.transaction() as s:
        org.runtime(s).send_message(waiting, "go", user="alice", payload={"typename": "x"})
    (still,) = _open(org, iid)
    assert still.id == task.id
    _complete(org, task.id, "alice", note="weiter")  # the case goes on
    _reload_equal(org, iid)


def test_a_mapping_with_a_type_marker_is_refused_at_save_and_an_old_stored_one_restores_as_data(org):
    """Stored, a mapping of case data with a "typename" key at any depth would be taken for a typed value
    (or fail to restore): the save refuses it at the task that has it. A state that an earlier release
    stored with one restores it as the data it was."""
    _deploy(org, chain=modelkit.chain(n=2))
    iid = _start(org, "chain")
    art = {"typename": "Beratung", "n": [1, {"typename": 2}], "when": {"typename": "datetime"}}
    with org.transaction() as s:
        workflow = org.runtime(s).load_workflow(s.get(ProcessInstance, iid))
        task = workflow.get_tasks(state=TaskState.READY)[0]
        task.data["art"] = art
        with pytest.raises(ModelError, match=r"art\.typename: 'typename' is reserved .*\(and 2 more\)") as refused:
            serialization.dump_state(workflow)
        assert refused.value.element_id == task.task_spec.bpmn_id
        del task.data["art"]
        stored = json.loads(serialization.dump_state(workflow))
        stored["tasks"][str(task.id)]["data"]["art"] = art
        restored = serialization.load_state(json.dumps(stored), workflow.spec, workflow.subprocess_specs)
    assert restored.get_task_from_id(task.id).data["art"] == art


def test_a_loop_run_far_more_than_a_thousand_task_levels_deep_keeps_going():
    """SpiffWorkflow's task tree walks stopped at depth 1,000: after 500 rounds of a two-element loop the
    workflow saw no current task and took itself for completed (engine.spiff_fixes lifts the limit)."""
    from SpiffWorkflow.bpmn import BpmnWorkflow

    from engine.check import check_sources

    body = "\n".join([
        '<bpmn:startEvent id="start" />', modelkit.user_task("session", "Sitzung"),
        '<bpmn:exclusiveGateway id="more" default="f_again" />', '<bpmn:endEvent id="end" />',
        modelkit.flow("f1", "start", "session"), modelkit.flow("f2", "session", "more"),
        modelkit.flow("f_done", "more", "end", "done == True"), modelkit.flow("f_again", "more", "session"),
    ])
    workflow = BpmnWorkflow(check_sources({"loop.bpmn": modelkit.definitions("loop", body)}).processes["loop"].spec)
    workflow.do_engine_steps()
    rounds = 600
    for round_ in range(rounds):
        assert not workflow.is_completed(), f"taken for completed after {round_} rounds"
        (session,) = workflow.get_tasks(state=TaskState.READY, manual=True)
        session.data["done"] = round_ == rounds - 1
        session.run()
        workflow.do_engine_steps()
    assert workflow.is_completed() and workflow.get_tasks(state=TaskState.COMPLETED, spec_name="end")


def test_data_nested_deeper_than_a_case_can_be_restored_is_refused(org):
    """Restoring walks the data recursively: start data nested 900 levels deep was stored, and the case
    could then never be loaded again. Incoming data may nest 32 levels."""
    _deploy(org, chain=modelkit.chain(n=2))
    deep: dict = {"leaf": 1}
    for _ in range(900):
        deep = {"a": deep}
    with pytest.raises(ValidationFailed) as refused:
        _start(org, "chain", x=deep)
    ((path, messages),) = refused.value.errors.items()
    assert path == "x" + ".a" * 32 and messages == ["nested more than 32 levels deep"]
    fine: dict = {"leaf": 1}
    for _ in range(30):
        fine = {"a": fine}
    iid = _start(org, "chain", x=fine)
    (task,) = _open(org, iid)
    _complete(org, task.id, "alice")
    _reload_equal(org, iid)
