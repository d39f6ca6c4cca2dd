"""FallwerkParser: Camunda attributes, translation at parse time, and the stock parser's silent failures."""

import pytest
from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.task import TaskState

from engine.parser import FallwerkParser

HEAD = (
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="defs" targetNamespace="t">'
)


def bpmn(body: str, pid: str = "p", extra: str = "") -> bytes:
    process = f'<bpmn:process id="{pid}" isExecutable="true">{body}</bpmn:process>'
    return f"{HEAD}{process}{extra}</bpmn:definitions>".encode()


def parser_for(*documents: bytes, dmn: tuple[bytes, ...] = ()) -> FallwerkParser:
    parser = FallwerkParser()
    for i, doc in enumerate(dmn):
        parser.add_dmn_xml(etree.fromstring(doc), filename=f"d{i}.dmn")
    for i, doc in enumerate(documents):
        parser.add_bpmn_xml(etree.fromstring(doc), filename=f"f{i}.bpmn")
    return parser


def workflow(*documents: bytes, pid: str = "p", dmn: tuple[bytes, ...] = ()) -> BpmnWorkflow:
    parser = parser_for(*documents, dmn=dmn)
    return BpmnWorkflow(parser.get_spec(pid), parser.get_subprocess_specs(pid))


def complete_user_tasks(wf: BpmnWorkflow, data: dict | None = None) -> list[str]:
    done = []
    wf.do_engine_steps()
    for _ in range(20):
        ready = wf.get_tasks(state=TaskState.READY, manual=True)
        if not ready:
            break
        for task in ready:
            task.data.update(data or {})
            task.run()
            done.append(task.task_spec.bpmn_id)
        wf.do_engine_steps()
    return done


USER_TASK = """
<bpmn:laneSet><bpmn:lane id="l1" name="Beratung"><bpmn:flowNodeRef>ut</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet>
<bpmn:startEvent id="s"/>
<bpmn:userTask id="ut" name="Erstgespräch" camunda:assignee="${initiator}"
    camunda:candidateGroups="${unit}:lead, lks" camunda:candidateUsers=" anna,bert "
    camunda:dueDate="${due}" camunda:followUpDate="P1D" camunda:priority="70"
    camunda:formRef="consultation" camunda:formRefBinding="latest">
  <bpmn:extensionElements>
    <camunda:properties><camunda:property name="personal" value="true"/></camunda:properties>
    <camunda:formData>
      <camunda:formField id="topic" label="Thema" type="string" defaultValue="x"/>
    </camunda:formData>
  </bpmn:extensionElements>
</bpmn:userTask>
<bpmn:endEvent id="e"/>
<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="ut"/>
<bpmn:sequenceFlow id="f2" sourceRef="ut" targetRef="e"/>
"""


def test_user_task_camunda_attributes_are_captured():
    spec = parser_for(bpmn(USER_TASK)).get_spec("p")
    task = spec.task_specs["ut"]
    camunda = task.extensions["camunda"]
    assert camunda["assignee"] == "${initiator}"
    assert camunda["candidateGroups"] == ["${unit}:lead", "lks"]
    assert camunda["candidateUsers"] == ["anna", "bert"]
    assert camunda["dueDate"] == "${due}"
    assert camunda["followUpDate"] == "P1D"
    assert camunda["priority"] == "70"
    assert camunda["formRef"] == "consultation"
    assert camunda["formRefBinding"] == "latest"
    assert camunda["lane"] == "Beratung" == task.lane
    assert task.extensions["personal"] == "true"  # camunda:properties are kept
    # inline form fields work without formKey
    assert task.form.key is None
    assert [f.id for f in task.form.fields] == ["topic"]


def test_extensions_survive_serialization():
    wf = workflow(bpmn(USER_TASK))
    from engine.serialization import SERIALIZER

    restored = SERIALIZER.deserialize_json(SERIALIZER.serialize_json(wf))
    camunda = restored.spec.task_specs["ut"].extensions["camunda"]
    assert camunda["candidateGroups"] == ["${unit}:lead", "lks"]


FLOWS_WITHOUT_ID = """
<bpmn:startEvent id="s"/>
<bpmn:scriptTask id="a" scriptFormat="python"><bpmn:script>a_ran = True</bpmn:script></bpmn:scriptTask>
<bpmn:userTask id="u"/>
<bpmn:endEvent id="e"/>
<bpmn:sequenceFlow sourceRef="s" targetRef="a"/>
<bpmn:sequenceFlow sourceRef="a" targetRef="u"/>
<bpmn:sequenceFlow sourceRef="u" targetRef="e"/>
"""


def test_sequence_flows_without_id_get_generated_ids_and_run_fully():
    wf = workflow(bpmn(FLOWS_WITHOUT_ID))
    wf.do_engine_steps()
    assert not wf.completed  # the stock parser "completes" right after the start event
    assert [t.task_spec.bpmn_id for t in wf.get_tasks(state=TaskState.READY, manual=True)] == ["u"]
    assert complete_user_tasks(wf) == ["u"]
    assert wf.completed and wf.last_task.data["a_ran"] is True


def test_generated_ids_are_stable():
    root1, root2 = etree.fromstring(bpmn(FLOWS_WITHOUT_ID)), etree.fromstring(bpmn(FLOWS_WITHOUT_ID))
    FallwerkParser().add_bpmn_xml(root1)
    FallwerkParser().add_bpmn_xml(root2)
    ids = [f.get("id") for f in root1.iter("{*}sequenceFlow")]
    assert ids == [f.get("id") for f in root2.iter("{*}sequenceFlow")]
    assert ids == ["__generated_sequenceFlow_1", "__generated_sequenceFlow_2", "__generated_sequenceFlow_3"]


def test_flow_node_without_id_is_rejected():
    body = '<bpmn:startEvent id="s"/><bpmn:task name="lost"/><bpmn:endEvent id="e"/>' \
           '<bpmn:sequenceFlow id="f" sourceRef="s" targetRef="e"/>'
    with pytest.raises(ValidationException, match="without id"):
        parser_for(bpmn(body))


TIMER = """
<bpmn:startEvent id="s"/>
<bpmn:intermediateCatchEvent id="wait">
  <bpmn:timerEventDefinition><bpmn:timeDuration>{value}</bpmn:timeDuration></bpmn:timerEventDefinition>
</bpmn:intermediateCatchEvent>
<bpmn:endEvent id="e"/>
<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="wait"/>
<bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="e"/>
"""


@pytest.mark.parametrize("value", ["PT0S", '"PT0S"', "${wait_for}"])
def test_bare_iso_timer_runs_with_stock_workflow(value):
    spec = parser_for(bpmn(TIMER.format(value=value))).get_spec("p")
    assert spec.task_specs["wait"].event_definition.expression in ('"PT0S"', "wait_for")
    wf = BpmnWorkflow(spec)
    wf.data["wait_for"] = "PT0S"
    wf.get_tasks(state=TaskState.READY)[0].data["wait_for"] = "PT0S"
    wf.do_engine_steps()
    wf.refresh_timers()
    wf.do_engine_steps()
    assert wf.completed


def test_cron_timer_is_rejected():
    body = TIMER.format(value="0/5 0/1 * 1/1 * ?").replace("timeDuration", "timeCycle")
    with pytest.raises(ValidationException, match="cron cycles are not supported"):
        parser_for(bpmn(body)).get_spec("p")


GATEWAY = """
<bpmn:startEvent id="s"/>
<bpmn:exclusiveGateway id="g" default="f_other"/>
<bpmn:scriptTask id="yes"><bpmn:script>path = 'yes'</bpmn:script></bpmn:scriptTask>
<bpmn:scriptTask id="no"><bpmn:script>path = 'no'</bpmn:script></bpmn:scriptTask>
<bpmn:scriptTask id="other"><bpmn:script>path = 'other'</bpmn:script></bpmn:scriptTask>
<bpmn:endEvent id="e"/>
<bpmn:sequenceFlow id="f0" sourceRef="s" targetRef="g"/>
<bpmn:sequenceFlow id="f_yes" sourceRef="g" targetRef="yes">
  <bpmn:conditionExpression>${approved &amp;&amp; comment != 'a &amp;&amp; b'}</bpmn:conditionExpression>
</bpmn:sequenceFlow>
<bpmn:sequenceFlow id="f_no" sourceRef="g" targetRef="no">
  <bpmn:conditionExpression>#{!approved and not empty comment}</bpmn:conditionExpression>
</bpmn:sequenceFlow>
<bpmn:sequenceFlow id="f_other" sourceRef="g" targetRef="other"/>
<bpmn:sequenceFlow id="f1" sourceRef="yes" targetRef="e"/>
<bpmn:sequenceFlow id="f2" sourceRef="no" targetRef="e"/>
<bpmn:sequenceFlow id="f3" sourceRef="other" targetRef="e"/>
"""


@pytest.mark.parametrize(
    ("data", "path"),
    [({"approved": True, "comment": "ok"}, "yes"), ({"approved": False, "comment": "why"}, "no"),
     ({"approved": False, "comment": ""}, "other"), ({"approved": True, "comment": "a && b"}, "other")],
)
def test_juel_gateway_conditions_run(data, path):
    wf = workflow(bpmn(GATEWAY))
    wf.get_tasks(state=TaskState.READY)[0].data.update(data)
    wf.do_engine_steps()
    assert wf.completed and wf.last_task.data["path"] == path


def test_unsupported_condition_is_a_validation_error_with_the_flow():
    body = GATEWAY.replace("#{!approved and not empty comment}", "${execution.getVariable('x')}")
    with pytest.raises(ValidationException) as info:
        parser_for(bpmn(body)).get_spec("p")
    assert info.value.id == "f_no" and "method call" in str(info.value)


def test_message_without_name_is_rejected():
    body = """<bpmn:startEvent id="s"/>
    <bpmn:intermediateCatchEvent id="c"><bpmn:messageEventDefinition messageRef="m"/></bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="e"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="c"/>
    <bpmn:sequenceFlow id="f2" sourceRef="c" targetRef="e"/>"""
    with pytest.raises(ValidationException, match="has no name"):
        parser_for(bpmn(body, extra='<bpmn:message id="m"/>')).get_spec("p")


def test_business_rule_task_without_decision_ref_is_a_validation_error():
    body = """<bpmn:startEvent id="s"/><bpmn:businessRuleTask id="b"/><bpmn:endEvent id="e"/>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="b"/><bpmn:sequenceFlow id="f2" sourceRef="b" targetRef="e"/>"""
    parser = parser_for(bpmn(body))  # the stock parser raises KeyError already here
    with pytest.raises(ValidationException, match="decisionRef"):
        parser.get_spec("p")


DMN_TWO_DECISIONS = b"""<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" name="d"
  namespace="x">
  <decision id="first" name="First">
    <decisionTable id="t1">
      <input id="i1" label="x"><inputExpression id="ie1" typeRef="integer"><text>x</text></inputExpression></input>
      <output id="o1" name="result" typeRef="string"/>
      <rule id="r1"><inputEntry><text>1</text></inputEntry><outputEntry id="oe1"><text>"one"</text></outputEntry></rule>
      <rule id="r2"><inputEntry id="ie2"><text>-</text></inputEntry>
        <outputEntry id="oe2"><text>"many"</text></outputEntry></rule>
    </decisionTable>
  </decision>
  <decision id="second" name="Second">
    <decisionTable id="t2">
      <input id="i2" label="x"><inputExpression id="ie3" typeRef="integer"><text>x</text></inputExpression></input>
      <output id="o2" name="second" typeRef="string"/>
      <rule id="r3"><inputEntry id="ie4"><text>-</text></inputEntry>
        <outputEntry id="oe3"><text>"two"</text></outputEntry></rule>
    </decisionTable>
  </decision>
</definitions>"""

BUSINESS_RULES = """<bpmn:startEvent id="s"/>
<bpmn:businessRuleTask id="b1" camunda:decisionRef="first"/>
<bpmn:businessRuleTask id="b2" camunda:decisionRef="second"/>
<bpmn:endEvent id="e"/>
<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="b1"/>
<bpmn:sequenceFlow id="f2" sourceRef="b1" targetRef="b2"/>
<bpmn:sequenceFlow id="f3" sourceRef="b2" targetRef="e"/>"""


def test_every_decision_of_a_dmn_file_is_usable_and_entries_without_id_work():
    wf = workflow(bpmn(BUSINESS_RULES), dmn=(DMN_TWO_DECISIONS,))
    wf.get_tasks(state=TaskState.READY)[0].data["x"] = 1
    wf.do_engine_steps()
    assert wf.completed
    assert wf.last_task.data["result"] == "one" and wf.last_task.data["second"] == "two"


CALL = """<bpmn:startEvent id="s"/><bpmn:callActivity id="c" calledElement="{called}"/><bpmn:endEvent id="e"/>
<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="c"/><bpmn:sequenceFlow id="f2" sourceRef="c" targetRef="e"/>"""


def test_call_activity_calling_its_own_process_is_rejected():
    with pytest.raises(ValidationException, match="calls its own process"):
        parser_for(bpmn(CALL.format(called="p"))).get_spec("p")


def test_missing_called_process_names_the_call_activity():
    parser = parser_for(bpmn(CALL.format(called="nowhere")))
    with pytest.raises(ValidationException) as info:
        parser.get_subprocess_specs("p")
    assert info.value.id == "c" and "'nowhere' was not found" in str(info.value)


def test_process_defined_twice_across_files_is_rejected():
    with pytest.raises(ValidationException, match="defined twice"):
        parser_for(bpmn(CALL.format(called="q")), bpmn(CALL.format(called="q")))


def test_call_activity_across_files_runs():
    child = bpmn('<bpmn:startEvent id="s2"/><bpmn:scriptTask id="t"><bpmn:script>child = 1</bpmn:script>'
                 '</bpmn:scriptTask><bpmn:endEvent id="e2"/><bpmn:sequenceFlow id="g1" sourceRef="s2" '
                 'targetRef="t"/><bpmn:sequenceFlow id="g2" sourceRef="t" targetRef="e2"/>', pid="q")
    wf = workflow(bpmn(CALL.format(called="q")), child)
    wf.do_engine_steps()
    assert wf.completed and wf.last_task.data["child"] == 1


def test_failed_process_fails_every_time():
    parser = parser_for(bpmn(CALL.format(called="p")))
    for _ in range(2):
        with pytest.raises(ValidationException, match="calls its own process"):
            parser.get_spec("p")


def test_multi_instance_collection_expression_is_a_variable_reference():
    body = """<bpmn:startEvent id="s"/>
    <bpmn:scriptTask id="t"><bpmn:multiInstanceLoopCharacteristics camunda:collection="${scores}"
        camunda:elementVariable="score"><bpmn:completionCondition>${score &gt; 100}</bpmn:completionCondition>
      </bpmn:multiInstanceLoopCharacteristics><bpmn:script>score = score * 2</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="e"/>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t"/><bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e"/>"""
    wf = workflow(bpmn(body))
    assert wf.spec.task_specs["t"].condition == "score > 100"
    wf.get_tasks(state=TaskState.READY)[0].data["scores"] = [1, 2, 3]
    wf.do_engine_steps()
    assert wf.completed and wf.last_task.data["scores"] == [2, 4, 6]


def test_groovy_script_is_rejected():
    body = """<bpmn:startEvent id="s"/><bpmn:scriptTask id="t" scriptFormat="groovy"><bpmn:script>x = 1</bpmn:script>
    </bpmn:scriptTask><bpmn:endEvent id="e"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t"/>
    <bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e"/>"""
    with pytest.raises(ValidationException, match="'groovy' is not supported"):
        parser_for(bpmn(body)).get_spec("p")


def test_service_and_send_tasks_serialize_with_the_camunda_configuration():
    body = """<bpmn:startEvent id="s"/>
    <bpmn:serviceTask id="svc" camunda:type="external" camunda:topic="mail"/>
    <bpmn:sendTask id="snd" messageRef="m"/>
    <bpmn:endEvent id="e"/>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="svc"/>
    <bpmn:sequenceFlow id="f2" sourceRef="svc" targetRef="snd"/>
    <bpmn:sequenceFlow id="f3" sourceRef="snd" targetRef="e"/>"""
    wf = workflow(bpmn(body, extra='<bpmn:message id="m" name="done"/>'))
    assert wf.spec.task_specs["svc"].extensions["camunda"] == {"type": "external", "topic": "mail",
                                                              "external": True}
    from engine.serialization import SERIALIZER

    restored = SERIALIZER.deserialize_json(SERIALIZER.serialize_json(wf))
    assert restored.spec.task_specs["snd"].event_definition.name == "done"
