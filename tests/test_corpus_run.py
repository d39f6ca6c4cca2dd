"""Every executable model of the camunda-examples and spiffworkflow corpus, run through the engine.

Each case deploys the model (with the files of its folder that it needs), starts it, and drives it
(tests/corpus_driver.py): tasks completed with data valid for their forms or with the values the table
gives, messages sent, timers fired by moving the clock and running the worker. The stored state is
restored between acts and must dump identically. The table says how each must end: COMPLETED at a
named end event after named activities ran (never straight after its start event), a clear FINDING at
deploy time, or an INCIDENT with a clear message. docs/corpus-results.md lists the outcomes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.corpus_driver import (
    COMPLETED,
    FINDING,
    INCIDENT,
    Case,
    Database,
    Message,
    drive,
    drive_in_temp_sqlite,
)

CE = "camunda-examples/"
SW = "spiffworkflow/"

CASES: list[Case] = [
    # --- camunda-examples -------------------------------------------------------------------------
    Case(CE + "camunda-testing-job-announcement-publication.bpmn", "camunda-testing-job-announcement-publication",
         COMPLETED, end="Event_087qk1c",
         through=("publish_announcement_website", "publish_announcement_twitter"),
         data={"jobAnnouncementId": 1, "twitter": True, "facebook": False}),
    Case(CE + "camunda-testing-job-announcement.bpmn", "camunda-testing-job-announcement", FINDING,
         element="review", match=r"method call 'jobAnnouncementService\.findRequester",
         with_files=("camunda-testing-job-announcement-publication.bpmn",)),
    Case(CE + "instantiating_process.bpmn", "Instantiating_Process", COMPLETED, end="EndEvent_1",
         through=("ServiceTask_1", "UserTask_1")),
    Case(CE + "invoiceApproval.bpmn", "camundaFormsQuickstart", COMPLETED, end="EndEvent_1",
         through=("UserTask_1",), with_files=("start-form.form", "task-form.form"),
         data={"creditor": "Acme", "amount": "30", "invoiceNumber": "C-123"},
         answers={"UserTask_1": {"approved": "true", "approvedBy": "demo"}}),
    Case(CE + "invoicePayment.bpmn", "embeddedFormsBpmnEvents", COMPLETED, end="EndEvent_1ug8ljt",
         through=("Task_16y91ka",)),
    Case(CE + "loan-granting.bpmn", "loan_process", FINDING, element="StartEvent_1", match=r"cron cycles"),
    Case(CE + "loanApproval.bpmn", "generatedFormsQuickstart", COMPLETED, end="EndEvent_1", through=("UserTask_1",),
         data={"firstname": "Ada", "lastname": "Lovelace", "netIncome": 5000, "loanAmount": 1000,
               "loanType": "mortage"},
         answers={"UserTask_1": {"approved": True}}),
    Case(CE + "mainProcess.bpmn", "mainProcess", COMPLETED, end="EndEvent_0pf67o7",
         through=("CallActivity_0ahffuc", "UserTask_0zlyiaz"), with_files=("subProcess.bpmn",)),
    Case(CE + "message_start_process.bpmn", "Message_Start_Process", COMPLETED, end="EndEvent_1",
         through=("StartEvent_1", "UserTask_1"), messages=(Message("instantiationMessage", {"origin": "test"}),)),
    Case(CE + "order-handling.bpmn", "Order_Process", FINDING, element="StartEvent_1", match=r"cron cycles"),
    Case(CE + "process.bpmn", "testProcess", FINDING, element="scriptTask", match=r"script format 'groovy'"),
    Case(CE + "subProcess.bpmn", "subProcess", COMPLETED, end="EndEvent_09z3uwr", through=("UserTask_0zlyiaz",)),
    # --- spiffworkflow ----------------------------------------------------------------------------
    Case(SW + "CallActivity-Escalation-Test-Sub.bpmn20.xml", "CallActivity-Escalation-Test-Sub", FINDING,
         element="SequenceFlow_0expyhf", match=r"forbidden name 'vars'"),
    Case(SW + "CallActivity-Escalation-Test.bpmn20.xml", "CallActivity-Escalation-Test", FINDING,
         element="SequenceFlow_0expyhf", match=r"forbidden name 'vars'",
         with_files=("CallActivity-Escalation-Test-Sub.bpmn20.xml",)),
    Case(SW + "DMNMultiInstance.bpmn", "Process_1", COMPLETED, end="EndEvent_0n32cxd",
         through=("Activity_0qh0jpg", "Task_067fajl"), with_files=("test_integer_decision.dmn",), data={"x": 3}),
    Case(SW + "ExclusiveGatewayIfElseAndDecision.bpmn", "Process_1", COMPLETED, end="EndEvent_0n32cxd",
         through=("TaskDecision",), with_files=("test_integer_decision.dmn",), data={"x": 4}),
    Case(SW + "MessageBoundary.bpmn", "Process_1kjyavs", COMPLETED, end="Event_0l8sadb",
         through=("Activity_Interrupt", "Event_0g8w85g"),
         answers={"Activity_Interrupt": [{"interrupt_task": "No"}, {"interrupt_task": "Yes"}]}),
    Case(SW + "MessageBoundary.bpmn", "Process_0srqcj1", COMPLETED, end="Event_0j702hl",
         through=("Activity_106f08z", "Event_0aqmn5y", "Event_InterruptBoundary"),
         messages=(Message("Message_Interrupt", {"reason": "Interrupt!"}, after=2),)),
    Case(SW + "boundary.bpmn", "boundary_event", COMPLETED, end="Event_000aj7r",
         through=("Activity_09c27ms", "Event_0iiih8g", "Activity_1ya1db2", "StopCar"),
         timers_first=True),
    Case(SW + "call_activity_level_2.bpmn", "Level2", FINDING, element="Activity_12zat0d",
         match=r"calls its own process 'Level3'", with_files=("call_activity_level_3.bpmn",)),
    Case(SW + "call_activity_level_2b.bpmn", "Level2", COMPLETED, end="Event_18dla68", through=("Activity_16ayqi8",)),
    Case(SW + "call_activity_level_3.bpmn", "Level3", FINDING, element="Activity_12zat0d",
         match=r"calls its own process 'Level3'"),
    Case(SW + "call_activity_nested.bpmn", "Level1", FINDING, element="Activity_0rkbhbz",
         match=r"called process 'Level2b' was not found",
         with_files=("call_activity_level_2b.bpmn", "level2c.dmn")),
    Case(SW + "call_activity_with_message.bpmn", "Subprocess", COMPLETED, end="Event_03uwwnb",
         through=("Activity_EnterPlan", "Event_Send_Approval_Request", "Event_Get_Approval_Response"),
         messages=(Message("ApprovalResponse", {"Approved": "Yes"}, after=1),)),
    Case(SW + "call_activity_with_message_parent.bpmn", "Process_0xeaemr", COMPLETED, end="Event_EndEvent1",
         through=("Event_Get_Approval_Request", "Activity_ApproveOrDeny", "Event_Send_Approval_Response"),
         messages=(Message("ApprovalRequest", {"plan_details": "Plan A"}),),
         answers={"Activity_ApproveOrDeny": {"approved": "Yes"}}, with_files=("call_activity_with_message.bpmn",)),
    Case(SW + "call_activity_with_message_parent.bpmn", "Process_0vpmpb9", COMPLETED, end="Event_EndEvent2",
         through=("Activity_RequestApproval", "Activity_EnterPlan", "Activity_EnablePlan"),
         with_files=("call_activity_with_message.bpmn",),
         messages=(Message("ApprovalResponse", {"Approved": "Yes"}, after=1),)),
    Case(SW + "collaboration.bpmn", "process_buddy", COMPLETED, end="Event_01h5zqa",
         through=("ActivitySendLetter", "EventReceiveLetter"), data={"lover_name": "Peggy"},
         messages=(Message("Love Letter Response", {"from_name": "Peggy"}),)),
    Case(SW + "conditional_event.bpmn", "intermediate", COMPLETED, end="end_1",
         through=("task_a", "task_b", "event_1"), data={"task_a_done": True}),
    Case(SW + "conditional_event.bpmn", "boundary", COMPLETED, end="end_2",
         through=("task_c", "event_2"), data={"task_c_done": True}),
    Case(SW + "correlation.bpmn", "proc_1", COMPLETED, end="Event_0qga5tr",
         through=("configure", "start_proc_2", "get_response"), data={"task_num": 1},
         messages=(Message("proc_2_response", {"init_id": 1}), Message("proc_2_response", {"init_id": 1}))),
    Case(SW + "correlation.bpmn", "proc_2", COMPLETED, end="Event_01itene", through=("rename_id", "respond"),
         messages=(Message("init_proc_2", {"task_num": 1}),), answers={"rename_id": {"init_id": 1}}),
    Case(SW + "event-gateway.bpmn", "Process_0pvx19v", COMPLETED, end="message_1_end",
         through=("Gateway_1434v9l", "message_1_event"), messages=(Message("message_1", {"choice": 1}),)),
    Case(SW + "event-subprocess.bpmn", "main", COMPLETED, end="Event_03f19jy", through=("set_data", "task")),
    Case(SW + "external_message.bpmn", "Process_1iggtmi", FINDING, element="Activity_1n8ighs",
         match=r"script format 'reset'"),
    Case(SW + "inclusive_gateway.bpmn", "main", COMPLETED, end="Event_05yg5je",
         through=("set_data", "u_plus_v", "w_plus_v"), answers={"set_data": {"u": 1, "v": 0, "w": 1}}),
    Case(SW + "io_spec.bpmn", "subprocess", COMPLETED, end="Event_0pgucu1", through=("Activity_04d94ee",),
         data={"in_1": 1, "in_2": "hello world"}),
    Case(SW + "io_spec_parent.bpmn", "parent", COMPLETED, end="Event_1q277cc",
         through=("Activity_0haob58", "Activity_1wdjypm", "Activity_04d94ee"), with_files=("io_spec.bpmn",)),
    Case(SW + "lanes.bpmn", "lanes", COMPLETED, end="Event_07pakcl",
         through=("Activity_A1", "Activity_B1", "Implement_Feature", "SubProcessTask")),
    Case(SW + "message_test.bpmn", "ThrowCatch", COMPLETED, end="Event_EndEvent2",
         through=("StartApprovalProcess", "Activity_ApproveOrDeny", "SendDecision"),
         messages=(Message("ApprovalRequest", {"plan_details": "Plan A"}),),
         answers={"Activity_ApproveOrDeny": {"approved": "Yes"}}),
    Case(SW + "message_test.bpmn", "Process_05r9nfx", COMPLETED, end="Event_EndEvent1",
         through=("Activity_EnterPlan", "SendApprovalRequest", "GetDecision", "Activity_EnablePlan"),
         messages=(Message("Approval", {"ApprovalResult": "Yes"}, after=1),)),
    Case(SW + "noninterrupting-MessageBoundary.bpmn", "Process_1kjyavs", COMPLETED, end="Event_0l8sadb",
         through=("Activity_WorkLate", "Event_0g8w85g"), answers={"Activity_WorkLate": {"flag_task": "Yes"}}),
    Case(SW + "noninterrupting-MessageBoundary.bpmn", "Process_1k0py56", COMPLETED, end="Event_1w6cide",
         through=("Activity_DoWork", "Event_InterruptBoundary", "Activity_WorkLateReason", "Activity_WorkCompleted"),
         messages=(Message("Message_Tardy", {"note": "Youre late!"}, after=1),),
         answers={"Activity_DoWork": [{"work_done": "No"}, {"work_done": "Yes"}]}),
    Case(SW + "parallel_multiinstance_collection.bpmn", "main", COMPLETED, end="Event_1xk7z3g",
         through=("any_task",), data={"input_data": [1, 2, 3]}),
    Case(SW + "random_fact.bpmn", "random_fact", FINDING, element="Task_Get_Fact_From_API",
         match=r"camunda:inputOutput is not run"),
    Case(SW + "sequential_multiinstance_loop_input.bpmn", "main", FINDING, element="any_task",
         match=r"loopDataInputRef is not supported"),
    Case(SW + "standard_loop.bpmn", "main", COMPLETED, end="Event_1xk7z3g", through=("any_task",),
         data={"done": False}),
    Case(SW + "subWorkflowComplex.bpmn", "SubWorkflow", COMPLETED, end="End_Event_1",
         through=("Activity_A", "Activity_A1", "Activity_A2", "Activity_B")),
    Case(SW + "timer-cycle.bpmn", "timer", INCIDENT, element="Refill_Coffee", match=r"custom_function",
         timers_first=True),
    Case(SW + "timer-non-interrupt-boundary.bpmn", "NonInterruptTimer", COMPLETED, end="Event_17ly1lc",
         through=("Activity_Work", "Event_0jyy8ao", "GetReason"), timers_first=True,
         answers={"Activity_Work": {"work_done": "Yes"}}),
    Case(SW + "token_trial_parallel_simple.bpmn", "token_trial_parallel_simple", FINDING,
         element="UserTask_0fd3nql.StaffInteractions", match=r"form field type 'textarea' is not supported"),
    Case(SW + "transaction.bpmn", "Main_Process", COMPLETED, end="End_Event",
         through=("Activity_Get_Data", "Activity_Get_Quantity", "Activity_Print_Data"),
         answers={"Activity_Get_Data": {"value": "data"}, "Activity_Get_Quantity": {"quantity": 5}}),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corpus_model_runs_to_its_expected_end(case: Case, sqlite_template, workdir):
    run = drive_in_temp_sqlite(case, sqlite_template, workdir)
    assert_outcome(case, run)


def assert_outcome(case: Case, run) -> None:
    assert run.outcome == case.expect, f"{case.id}: {run.summary()} (acts: {run.acts})"
    if case.expect == COMPLETED:
        assert run.reloads >= 1
        assert case.end in run.end_events, f"{case.id}: ended at {run.end_events}"
        assert case.through, "a completed case names the activities it must run"
        missing = [e for e in case.through if e not in run.completed]
        assert not missing, f"{case.id}: never ran {missing}; ran {run.completed}"
    elif case.expect == FINDING:
        errors = [f for f in run.findings if f.severity == "error"]
        assert any(f.element_id == case.element and re.search(case.match, f.message) for f in errors), \
            f"{case.id}: findings {[str(f) for f in errors]}"
    else:
        assert run.reloads >= 1
        assert any(e == case.element and re.search(case.match, m) for e, m in run.incidents), \
            f"{case.id}: incidents {run.incidents}"


@pytest.mark.postgres
def test_a_corpus_model_runs_on_postgresql(postgres_url):
    from tests.conftest import _truncate_postgres

    case = next(c for c in CASES if c.id == "call_activity_with_message_parent.bpmn::Process_0vpmpb9")
    database = Database(postgres_url)
    try:
        assert_outcome(case, drive(case, database))
    finally:
        _truncate_postgres(database.engine)
        database.dispose()


# --- engine faults the corpus run found, pinned down on small models ----------------------------------
def test_a_message_is_not_caught_by_an_event_the_instance_has_not_reached(org):
    """SpiffWorkflow's SimpleTaskConverter restored FUTURE catch events as waiting (correlation.bpmn)."""
    from sqlalchemy import select

    from engine.deploy import deploy
    from engine.errors import FallwerkError
    from engine.models import Task
    from tests import modelkit

    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        modelkit.user_task("first", "Erfassen"),
        '<bpmn:intermediateCatchEvent id="wait"><bpmn:messageEventDefinition id="med" messageRef="Msg_go" />'
        "</bpmn:intermediateCatchEvent>",
        modelkit.user_task("after", "Weiter"),
        '<bpmn:endEvent id="end" />',
        modelkit.flow("f1", "start", "first"), modelkit.flow("f2", "first", "wait"),
        modelkit.flow("f3", "wait", "after"), modelkit.flow("f4", "after", "end"),
    ])
    model = modelkit.definitions("early", body, '<bpmn:message id="Msg_go" name="go" />\n')
    with org.transaction() as s:
        deploy(s, {"early.bpmn": model}, user="carla", now=org.clock.now())
    with org.transaction() as s:
        iid = org.runtime(s).start("early", user="alice").id

    def open_elements():
        with org.transaction() as s:
            return [t.element_id for t in s.scalars(select(Task).where(Task.instance_id == iid,
                                                                       Task.state == "open"))]

    with pytest.raises(FallwerkError, match="not waiting for message 'go'"), org.transaction() as s:
        org.runtime(s).send_message(iid, "go", user="alice")
    with org.transaction() as s:
        first = s.scalars(select(Task).where(Task.instance_id == iid, Task.state == "open")).one()
        org.runtime(s).complete(first.id, user="alice")
    assert open_elements() == []  # it waits for the message, it did not run past it
    with org.transaction() as s:
        org.runtime(s).send_message(iid, "go", user="alice")
    assert open_elements() == ["after"]


def test_the_inbox_lists_due_tasks_first_then_undated_ones_by_priority(org):
    """engine.queries orders with NULLS LAST (so PostgreSQL can use the (state, due_at) index; bench/engine.py)."""
    from engine.deploy import deploy
    from engine.identity import get_user
    from engine.queries import open_tasks_for_user
    from tests import modelkit

    tasks = {"later": 'camunda:dueDate="P3D"', "sooner": 'camunda:dueDate="P1D"',
             "urgent": 'camunda:priority="80"', "whenever": 'camunda:priority="20"'}
    body = ['<bpmn:startEvent id="start" />', '<bpmn:parallelGateway id="split" />',
            '<bpmn:parallelGateway id="join" />', '<bpmn:endEvent id="end" />',
            modelkit.flow("f0", "start", "split"), modelkit.flow("f9", "join", "end")]
    for tid, attrs in tasks.items():
        body += [modelkit.user_task(tid, tid, f'camunda:candidateGroups="rz-west" {attrs}'),
                 modelkit.flow(f"in_{tid}", "split", tid), modelkit.flow(f"out_{tid}", tid, "join")]
    with org.transaction() as s:
        deploy(s, {"order.bpmn": modelkit.definitions("order", "\n".join(body))}, user="carla", now=org.clock.now())
    with org.transaction() as s:
        org.runtime(s).start("order", user="alice")
    with org.transaction() as s:
        inbox = [t.element_id for t in open_tasks_for_user(s, get_user(s, "bob"))]
    assert inbox == ["sooner", "later", "urgent", "whenever"]
