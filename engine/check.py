"""The model checker behind ``fallwerk check`` and deployment.

``check_sources({"a.bpmn": b"...", "d.dmn": b"..."})`` parses BPMN and DMN files together (call
activities and decision references resolve across them) and answers a :class:`CheckResult`: findings
(``file: element-id: message``) and the executable processes that parsed. It never raises for a bad
model: every problem, including an unexpected exception inside the parser, becomes a finding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from engine.errors import ExpressionError
from engine.expressions import (
    TemplateExpression,
    check_iso_value,
    has_expression,
    template,
    timer_expression,
    translate,
)
from engine.feel_unary import INPUT_NAME
from engine.forms.schema import RESERVED_MESSAGE
from engine.parser import (
    BPMN_NS,
    CAMUNDA,
    FLOW_NODE_TAGS,
    PYTHON_SCRIPT_FORMATS,
    FallwerkParser,
    assign_generated_ids,
    local_name,
)
from engine.serialization import RESERVED_KEY

__all__ = ["CheckResult", "Finding", "KnownNames", "ParsedProcess", "check_files", "check_sources"]


@dataclass(frozen=True)
class Finding:
    file: str
    element_id: str
    severity: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.element_id}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "element_id": self.element_id, "severity": self.severity,
                "message": self.message}


@dataclass
class ParsedProcess:
    """An executable process ready for ``BpmnWorkflow(spec, subprocess_specs)``."""

    id: str
    name: str
    file: str
    spec: object
    subprocess_specs: dict
    sources: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class KnownNames:
    """What exists outside the models (the database knows it): a reference to anything else is an error.
    None skips that check (the CLI checks files without a database)."""

    units: frozenset[str] | None = None
    roles: frozenset[str] | None = None
    forms: frozenset[str] | None = None


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    processes: dict[str, ParsedProcess] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self) -> dict:
        return {"ok": self.ok, "findings": [f.to_dict() for f in self.findings],
                "processes": sorted(self.processes)}


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
                           dtd_validation=False, remove_blank_text=False)


_DOCTYPE = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def _load(name: str, data: bytes, add) -> tuple[str, etree._Element] | None:
    """Parse one file safely. Returns ("bpmn"|"dmn", root) or None after adding a finding."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"<"):
        add(name, "-", "error", "not a BPMN/DMN file (not XML)")
        return None
    match = _DOCTYPE.search(data)
    if match:
        line = data[:match.start()].count(b"\n") + 1
        add(name, "-", "error", f"XML with a DOCTYPE or entity declarations is not accepted (line {line})")
        return None
    try:
        root = etree.fromstring(data, parser=_safe_parser())
    except etree.XMLSyntaxError as exc:
        add(name, "-", "error", f"XML syntax error (line {exc.lineno}): {exc.msg}")
        return None
    except (etree.LxmlError, ValueError) as exc:
        add(name, "-", "error", f"not a BPMN/DMN file: {exc}")
        return None
    tag = root.tag if isinstance(root.tag, str) else ""
    namespace = tag[1:].split("}", 1)[0] if tag.startswith("{") else ""
    if tag == f"{{{BPMN_NS}}}definitions":
        return "bpmn", root
    if tag.endswith("}definitions") and "DMN" in namespace.upper():
        return "dmn", root
    add(name, "-", "error", f"not a BPMN/DMN file (root element {etree.QName(root).localname!r} "
                            f"in namespace {namespace or 'none'!r})")
    return None


def _exception_finding(exc: Exception, default_file: str, default_element: str = "-") -> Finding:
    message = str(exc.args[0]) if exc.args else exc.__class__.__name__
    if exc.__class__.__name__ not in ("ValidationException",):
        message = f"{exc.__class__.__name__}: {message}"
    if "perhaps a form has the same ID" in message:  # SpiffWorkflow's words for a flow to a missing element
        missing = message.rpartition("(")[2].rstrip(")")
        message = f"a sequence flow leaving this element leads to {missing!r}, which is no element of the process"
    element = getattr(exc, "id", "") or default_element
    file = getattr(exc, "file_name", "") or default_file
    return Finding(file, element, "error", message.strip())


def check_sources(sources: dict[str, bytes], *, known: KnownNames | None = None) -> CheckResult:
    """Check BPMN and DMN files together; ``sources`` maps file names to their content. With ``known``,
    candidate groups and form references must name units, roles and forms that exist."""
    findings: list[Finding] = []
    seen: set[tuple[str, str, str]] = set()
    error_elements: set[tuple[str, str]] = set()

    def add(file, element, severity, message):
        key = (file, element or "-", message)
        if key in seen:
            return
        if severity == "error" and element not in ("-", "") and (file, element) in error_elements:
            return  # one error per element is enough (the linter and the parser often agree)
        seen.add(key)
        if severity == "error":
            error_elements.add((file, element or "-"))
        findings.append(Finding(file, element or "-", severity, message))

    def add_finding(finding: Finding):
        add(finding.file, finding.element_id, finding.severity, finding.message)

    documents: dict[str, tuple[str, etree._Element]] = {}
    for name, data in sources.items():
        try:
            loaded = _load(name, data, add)
        except Exception as exc:  # noqa: BLE001 - never a traceback
            add(name, "-", "error", f"cannot read file: {exc}")
            loaded = None
        if loaded is not None:
            documents[name] = loaded

    # static checks over all documents (they need to know what the other files define)
    process_ids = {p.get("id") for kind, root in documents.values() if kind == "bpmn"
                   for p in root.iter(f"{{{BPMN_NS}}}process")}
    decision_ids = {d.get("id"): [o.get("name") for o in d.iter() if isinstance(o.tag, str)
                                  and o.tag.endswith("}output")]
                    for kind, root in documents.values() if kind == "dmn"
                    for d in root.iter() if isinstance(d.tag, str) and d.tag.endswith("}decision")}
    for name, (kind, root) in documents.items():
        if kind != "bpmn":
            continue
        id_less = [flow for flow in root.iter(_b("sequenceFlow")) if not flow.get("id")]
        try:
            assign_generated_ids(root, name)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a finding
            add_finding(_exception_finding(exc, name))
        for flow in id_less:
            if flow.get("id"):
                add(name, flow.get("id"), "warning", f"sequence flow (line {flow.sourceline}) has no id; "
                                                     "it was given this generated id")
        try:
            for element, severity, message in lint_document(root, process_ids, decision_ids):
                add(name, element, severity, message)
            if known is not None:
                for element, severity, message in lint_known_names(root, known):
                    add(name, element, severity, message)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a finding
            add(name, "-", "error", f"checker failed on this file: {exc.__class__.__name__}: {exc}")

    # parse with the engine's parser
    parser = FallwerkParser()
    top_level: list[tuple[str, str]] = []
    for name, (kind, root) in sorted(documents.items(), key=lambda item: item[1][0] != "dmn"):
        try:
            if kind == "dmn":
                parser.add_dmn_xml(root, filename=name)
            else:
                before = set(parser.process_parsers)
                parser.add_bpmn_xml(root, filename=name)
                top_level += [(pid, name) for pid in parser.process_parsers if pid not in before]
        except Exception as exc:  # noqa: BLE001 - any failure becomes a finding
            add_finding(_exception_finding(exc, name))
    for name, (kind, _root) in documents.items():
        if kind != "dmn":
            continue
        for decision_id, parser_ in list(parser.dmn_parsers.items()):
            if parser.decision_files.get(decision_id) != name:
                continue
            try:
                parser_.parse()
            except Exception as exc:  # noqa: BLE001 - any failure becomes a finding
                add_finding(_exception_finding(exc, name, decision_id))
                continue
            for table in parser_.decision.decisionTables:
                for element, message in _decision_table_problems(table):
                    add(name, element or decision_id, "error", message)
                for output in table.outputs:
                    if RESERVED_KEY in (output.name or "").split("."):
                        add(name, output.id or decision_id, "error", f"output name {output.name!r}: {RESERVED_MESSAGE}")

    result = CheckResult(findings)
    for pid, name in top_level:
        process_parser = parser.process_parsers[pid]
        if not process_parser.process_executable:
            add(name, pid, "warning", 'process is not executable (isExecutable="false"); it is not deployed')
            continue
        try:
            spec = parser.get_spec(pid)
            subprocess_specs = parser.get_subprocess_specs(pid)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a finding
            add_finding(_exception_finding(exc, name, pid))
            continue
        for finding in _inline_form_findings(spec, subprocess_specs, name):
            add_finding(finding)
        result.processes[pid] = ParsedProcess(
            id=pid, name=process_parser.get_name(), file=name, spec=spec, subprocess_specs=subprocess_specs,
            sources=_needed_sources(pid, subprocess_specs, name, parser, documents, sources))
    return result


def _inline_form_findings(spec, subprocess_specs, default_file):
    """Findings of the inline `camunda:formField` forms of the user tasks: the runtime validates every
    completion against them, so a form it cannot build must stop the deploy, not the task."""
    from engine.forms import check_camunda_form

    for process in [spec, *subprocess_specs.values()]:
        file = getattr(process, "file", None) or default_file
        for task_spec in process.task_specs.values():
            form = getattr(task_spec, "form", None)
            if form is None or not getattr(form, "fields", None):
                continue
            element = task_spec.bpmn_id or task_spec.name
            try:
                yield from check_camunda_form(form, file=file, element_id=element)
            except Exception as exc:  # noqa: BLE001 - any failure becomes a finding
                yield Finding(file, element, "error", f"checker failed on the form: {exc.__class__.__name__}: {exc}")


def _decision_table_problems(table):
    """(element id, message) for what the sandbox refuses in a decision table's cells and input
    expressions; the run would refuse them on every evaluation."""
    for column in table.inputs:
        if column.expression and column.expression.strip():
            for problem in _sandbox_problems(column.expression, "eval"):
                yield column.id, f"input expression {column.expression!r}: {problem}"
    for rule in table.rules:
        for entry in rule.inputEntries:
            for lhs in entry.lhs:
                if lhs is None:
                    continue
                python = re.sub(r"\?(?=(?:[^'\"]|['\"][^'\"]*['\"])*$)", INPUT_NAME, lhs)
                for problem in _sandbox_problems(python, "eval"):
                    yield entry.id, f"rule {rule.row_number}: input entry {entry.text!r}: {problem}"
        for entry in rule.outputEntries:
            if entry.text and entry.text.strip():
                for problem in _sandbox_problems(entry.text, "eval"):
                    yield entry.id, f"rule {rule.row_number}: output entry {entry.text!r}: {problem}"


def _needed_sources(pid, subprocess_specs, name, parser, documents, sources) -> dict[str, bytes]:
    files = {name} | {parser.process_files.get(sub) for sub in subprocess_specs}
    files |= {spec.file for spec in subprocess_specs.values() if getattr(spec, "file", None)}
    files.discard(None)
    used_processes = {pid, *subprocess_specs}
    for file in list(files):
        if file not in documents:
            continue
        for process in documents[file][1].iter(f"{{{BPMN_NS}}}process"):
            if process.get("id") not in used_processes:
                continue
            for task in process.iter(f"{{{BPMN_NS}}}businessRuleTask"):
                decision_file = parser.decision_files.get(task.get(CAMUNDA + "decisionRef"))
                if decision_file:
                    files.add(decision_file)
    return {file: sources[file] for file in sorted(files) if file in sources}


def check_files(paths) -> CheckResult:
    """Read the given files and check them together; file names in findings are the paths as given."""
    sources: dict[str, bytes] = {}
    unreadable: list[Finding] = []
    for path in paths:
        try:
            sources[str(path)] = Path(path).read_bytes()
        except OSError as exc:
            unreadable.append(Finding(str(path), "-", "error", f"cannot read file: {exc.strerror or exc}"))
    result = check_sources(sources)
    result.findings[:0] = unreadable
    return result


# -- static checks over one BPMN document ----------------------------------------------------------

def _b(tag: str) -> str:
    return f"{{{BPMN_NS}}}{tag}"


_CONDITIONAL_GATEWAYS = {"exclusiveGateway", "inclusiveGateway"}
_SCOPES = {"process", "subProcess", "transaction", "adHocSubProcess"}
_SERVICE_IMPLEMENTATIONS = ("class", "delegateExpression", "expression")


def _sandbox_problems(source: str, mode: str) -> list[str]:
    try:
        from engine.sandbox import check_expression
    except ImportError:
        return []
    try:
        return [str(p) for p in check_expression(source, mode=mode)]
    except Exception as exc:  # noqa: BLE001 - any failure becomes a finding
        return [f"{exc.__class__.__name__}: {exc}"]


def _owner_id(node) -> str:
    while node is not None:
        if node.get("id") and local_name(node) not in ("conditionExpression", "condition", "timeDate",
                                                       "timeDuration", "timeCycle", "script"):
            return node.get("id")
        node = node.getparent()
    return "-"


_XML_NAME = re.compile(r"^[^\W\d][\w.\-]*$")  # an NCName, as BPMN's ids must be


def lint_document(root, process_ids: set, decision_ids: dict):
    """Yield (element_id, severity, message) for one BPMN document, without SpiffWorkflow.
    ``decision_ids`` maps the decisions of the DMN files to their output names."""
    for node in root.iter(f"{{{BPMN_NS}}}*"):
        if node.get("id") is not None and not _XML_NAME.match(node.get("id")):
            yield node.get("id"), "error", (f"{local_name(node)} id {node.get('id')!r} is not a valid XML name: use "
                                            "letters, digits, '_', '-' and '.', starting with a letter or '_'")
    yield from _duplicate_ids(root)
    yield from _lint_expressions(root)
    yield from _lint_references(root, process_ids, decision_ids)
    for process in root.iter(_b("process")):
        if process.get("isExecutable", "true") != "true":
            continue
        yield from _lint_scope(process)
        yield from _lint_event_subprocesses(process)
        yield from _lint_camunda_runtime(process)
        yield from _lint_ignored_features(process, decision_ids)


def _lint_camunda_runtime(process):
    """Camunda 7 runtime features that SpiffWorkflow does not have. Listeners and input/output mappings
    change the case data in Camunda: a model that relies on them would run differently here, so they are
    errors; asynchronous continuations and call activity variable mappings are warnings (the model runs,
    only the transaction boundaries or the data passed differ)."""
    for node in process.iter(CAMUNDA + "executionListener", CAMUNDA + "taskListener"):
        yield _owner_id(node), "error", (f"camunda:{local_name(node)} is not run by Fallwerk; "
                                         "do its work in a script task of its own")
    for node in process.iter(CAMUNDA + "inputOutput"):
        yield _owner_id(node), "error", ("camunda:inputOutput is not run by Fallwerk: the step reads and "
                                         "writes the case data directly; map values in a script task")
    for node in process.iter():
        if not isinstance(node.tag, str):
            continue
        if node.get(CAMUNDA + "asyncBefore") == "true" or node.get(CAMUNDA + "asyncAfter") == "true":
            yield _owner_id(node), "warning", ("camunda:asyncBefore/asyncAfter is ignored: Fallwerk runs the "
                                               "steps at once, and a failing step becomes an incident to retry")
        if local_name(node) == "callActivity" and any(mapping.get("variables") != "all" for mapping in
                                                      node.iter(CAMUNDA + "in", CAMUNDA + "out")):
            yield node.get("id"), "warning", ("camunda:in/camunda:out mappings other than variables=\"all\" are "
                                              "ignored: the called process receives all of the case data and "
                                              "returns all of its own")


_CONDITION_LANGUAGES = PYTHON_SCRIPT_FORMATS | {"juel"}


def _lint_ignored_features(root, decision_outputs):
    """BPMN and Camunda constructs that SpiffWorkflow accepts but runs differently from what the model
    says (or not at all)."""
    for event in root.iter(_b("intermediateThrowEvent"), _b("intermediateCatchEvent")):
        if event.find(_b("linkEventDefinition")) is not None:
            yield event.get("id"), "error", ("link events are not supported (the case would end at the throw "
                                             "event); connect the elements with a sequence flow instead")
    for node in root.iter(_b("conditionExpression")):
        language = (node.get("language") or "").strip().lower()
        if language not in _CONDITION_LANGUAGES:
            yield _owner_id(node), "error", (f"condition language {node.get('language')!r} is not supported; "
                                             "conditions are Python (or Camunda ${...} expressions)")
    for task in root.iter(_b("scriptTask")):
        if task.get(CAMUNDA + "resultVariable"):
            yield task.get("id"), "error", ("camunda:resultVariable on a script task is never set; assign the "
                                            "variable in the script")
    for task in root.iter(_b("businessRuleTask")):
        variable = task.get(CAMUNDA + "resultVariable")
        if not variable:
            continue
        outputs = decision_outputs.get(task.get(CAMUNDA + "decisionRef"))
        if not (outputs == [variable] and task.get(CAMUNDA + "mapDecisionResult") == "singleEntry"):
            yield task.get("id"), "error", (
                f"camunda:resultVariable {variable!r} is not supported: the decision's outputs are stored under "
                "their own names; remove it (it is only accepted with mapDecisionResult=\"singleEntry\" and a "
                "single output of the same name)")
    for definition in root.iter(_b("errorEventDefinition")):
        used = [a for a in ("errorCodeVariable", "errorMessageVariable") if definition.get(CAMUNDA + a)]
        if not used:
            continue
        event = definition.getparent()
        catching = local_name(event) in ("boundaryEvent", "startEvent", "intermediateCatchEvent")
        yield (event.get("id") or "-", "error" if catching else "warning",
               f"camunda:{used[0]} is not supported: the variable is never set" if catching
               else f"camunda:{used[0]} has no effect on a throwing event")
    for task in root.iter(_b("receiveTask")):
        if not task.get("messageRef"):
            yield task.get("id"), "error", ("receive task without messageRef: it would not wait for anything; "
                                            "name the message it waits for")


def _lint_event_subprocesses(process):
    """SpiffWorkflow 3.2 runs every event subprocess as non-interrupting: say so where the model asks
    for an interrupting one (BPMN's default for an event subprocess's start event). And it catches a
    non-interrupting message boundary event once, where BPMN waits for the next message again."""
    for sub in process.iter(_b("subProcess")):
        if sub.get("triggeredByEvent") != "true":
            continue
        for start in sub.iterfind(_b("startEvent")):
            if start.get("isInterrupting", "true") == "true":
                yield start.get("id"), "warning", (
                    "interrupting event subprocesses are not supported: it runs without interrupting the "
                    'process; set isInterrupting="false" or model the interruption with a boundary event')
    for boundary in process.iter(_b("boundaryEvent")):
        if boundary.get("cancelActivity") == "false" and boundary.find(_b("messageEventDefinition")) is not None:
            yield boundary.get("id"), "warning", (
                "a non-interrupting message boundary event catches its message once per run of its activity "
                "(SpiffWorkflow does not wait for it again); a second message is refused")


def _expression(text, node, what, mode="eval"):
    """Translate and sandbox-check one expression; yield findings."""
    try:
        python = translate(text.strip())
    except ExpressionError as exc:
        yield _owner_id(node), "error", f"{what}: {exc.message}"
        return
    for problem in _sandbox_problems(python, mode):
        yield _owner_id(node), "error", f"{what} {python!r}: {problem}"


def _lint_expressions(root):
    for node in root.iter(_b("conditionExpression")):
        if node.text and node.text.strip():
            yield from _expression(node.text, node, "condition")
    for node in root.iter(_b("condition")):
        if node.text and node.text.strip():
            yield from _expression(node.text, node, "condition")
        else:
            yield _owner_id(node), "error", "conditional event without a condition expression"
    for tag in ("loopCondition", "loopCardinality", "completionCondition"):
        for node in root.iter(_b(tag)):
            if node.text and node.text.strip():
                yield from _expression(node.text, node, tag)
    for kind in ("timeDate", "timeDuration", "timeCycle"):
        for node in root.iter(_b(kind)):
            try:
                python = timer_expression(node.text or "", kind)
            except ExpressionError as exc:
                yield _owner_id(node), "error", f"timer: {exc.message}"
                continue
            for problem in _sandbox_problems(python, "eval"):
                yield _owner_id(node), "error", f"timer {python!r}: {problem}"
    for node in root.iter(_b("scriptTask")):
        script_format = (node.get("scriptFormat") or "").strip().lower()
        if script_format not in PYTHON_SCRIPT_FORMATS:
            yield node.get("id"), "error", (f"script format {node.get('scriptFormat')!r} is not supported; "
                                            "scripts run in the Python sandbox")
            continue
        script = node.find(_b("script"))
        text = script.text if script is not None else None
        if not text or not text.strip():
            yield node.get("id"), "error", "script task without a script"
        elif has_expression(text) and text.strip().startswith(("${", "#{")):
            yield from _expression(text, node, "script")
        else:
            for problem in _sandbox_problems(text, "exec"):
                yield node.get("id"), "error", f"script: {problem}"
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        collection = node.get(CAMUNDA + "collection")
        if collection:
            try:
                name = translate(collection).strip()
                if not name.isidentifier():
                    raise ExpressionError(f"camunda:collection must name a variable, not {collection!r}")
            except ExpressionError as exc:
                yield _owner_id(node), "error", exc.message
        if local_name(node) == "userTask":
            yield from _lint_user_task(node)


def _lint_user_task(node):
    for attribute in ("assignee", "candidateGroups", "candidateUsers", "dueDate", "followUpDate", "priority"):
        value = node.get(CAMUNDA + attribute)
        if not value:
            continue
        try:
            parts = template(value)
        except ExpressionError as exc:
            yield node.get("id"), "error", f"camunda:{attribute}: {exc.message}"
            continue
        if not any(isinstance(part, TemplateExpression) for part in parts):
            yield from _lint_literal_attribute(node, attribute, value)
        for part in parts:
            if isinstance(part, TemplateExpression):
                for problem in _sandbox_problems(part.python, "eval"):
                    yield node.get("id"), "error", f"camunda:{attribute} {part.source!r}: {problem}"
    if node.get(CAMUNDA + "formKey") and node.get(CAMUNDA + "formRef"):
        yield node.get("id"), "warning", "both camunda:formKey and camunda:formRef are set; formRef is used"


_PRIORITY = re.compile(r"\s*-?[0-9]{1,9}\s*")


def _lint_literal_attribute(node, attribute, value):
    """A user task attribute without ${...}: what the task would get at run time must be valid now."""
    if attribute in ("dueDate", "followUpDate"):
        try:
            check_iso_value(value)
        except ExpressionError as exc:
            yield node.get("id"), "error", f"camunda:{attribute}: {exc.message}"
    elif attribute == "priority" and not _PRIORITY.fullmatch(value):
        yield node.get("id"), "error", f"camunda:priority {value!r} is not a whole number (or a ${{...}} expression)"


def _lint_references(root, process_ids, decision_ids):
    referenced_messages = {n.get("messageRef") for n in root.iter() if isinstance(n.tag, str)
                           and n.get("messageRef")}
    for message in root.iter(_b("message")):
        if not (message.get("name") or "").strip():
            used = message.get("id") in referenced_messages
            yield (message.get("id") or "-", "error" if used else "warning",
                   "message without a name; message events are matched by name")
    for store in root.iter(_b("dataStore")):
        yield store.get("id") or "-", "warning", (f"data store {store.get('name') or store.get('id')!r} has "
                                                  "no implementation; tasks that use it are rejected")
    for call in root.iter(_b("callActivity")):
        called = call.get("calledElement")
        if not called:
            yield call.get("id"), "error", "call activity without calledElement"
        elif has_expression(called):
            yield call.get("id"), "error", f"an expression as calledElement is not supported: {called!r}"
        elif called not in process_ids:
            yield call.get("id"), "error", f"called process {called!r} was not found in the given files"
    for task in root.iter(_b("businessRuleTask")):
        ref = task.get(CAMUNDA + "decisionRef")
        if not ref:
            yield task.get("id"), "error", "business rule task without camunda:decisionRef"
        elif ref not in decision_ids:
            yield task.get("id"), "error", f"decision {ref!r} was not found in the given DMN files"
    for task in root.iter(_b("serviceTask"), _b("sendTask")):
        used = [a for a in _SERVICE_IMPLEMENTATIONS if task.get(CAMUNDA + a)]
        if used:
            effect = ("the task waits as external work until it is completed from outside"
                      if task.tag == _b("serviceTask") else "the task only sends its BPMN message")
            yield task.get("id"), "warning", f"camunda:{used[0]} is not run by Fallwerk; {effect}"


def lint_known_names(root, known: KnownNames):
    """Candidate groups (`unit`, `unit:role`) and form references naming nothing that exists. Values with
    an expression (`${responsible_unit}`) are resolved at run time and are not checked here."""
    for node in root.iter(_b("userTask")):
        yield from _lint_candidate_groups(node, known)
        ref = node.get(CAMUNDA + "formRef")
        if known.forms is not None and ref and not has_expression(ref) and ref not in known.forms:
            yield node.get("id"), "error", f"form '{ref}' referenced by camunda:formRef does not exist"


def _lint_candidate_groups(node, known: KnownNames):
    for group in (node.get(CAMUNDA + "candidateGroups") or "").split(","):
        group = group.strip()
        if not group or has_expression(group):
            continue
        unit, _, role = group.partition(":")
        if known.units is not None and unit not in known.units:
            yield node.get("id"), "error", f"candidate group '{group}': there is no unit '{unit}'"
        elif role and known.roles is not None and role not in known.roles:
            yield node.get("id"), "error", (f"candidate group '{group}': there is no role '{role}' "
                                            f"(roles: {', '.join(sorted(known.roles))})")


def _lint_scope(scope):
    """Gateway conditions, conditions on non-gateway flows and reachability inside one scope."""
    children = [c for c in scope if isinstance(c.tag, str) and c.tag.startswith(f"{{{BPMN_NS}}}")]
    nodes = {c.get("id"): c for c in children if local_name(c) in FLOW_NODE_TAGS and c.get("id")}
    flows = [c for c in children if local_name(c) == "sequenceFlow"]
    outgoing: dict[str, list] = {}
    for flow in flows:
        outgoing.setdefault(flow.get("sourceRef"), []).append(flow)

    yield from _lint_structure(nodes, flows)
    for node_id, node in nodes.items():
        kind, out = local_name(node), outgoing.get(node_id, [])
        conditional = [f for f in out if _condition_text(f)]
        if kind in _CONDITIONAL_GATEWAYS and len(out) > 1:
            default = node.get("default")
            for flow in out:
                if flow.get("id") != default and not _condition_text(flow):
                    yield flow.get("id"), "error", (f"sequence flow leaving gateway {node_id!r} has no "
                                                    "condition and is not the default flow")
            if not default and len(conditional) == len(out):
                yield node_id, "warning", ("gateway has conditions but no default flow: when no condition "
                                           "holds, the instance stops with an error")
        elif kind not in _CONDITIONAL_GATEWAYS and conditional:
            for flow in conditional:
                yield flow.get("id"), "warning", (f"condition on a flow leaving {kind} {node_id!r} is "
                                                  "ignored; put an exclusive gateway in front")

    reachable = _reachable(scope, nodes, outgoing)
    for node_id, node in nodes.items():
        if node_id not in reachable:
            yield node_id, "warning", "unreachable: no path from a start event leads here"
        elif local_name(node) in _SCOPES:
            yield from _lint_scope(node)


_ACTIVITIES = {"task", "userTask", "manualTask", "scriptTask", "serviceTask", "sendTask", "receiveTask",
               "businessRuleTask", "callActivity", "subProcess", "transaction", "adHocSubProcess"}


def _lint_structure(nodes, flows):
    """Sequence flows and boundary events must connect elements of the same scope; the stock parser
    reports a missing target with a misleading message, loops on a start event's flow to itself, and
    runs a boundary event attached to nothing as a plain event."""
    for flow in flows:
        for end in ("sourceRef", "targetRef"):
            ref = flow.get(end)
            if not ref:
                yield flow.get("id"), "error", f"sequence flow without {end}"
            elif ref not in nodes:
                yield flow.get("id"), "error", (f"sequence flow {end} {ref!r} names no flow element of this "
                                                "process or sub-process")
            elif end == "targetRef" and local_name(nodes[ref]) == "startEvent":
                yield flow.get("id"), "error", (f"sequence flow into start event {ref!r}: a start event has "
                                                "no incoming flows")
    for node_id, node in nodes.items():
        if local_name(node) != "boundaryEvent":
            continue
        ref = node.get("attachedToRef")
        if not ref or ref not in nodes:
            yield node_id, "error", f"boundary event attached to {ref!r}, which is no element of this process"
        elif local_name(nodes[ref]) not in _ACTIVITIES:
            yield node_id, "error", (f"boundary event attached to {local_name(nodes[ref])} {ref!r}, which is "
                                     "not an activity")


def _duplicate_ids(root):
    seen: dict[str, int] = {}
    for node in root.iter(f"{{{BPMN_NS}}}*"):
        node_id = node.get("id")
        if node_id is None:
            continue
        if node_id in seen:
            yield node_id, "error", (f"id {node_id!r} is used twice (lines {seen[node_id]} and {node.sourceline}); "
                                     "every element needs its own id")
        else:
            seen[node_id] = node.sourceline


def _condition_text(flow) -> str | None:
    expression = flow.find(_b("conditionExpression"))
    if expression is None or not (expression.text or "").strip():
        return None
    return expression.text


def _reachable(scope, nodes, outgoing) -> set[str]:
    if local_name(scope) == "adHocSubProcess":
        return set(nodes)
    todo = [i for i, n in nodes.items() if local_name(n) == "startEvent"
            or n.get("triggeredByEvent") == "true" or n.get("isForCompensation") == "true"
            or (local_name(n) == "intermediateCatchEvent" and n.find(_b("linkEventDefinition")) is not None)]
    if not any(local_name(n) == "startEvent" for n in nodes.values()):
        return set(nodes)  # no start event: the parser reports that; don't add noise here
    seen: set[str] = set()
    boundary = {}
    for node_id, node in nodes.items():
        if local_name(node) == "boundaryEvent":
            boundary.setdefault(node.get("attachedToRef"), []).append(node_id)
    while todo:
        current = todo.pop()
        if current in seen or current not in nodes:
            continue
        seen.add(current)
        todo += [f.get("targetRef") for f in outgoing.get(current, [])]
        todo += boundary.get(current, [])
    return seen
