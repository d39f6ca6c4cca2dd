"""The model checker: never a crash, clear findings for every problem, parsed processes that run."""

import sys
import time
import types
from pathlib import Path

import pytest
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.task import TaskState

from engine.check import Finding, check_files, check_sources

CORPUS = Path("/work/shared/corpus")
MODEL_SUFFIXES = (".bpmn", ".bpmn20.xml", ".dmn", ".dmn11.xml")
OTHER_SUFFIXES = (".png", ".xsd", ".form", ".txt")

HEAD = (
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="defs" targetNamespace="t">'
)
LINEAR = """<bpmn:startEvent id="s"/>{middle}<bpmn:endEvent id="e"/>
<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="{first}"/>
<bpmn:sequenceFlow id="f2" sourceRef="{last}" targetRef="e"/>"""


def bpmn(body: str, pid: str = "p", extra: str = "", executable: str = "true") -> bytes:
    process = f'<bpmn:process id="{pid}" isExecutable="{executable}">{body}</bpmn:process>'
    return f"{HEAD}{process}{extra}</bpmn:definitions>".encode()


def linear(element: str, element_id: str, **kwargs) -> bytes:
    return bpmn(LINEAR.format(middle=element, first=element_id, last=element_id), **kwargs)


def messages(result, severity=None) -> list[str]:
    return [str(f) for f in result.findings if severity in (None, f.severity)]


def corpus_files(suffixes):
    return sorted(p for p in CORPUS.glob("*/*") if p.name.endswith(suffixes))


# -- the corpus ------------------------------------------------------------------------------------

@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not available")
@pytest.mark.parametrize("path", corpus_files(MODEL_SUFFIXES), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_corpus_model_is_checked_without_exception(path):
    name = f"{path.parent.name}/{path.name}"
    result = check_sources({name: path.read_bytes()})
    for finding in result.findings:
        assert str(finding) == f"{finding.file}: {finding.element_id}: {finding.message}"
        assert finding.severity in ("error", "warning") and finding.message
        assert "Traceback" not in finding.message
        print(finding)
    for process in result.processes.values():
        assert process.spec is not None and name in process.sources


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not available")
@pytest.mark.parametrize("folder", sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else [])
def test_corpus_folders_checked_together(folder):
    files = sorted((CORPUS / folder).iterdir())
    result = check_sources({f.name: f.read_bytes() for f in files})
    for finding in result.findings:
        print(finding)
    for path in files:
        if path.name.endswith(OTHER_SUFFIXES):
            assert next(f.message for f in result.findings if f.file == path.name).startswith(
                "not a BPMN/DMN file")
    if folder == "camunda-examples":
        # Camunda models run unchanged where the meaning is clear
        assert {"camundaFormsQuickstart", "generatedFormsQuickstart", "mainProcess",
                "camunda-testing-job-announcement-publication"} <= set(result.processes)
        assert any("cron cycles are not supported" in m for m in messages(result, "error"))
    if folder == "spiffworkflow":
        assert "CallActivity-Escalation-Test" in result.processes  # call activities resolve across files
        assert any("calls its own process 'Level3'" in m for m in messages(result))


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not available")
def test_check_files_reads_paths():
    paths = [CORPUS / "camunda-examples" / "invoiceApproval.bpmn", CORPUS / "nowhere.bpmn"]
    result = check_files(paths)
    assert "camundaFormsQuickstart" in result.processes
    assert any(f.file.endswith("nowhere.bpmn") and "cannot read" in f.message for f in result.findings)


# -- files that are not models ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a BPMN/DMN file (not XML)"),
        (b'{"components": []}', "not a BPMN/DMN file (not XML)"),
        (b"", "not a BPMN/DMN file (not XML)"),
        (b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>', "not a BPMN/DMN file (root element"),
        (b"<definitions/>", "not a BPMN/DMN file (root element"),
        (b"<a>\n<b>\n</a>", "XML syntax error (line 3)"),
    ],
)
def test_not_a_model(content, message):
    result = check_sources({"x.bpmn": content})
    assert not result.ok and result.findings[0].message.startswith(message)
    assert str(result.findings[0]).startswith("x.bpmn: -: ")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">
<bpmn:process id="p" name="&lol9;"><bpmn:startEvent id="s"/></bpmn:process></bpmn:definitions>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [ <!ENTITY secret SYSTEM "file:///etc/passwd"> <!ENTITY remote SYSTEM "http://127.0.0.1:9/x"> ]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">
<bpmn:process id="p" name="&secret;&remote;"><bpmn:startEvent id="s"/></bpmn:process></bpmn:definitions>"""


@pytest.mark.parametrize("content", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
def test_malicious_xml_is_an_error_and_nothing_is_expanded(content):
    started = time.monotonic()
    result = check_sources({"evil.bpmn": content})
    assert time.monotonic() - started < 2
    assert not result.ok and not result.processes
    assert "DOCTYPE" in result.findings[0].message and "(line 2)" in result.findings[0].message
    assert all("root:" not in f.message and "lollol" not in f.message for f in result.findings)


def test_the_xml_parser_itself_does_not_resolve_entities():
    """Defence in depth: even past the DOCTYPE refusal, the parser expands and fetches nothing."""
    from lxml import etree

    from engine.check import _safe_parser

    doc = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY secret SYSTEM "file:///etc/passwd">]><d>&secret;</d>'
    assert "root:" not in etree.tostring(etree.fromstring(doc, parser=_safe_parser())).decode()
    laughs = BILLION_LAUGHS.replace(b'name="&lol9;"', b"").replace(b"<bpmn:startEvent", b"&lol9;<bpmn:startEvent")
    try:
        assert b"lollol" not in etree.tostring(etree.fromstring(laughs, parser=_safe_parser()))
    except etree.XMLSyntaxError as exc:  # libxml2 refuses the amplification outright: also fine
        assert "amplification" in str(exc) or "entity" in str(exc).lower()


# -- the stock parser's silent and crashing failures, one tiny model each --------------------------

def test_sequence_flows_without_id_run_fully():
    body = """<bpmn:startEvent id="s"/><bpmn:userTask id="u"/><bpmn:endEvent id="e"/>
    <bpmn:sequenceFlow sourceRef="s" targetRef="u"/><bpmn:sequenceFlow sourceRef="u" targetRef="e"/>"""
    result = check_sources({"a.bpmn": bpmn(body)})
    assert result.ok, messages(result)
    assert any("has no id" in m for m in messages(result, "warning"))
    process = result.processes["p"]
    wf = BpmnWorkflow(process.spec, process.subprocess_specs)
    wf.do_engine_steps()
    assert not wf.completed
    [task] = wf.get_tasks(state=TaskState.READY, manual=True)
    task.run()
    wf.do_engine_steps()
    assert wf.completed


def test_flow_node_without_id_is_rejected():
    body = """<bpmn:startEvent id="s"/><bpmn:task name="no id"/><bpmn:endEvent id="e"/>
    <bpmn:sequenceFlow id="f" sourceRef="s" targetRef="e"/>"""
    result = check_sources({"a.bpmn": bpmn(body)})
    assert not result.ok and not result.processes
    assert any("<task> without id (line 1)" in m for m in messages(result, "error"))


def test_message_without_name():
    catch = ('<bpmn:intermediateCatchEvent id="c"><bpmn:messageEventDefinition messageRef="m"/>'
             '</bpmn:intermediateCatchEvent>')
    result = check_sources({"a.bpmn": linear(catch, "c", extra='<bpmn:message id="m"/>')})
    assert "a.bpmn: m: message without a name; message events are matched by name" in messages(result, "error")


def test_business_rule_task_without_decision_ref():
    result = check_sources({"a.bpmn": linear('<bpmn:businessRuleTask id="b"/>', "b")})
    assert "a.bpmn: b: business rule task without camunda:decisionRef" in messages(result, "error")


DMN = b"""<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" name="d" namespace="x">
  <decision id="first" name="First"><decisionTable id="t1">
    <input id="i1"><inputExpression id="x1" typeRef="integer"><text>x</text></inputExpression></input>
    <output id="o1" name="a" typeRef="string"/>
    <rule id="r1"><inputEntry><text>-</text></inputEntry><outputEntry><text>"A"</text></outputEntry></rule>
  </decisionTable></decision>
  <decision id="second" name="Second"><decisionTable id="t2">
    <input id="i2"><inputExpression id="x2" typeRef="integer"><text>x</text></inputExpression></input>
    <output id="o2" name="b" typeRef="string"/>
    <rule id="r2"><inputEntry><text>-</text></inputEntry><outputEntry><text>"B"</text></outputEntry></rule>
  </decisionTable></decision>
</definitions>"""


def test_dmn_with_several_decisions_and_entries_without_id():
    tasks = '<bpmn:businessRuleTask id="b" camunda:decisionRef="second"/>'
    result = check_sources({"a.bpmn": linear(tasks, "b"), "d.dmn": DMN})
    assert result.ok, messages(result)
    assert set(result.processes["p"].sources) == {"a.bpmn", "d.dmn"}
    wf = BpmnWorkflow(result.processes["p"].spec)
    wf.do_engine_steps()
    assert wf.completed and wf.last_task.data["b"] == "B"


def test_a_decision_output_named_typename_is_an_error():
    dmn = DMN.replace(b'<output id="o2" name="b"', b'<output id="o2" name="typename"')
    result = check_sources({"a.bpmn": linear('<bpmn:businessRuleTask id="b" camunda:decisionRef="second"/>', "b"),
                            "d.dmn": dmn})
    assert any(m.startswith("d.dmn: o2: output name 'typename': 'typename' is reserved")
               for m in messages(result, "error")), messages(result)


def test_unknown_decision_ref():
    result = check_sources({"a.bpmn": linear('<bpmn:businessRuleTask id="b" camunda:decisionRef="x"/>', "b"),
                            "d.dmn": DMN})
    assert "a.bpmn: b: decision 'x' was not found in the given DMN files" in messages(result, "error")


def test_call_activity_calling_its_own_process():
    result = check_sources({"a.bpmn": linear('<bpmn:callActivity id="c" calledElement="p"/>', "c")})
    assert not result.processes
    assert any(m.startswith("a.bpmn: c: Call activity calls its own process") for m in messages(result))


def test_called_process_missing_or_defined_twice():
    caller = linear('<bpmn:callActivity id="c" calledElement="q"/>', "c")
    callee = linear('<bpmn:task id="t"/>', "t", pid="q")
    missing = check_sources({"a.bpmn": caller})
    assert "a.bpmn: c: called process 'q' was not found in the given files" in messages(missing, "error")
    twice = check_sources({"a.bpmn": caller, "b.bpmn": callee, "c.bpmn": callee})
    assert "c.bpmn: q: Process 'q' is defined twice (also in b.bpmn)" in messages(twice, "error")
    fine = check_sources({"a.bpmn": caller, "b.bpmn": callee})
    assert fine.ok and set(fine.processes["p"].sources) == {"a.bpmn", "b.bpmn"}


def test_bare_iso_timer_is_fine_and_cron_is_an_error():
    timer = ('<bpmn:intermediateCatchEvent id="w"><bpmn:timerEventDefinition><bpmn:{kind}>{value}</bpmn:{kind}>'
             '</bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>')
    ok = check_sources({"a.bpmn": linear(timer.format(kind="timeDuration", value="P3D"), "w")})
    assert ok.ok and "p" in ok.processes
    assert ok.processes["p"].spec.task_specs["w"].event_definition.expression == '"P3D"'
    cron = check_sources({"a.bpmn": linear(timer.format(kind="timeCycle", value="0 0/5 * * * ?"), "w")})
    assert ("a.bpmn: w: timer: cron cycles are not supported; use an ISO-8601 repetition like R/PT5M"
            in messages(cron, "error"))


GATEWAY = """<bpmn:startEvent id="s"/><bpmn:exclusiveGateway id="g" {default}/>
<bpmn:endEvent id="e1"/><bpmn:endEvent id="e2"/>
<bpmn:sequenceFlow id="f0" sourceRef="s" targetRef="g"/>
<bpmn:sequenceFlow id="fa" sourceRef="g" targetRef="e1">{cond_a}</bpmn:sequenceFlow>
<bpmn:sequenceFlow id="fb" sourceRef="g" targetRef="e2">{cond_b}</bpmn:sequenceFlow>"""


def cond(text):
    return f"<bpmn:conditionExpression>{text}</bpmn:conditionExpression>"


def test_juel_conditions_translate_and_unsupported_ones_are_errors():
    good = check_sources({"a.bpmn": bpmn(GATEWAY.format(default='default="fb"', cond_a=cond("${ok}"), cond_b=""))})
    assert good.ok, messages(good)
    bad = check_sources({"a.bpmn": bpmn(GATEWAY.format(default='default="fb"', cond_b="",
                                                       cond_a=cond("${ok ? 1 : 2}")))})
    assert any(m.startswith("a.bpmn: fa: condition: the conditional operator '?:' is not supported")
               for m in messages(bad, "error"))


def test_gateway_without_condition_or_default():
    missing = check_sources({"a.bpmn": bpmn(GATEWAY.format(default="", cond_a=cond("ok"), cond_b=""))})
    assert ("a.bpmn: fb: sequence flow leaving gateway 'g' has no condition and is not the default flow"
            in messages(missing, "error"))
    no_default = check_sources({"a.bpmn": bpmn(GATEWAY.format(default="", cond_a=cond("ok"),
                                                              cond_b=cond("not ok")))})
    assert no_default.ok
    assert any(m.startswith("a.bpmn: g: gateway has conditions but no default flow")
               for m in messages(no_default, "warning"))


def test_unreachable_node_is_a_warning():
    body = LINEAR.format(middle='<bpmn:task id="t"/><bpmn:task id="island"/>', first="t", last="t")
    result = check_sources({"a.bpmn": bpmn(body)})
    assert result.ok
    assert "a.bpmn: island: unreachable: no path from a start event leads here" in messages(result, "warning")


def test_data_store_without_implementation():
    extra = '<bpmn:dataStore id="ds" name="Archive"/>'
    task = ('<bpmn:task id="t"><bpmn:dataOutputAssociation id="a"><bpmn:targetRef>dsr</bpmn:targetRef>'
            '</bpmn:dataOutputAssociation></bpmn:task><bpmn:dataStoreReference id="dsr" dataStoreRef="ds"/>')
    unused = check_sources({"a.bpmn": linear('<bpmn:task id="t"/>', "t", extra=extra)})
    assert unused.ok and "p" in unused.processes
    assert any("data store 'Archive' has no implementation" in m for m in messages(unused, "warning"))
    used = check_sources({"a.bpmn": linear(task, "t", extra=extra)})
    assert "a.bpmn: t: Data store 'Archive' has no implementation; data stores are not supported" in messages(
        used, "error")


def test_non_executable_process_is_a_warning_and_not_returned():
    result = check_sources({"a.bpmn": linear('<bpmn:task id="t"/>', "t", executable="false")})
    assert result.ok and not result.processes
    assert messages(result) == ['a.bpmn: p: process is not executable (isExecutable="false"); it is not deployed']


def test_unsupported_script_and_service_implementations():
    groovy = '<bpmn:scriptTask id="t" scriptFormat="groovy"><bpmn:script>x = 1</bpmn:script></bpmn:scriptTask>'
    result = check_sources({"a.bpmn": linear(groovy, "t")})
    assert any(m.startswith("a.bpmn: t: script format 'groovy' is not supported") for m in messages(result))
    service = '<bpmn:serviceTask id="t" camunda:class="org.example.Delegate"/>'
    result = check_sources({"a.bpmn": linear(service, "t")})
    assert result.ok and any("camunda:class is not run" in m for m in messages(result, "warning"))


@pytest.mark.parametrize("extension, found", [
    ('<camunda:executionListener event="start" expression="${execution.setVariable(\'x\', 1)}"/>',
     "camunda:executionListener is not run"),
    ('<camunda:taskListener event="create" class="org.example.Listener"/>', "camunda:taskListener is not run"),
    ('<camunda:inputOutput><camunda:inputParameter name="a">${b}</camunda:inputParameter></camunda:inputOutput>',
     "camunda:inputOutput is not run"),
])
def test_camunda_listeners_and_mappings_that_would_change_the_data_are_errors(extension, found):
    task = f'<bpmn:userTask id="u"><bpmn:extensionElements>{extension}</bpmn:extensionElements></bpmn:userTask>'
    result = check_sources({"a.bpmn": linear(task, "u")})
    assert [(f.element_id, found in f.message) for f in result.errors] == [("u", True)]


def test_async_continuations_and_call_activity_mappings_are_warnings():
    task = '<bpmn:userTask id="u" camunda:asyncBefore="true"/>'
    result = check_sources({"a.bpmn": linear(task, "u")})
    assert result.ok and [f.element_id for f in result.warnings if "asyncBefore" in f.message] == ["u"]
    assert check_sources({"a.bpmn": linear('<bpmn:userTask id="u" camunda:asyncBefore="false"/>', "u")}).warnings == []
    call = ('<bpmn:callActivity id="c" calledElement="sub"><bpmn:extensionElements>'
            '<camunda:in source="a" target="b"/></bpmn:extensionElements></bpmn:callActivity>')
    sub = '<bpmn:process id="sub" isExecutable="true"><bpmn:startEvent id="s2"/></bpmn:process>'
    result = check_sources({"a.bpmn": linear(call, "c", extra=sub)})
    assert [f.element_id for f in result.warnings if "camunda:in/camunda:out" in f.message] == ["c"]
    all_data = call.replace('source="a" target="b"', 'variables="all"')  # what Fallwerk does anyway
    assert check_sources({"a.bpmn": linear(all_data, "c", extra=sub)}).warnings == []


@pytest.mark.parametrize("pid", ['p"x', "consul tation", "1st", "a/b"])
def test_an_id_that_is_not_an_xml_name_is_an_error(pid):
    result = check_sources({"a.bpmn": linear('<bpmn:userTask id="u"/>', "u", pid=pid.replace('"', "&quot;"))})
    assert [(f.element_id, "not a valid XML name" in f.message) for f in result.errors][:1] == [(pid, True)]


def test_a_non_interrupting_message_boundary_event_is_a_warning():
    task = ('<bpmn:userTask id="u"/><bpmn:boundaryEvent id="b" attachedToRef="u" cancelActivity="false">'
            '<bpmn:messageEventDefinition messageRef="m"/></bpmn:boundaryEvent>')
    result = check_sources({"a.bpmn": linear(task, "u", extra='<bpmn:message id="m" name="update"/>')})
    assert result.ok and [f.element_id for f in result.warnings if "catches its message once" in f.message] == ["b"]


def test_user_task_expressions_are_checked():
    task = '<bpmn:userTask id="u" camunda:assignee="${bean.find()}" camunda:candidateGroups="${unit}:lead"/>'
    result = check_sources({"a.bpmn": linear(task, "u")})
    assert [f.element_id for f in result.errors] == ["u"]
    assert "camunda:assignee" in result.errors[0].message


def test_unexpected_exception_becomes_a_finding(monkeypatch):
    from engine import parser

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(parser.FallwerkParser, "get_spec", explode)
    result = check_sources({"a.bpmn": linear('<bpmn:task id="t"/>', "t")})
    assert "a.bpmn: p: RuntimeError: boom" in messages(result, "error")


def test_sandbox_problems_are_findings(monkeypatch):
    fake = types.ModuleType("engine.sandbox")

    def check_expression(source, *, mode="eval"):
        return ["imports are not allowed"] if "import" in source else []

    fake.check_expression = check_expression
    monkeypatch.setitem(sys.modules, "engine.sandbox", fake)
    script = '<bpmn:scriptTask id="t"><bpmn:script>import os</bpmn:script></bpmn:scriptTask>'
    result = check_sources({"a.bpmn": linear(script, "t")})
    assert "a.bpmn: t: script: imports are not allowed" in messages(result, "error")


def test_finding_dict_and_result():
    finding = Finding("a.bpmn", "-", "error", "bad")
    assert str(finding) == "a.bpmn: -: bad"
    assert finding.to_dict() == {"file": "a.bpmn", "element_id": "-", "severity": "error", "message": "bad"}
    result = check_sources({"a.bpmn": b"nope"})
    assert result.to_dict()["ok"] is False


# -- DMN input entries: FEEL unary tests -------------------------------------------------------------

def grade_dmn(cell: str, first: str = ">= 90") -> bytes:
    cell, first = (c.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for c in (cell, first))
    return f"""<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="dd" name="g" namespace="x">
  <decision id="grade" name="Grade"><decisionTable id="dt" hitPolicy="FIRST">
    <input id="i1" label="Score"><inputExpression id="ie1" typeRef="integer"><text>score</text>
      </inputExpression></input>
    <output id="o1" name="grade" typeRef="string"/>
    <rule id="r1"><inputEntry id="e1"><text>{first}</text></inputEntry>
      <outputEntry id="oe1"><text>"A"</text></outputEntry></rule>
    <rule id="r2"><inputEntry id="e2"><text>{cell}</text></inputEntry>
      <outputEntry id="oe2"><text>"B"</text></outputEntry></rule>
    <rule id="r3"><inputEntry id="e3"><text>-</text></inputEntry>
      <outputEntry id="oe3"><text>"C"</text></outputEntry></rule>
  </decisionTable></decision>
</definitions>""".encode()


def decide(cell: str, score, first: str = ">= 90") -> str:
    from engine.sandbox import SandboxScriptEngine

    result = check_sources({"a.bpmn": linear('<bpmn:businessRuleTask id="b" camunda:decisionRef="grade"/>', "b"),
                            "g.dmn": grade_dmn(cell, first)})
    assert result.ok, messages(result)
    wf = BpmnWorkflow(result.processes["p"].spec, script_engine=SandboxScriptEngine())
    wf.get_tasks(state=TaskState.READY)[0].data["score"] = score
    wf.do_engine_steps()
    assert wf.completed
    return wf.last_task.data["grade"]


@pytest.mark.parametrize(("cell", "grades"), [
    ("50,60,70", {60: "B", 55: "C", 95: "A"}),
    ("not(50)", {60: "B", 50: "C"}),
    ('not(50, 60)', {70: "B", 60: "C", 50: "C"}),
    ("[50..90[", {50: "B", 89: "B", 90: "A", 49: "C"}),
    ("[50..89]", {89: "B", 50: "B", 49: "C"}),
    ("]49..90[", {50: "B", 49: "C"}),
    ("(49..90)", {50: "B", 49: "C"}),
    ("< 90", {10: "B"}),
    (">= 50", {50: "B", 49: "C"}),
    ("<= 89.5", {89: "B"}),
    ("60", {60: "B", 61: "C"}),
    ("!= 50", {60: "B", 50: "C"}),
    ("< 20, [40..50]", {10: "B", 45: "B", 30: "C"}),
    ("? >= 50 and ? < 90", {60: "B", 40: "C"}),
])
def test_dmn_feel_unary_tests_give_feel_answers(cell, grades):
    for score, grade in grades.items():
        assert decide(cell, score) == grade, (cell, score)


def test_dmn_strings_and_null_as_feel():
    assert decide('"x?", "y"', "x?", first='"A"') == "B"
    assert decide('"x?", "y"', "z", first='"A"') == "C"
    assert decide('"x?", "y"', "A", first='"A"') == "A"
    assert decide("null", None, first='"A"') == "B"


@pytest.mark.parametrize(("cell", "message"), [
    ("50..89", "a range needs brackets"),
    (">= 50 and < 90", "write a range such as [50..90["),
    ("foo(", "neither a supported FEEL unary test"),
    ('__import__("os")', "forbidden name '__import__'"),
    ('date("2020-01-01")', "FEEL functions are not supported"),
    ("score > 49", "means different things"),
    ("[50, 60]", "means different things"),
    ('"a" or "b"', "means different things"),
])
def test_dmn_input_entries_that_cannot_be_evaluated_are_errors(cell, message):
    result = check_sources({"a.bpmn": linear('<bpmn:businessRuleTask id="b" camunda:decisionRef="grade"/>', "b"),
                            "g.dmn": grade_dmn(cell)})
    errors = [f for f in result.errors if f.file == "g.dmn"]
    assert errors and errors[0].element_id == "e2" and message in errors[0].message, messages(result)


# -- constructs SpiffWorkflow accepts but would run differently -------------------------------------

LINK = """<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="lt"/>
<bpmn:intermediateThrowEvent id="lt"><bpmn:linkEventDefinition name="L"/></bpmn:intermediateThrowEvent>
<bpmn:intermediateCatchEvent id="lc"><bpmn:linkEventDefinition name="L"/></bpmn:intermediateCatchEvent>
<bpmn:sequenceFlow id="f2" sourceRef="lc" targetRef="t"/><bpmn:userTask id="t"/>
<bpmn:sequenceFlow id="f3" sourceRef="t" targetRef="e"/><bpmn:endEvent id="e"/>"""


def test_link_events_are_errors():
    errors = messages(check_sources({"a.bpmn": bpmn(LINK)}), "error")
    assert [m.split(":")[1].strip() for m in errors] == ["lt", "lc"], errors
    assert all("link events are not supported" in m for m in errors)


SUB_WITH_ERROR = """<bpmn:subProcess id="sp"><bpmn:startEvent id="ss"/><bpmn:sequenceFlow id="sf" sourceRef="ss"
 targetRef="ee"/><bpmn:endEvent id="ee"><bpmn:errorEventDefinition errorRef="err" {throw}/></bpmn:endEvent>
</bpmn:subProcess><bpmn:boundaryEvent id="eb" attachedToRef="sp"><bpmn:errorEventDefinition errorRef="err" {catch}/>
</bpmn:boundaryEvent><bpmn:sequenceFlow id="f9" sourceRef="eb" targetRef="e"/>"""


@pytest.mark.parametrize(("throw", "catch", "expected"), [
    ("", 'camunda:errorCodeVariable="code"', ("eb", "error")),
    ("", 'camunda:errorMessageVariable="msg"', ("eb", "error")),
    ('camunda:errorCodeVariable="code"', "", ("ee", "warning")),
])
def test_error_code_and_message_variables_are_reported(throw, catch, expected):
    model = linear(SUB_WITH_ERROR.format(throw=throw, catch=catch), "sp", extra='<bpmn:error id="err" errorCode="E1"/>')
    found = [(f.element_id, f.severity) for f in check_sources({"a.bpmn": model}).findings
             if "Variable" in f.message]
    assert found == [expected]


@pytest.mark.parametrize("language", ["groovy", "javascript", "JavaScript"])
def test_a_condition_in_another_language_is_an_error(language):
    body = f"""<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="g"/>
    <bpmn:exclusiveGateway id="g" default="f3"/><bpmn:sequenceFlow id="f2" sourceRef="g" targetRef="e">
    <bpmn:conditionExpression language="{language}">x == 1</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f3" sourceRef="g" targetRef="e"/><bpmn:endEvent id="e"/>"""
    assert messages(check_sources({"a.bpmn": bpmn(body)}), "error") == [
        f"a.bpmn: f2: condition language {language!r} is not supported; conditions are Python (or Camunda ${{...}} "
        "expressions)"]
    assert check_sources({"a.bpmn": bpmn(body.replace(f' language="{language}"', ' language="python"'))}).ok


def test_result_variable_on_a_script_task_is_an_error():
    task = '<bpmn:scriptTask id="sc" camunda:resultVariable="r"><bpmn:script>r = 1</bpmn:script></bpmn:scriptTask>'
    assert messages(check_sources({"a.bpmn": linear(task, "sc")}), "error") == [
        "a.bpmn: sc: camunda:resultVariable on a script task is never set; assign the variable in the script"]


@pytest.mark.parametrize(("attributes", "ok"), [
    ('camunda:resultVariable="b" camunda:mapDecisionResult="singleEntry"', True),  # what happens anyway
    ('camunda:resultVariable="result"', False),
    ('camunda:resultVariable="b"', False),  # Camunda's default resultList stores a list of maps
    ('camunda:resultVariable="other" camunda:mapDecisionResult="singleEntry"', False),
])
def test_result_variable_on_a_business_rule_task(attributes, ok):
    task = f'<bpmn:businessRuleTask id="b" camunda:decisionRef="second" {attributes}/>'
    result = check_sources({"a.bpmn": linear(task, "b"), "d.dmn": DMN})
    assert result.ok == ok, messages(result)
    if not ok:
        assert "camunda:resultVariable" in messages(result, "error")[0]


def test_a_receive_task_without_message_is_an_error():
    result = check_sources({"a.bpmn": linear('<bpmn:receiveTask id="r"/>', "r")})
    assert messages(result, "error") == ["a.bpmn: r: receive task without messageRef: it would not wait for "
                                         "anything; name the message it waits for"]


def test_the_networks_models_pass_the_checker():
    root = Path(__file__).parent.parent
    paths = [*sorted(root.glob("processes/*.bpmn")), *sorted(root.glob("processes/*.dmn"))]
    result = check_files(paths)
    assert result.ok, messages(result, "error")


# -- structure the stock parser misses ----------------------------------------------------------------

@pytest.mark.parametrize(("body", "expected"), [
    ('<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f" sourceRef="s" targetRef="s"/>',
     "a.bpmn: f: sequence flow into start event 's': a start event has no incoming flows"),
    ('<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f" sourceRef="s" targetRef="b"/><bpmn:boundaryEvent id="b" '
     'attachedToRef="nope"><bpmn:timerEventDefinition><bpmn:timeDuration>P1D</bpmn:timeDuration>'
     '</bpmn:timerEventDefinition></bpmn:boundaryEvent>',
     "a.bpmn: b: boundary event attached to 'nope', which is no element of this process"),
    ('<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f" sourceRef="s" targetRef="t"/><bpmn:task id="t"/>'
     '<bpmn:task id="t"/><bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e"/><bpmn:endEvent id="e"/>',
     "a.bpmn: t: id 't' is used twice (lines 1 and 1); every element needs its own id"),
    ('<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f" sourceRef="s" targetRef="missing"/>',
     "a.bpmn: f: sequence flow targetRef 'missing' names no flow element of this process or sub-process"),
])
def test_structural_errors_are_findings(body, expected):
    errors = messages(check_sources({"a.bpmn": bpmn(body)}), "error")
    assert errors[0] == expected, errors
    assert not any("perhaps a form has the same ID" in m for m in errors)


# -- literal timer and due date values ------------------------------------------------------------------

def timer_model(kind: str, value: str) -> bytes:
    event = (f'<bpmn:intermediateCatchEvent id="w"><bpmn:timerEventDefinition><bpmn:{kind}>{value}</bpmn:{kind}>'
             '</bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>')
    return linear(event, "w")


@pytest.mark.parametrize(("kind", "value", "message"), [
    ("timeDuration", "P3X", "Invalid duration"),
    ("timeDuration", "-P1D", "negative durations are not supported"),
    ("timeDuration", "P99999Y", "longer than 100 years"),
    ("timeDuration", "PT99999999999H", "longer than 100 years"),
    ("timeCycle", "R3/P9999999999Y", "longer than 100 years"),
])
def test_literal_timer_values_that_cannot_run_are_errors(kind, value, message):
    errors = check_sources({"a.bpmn": timer_model(kind, value)}).errors
    assert errors and errors[0].element_id == "w" and message in errors[0].message, errors


@pytest.mark.parametrize("value", ["P99Y", "PT5M", "${reminder}", "reminder_due", "Period"])
def test_valid_timer_values_and_expressions_stay_accepted(value):
    assert check_sources({"a.bpmn": timer_model("timeDuration", value)}).ok


@pytest.mark.parametrize(("attributes", "message"), [
    ('camunda:dueDate="P3X"', "camunda:dueDate: invalid timeDuration timer value 'P3X'"),
    ('camunda:followUpDate="morgen"', "camunda:followUpDate: invalid timeDate timer value 'morgen'"),
    ('camunda:priority="high"', "camunda:priority 'high' is not a whole number"),
])
def test_literal_user_task_dates_and_priorities_are_checked(attributes, message):
    errors = messages(check_sources({"a.bpmn": linear(f'<bpmn:userTask id="t" {attributes}/>', "t")}), "error")
    assert len(errors) == 1 and message in errors[0], errors


@pytest.mark.parametrize("attributes", ['camunda:dueDate="P3D" camunda:priority="70"',
                                        'camunda:dueDate="2026-12-01T09:00:00Z" camunda:followUpDate="${due}"',
                                        'camunda:priority="${prio}"'])
def test_valid_user_task_dates_and_priorities(attributes):
    assert check_sources({"a.bpmn": linear(f'<bpmn:userTask id="t" {attributes}/>', "t")}).ok
