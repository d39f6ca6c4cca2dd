"""The BPMN/DMN parser: SpiffWorkflow's Camunda parser plus what Fallwerk needs.

- reads the Camunda user task attributes the stock parser ignores into ``spec.extensions["camunda"]``;
- translates Camunda ``${...}`` expressions (conditions, timers, scripts, multi-instance, conditional
  events, message payloads) to the sandbox language at parse time;
- turns the stock parser's silent and crashing failures into ``ValidationException`` with the element:
  sequence flows without ``id`` get a stable generated id, other flow elements without ``id`` are
  rejected, business rule tasks without ``decisionRef``, messages without name, data stores without an
  implementation, empty conditions, self-calling call activities, called processes that are missing;
- registers every decision of a DMN file (the stock parser only the first).
"""

from __future__ import annotations

from copy import deepcopy

from SpiffWorkflow.bpmn import BpmnEvent
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser, full_tag
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.data_spec import TaskDataReference
from SpiffWorkflow.bpmn.specs.defaults import ManualTask
from SpiffWorkflow.bpmn.specs.event_definitions.conditional import ConditionalEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import SubWorkflowTask as SubWorkflowTaskMixin
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.camunda.parser.event_parsers import CamundaEventDefinitionParser
from SpiffWorkflow.camunda.parser.task_spec import (
    CAMUNDA_MODEL_NS,
    BusinessRuleTaskParser,
    CallActivityParser,
    CamundaTaskParser,
    ScriptTaskParser,
    UserTaskParser,
)
from SpiffWorkflow.camunda.serializer.task_spec import UserTaskConverter
from SpiffWorkflow.camunda.specs.business_rule_task import BusinessRuleTask
from SpiffWorkflow.camunda.specs.event_definitions import MessageEventDefinition as CamundaMessageEventDefinition
from SpiffWorkflow.camunda.specs.user_task import UserTask
from SpiffWorkflow.dmn.parser.DMNParser import DMNParser

from engine.errors import ExpressionError
from engine.expressions import has_expression, timer_expression, translate
from engine.feel_unary import translate_input_entry

CAMUNDA = "{" + CAMUNDA_MODEL_NS + "}"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
PYTHON_SCRIPT_FORMATS = {"", "python", "python3", "py", "text/x-python", "text/python"}
USER_TASK_ATTRIBUTES = ("assignee", "dueDate", "followUpDate", "priority", "formKey", "formRef",
                        "formRefBinding", "formRefVersion")
START_EVENT_ATTRIBUTES = ("formKey", "formRef", "formRefBinding", "formRefVersion", "initiator")
SERVICE_ATTRIBUTES = ("type", "topic", "class", "delegateExpression", "expression", "resultVariable")
#: BPMN elements that are flow nodes: without an id nothing can connect to them
FLOW_NODE_TAGS = {
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent", "task",
    "userTask", "manualTask", "scriptTask", "serviceTask", "sendTask", "receiveTask", "businessRuleTask",
    "callActivity", "subProcess", "transaction", "adHocSubProcess", "exclusiveGateway", "inclusiveGateway",
    "parallelGateway", "eventBasedGateway", "complexGateway",
}
DMN_ID_TAGS = {"decision", "decisionTable", "input", "output", "rule", "inputEntry", "outputEntry"}


class MessageEventDefinition(CamundaMessageEventDefinition):
    """Camunda's message event, with a payload dict merged into the receiving task's data.

    Camunda's own flavour stores every received payload under one variable (`<task>_Response` unless
    `camunda:resultVariable` names one) and fails when a throwing event has no `camunda:expression`.
    Here a named result variable still wins; otherwise the keys of a dict payload become variables,
    and a throw without an expression sends a copy of the task's data (the BPMN default).
    """

    def throw(self, my_task):
        if self.expression is None:
            payload = deepcopy(my_task.data)
        else:
            payload = my_task.workflow.script_engine.evaluate(my_task, self.expression)
        correlations = self.get_correlations(my_task, payload)
        my_task.workflow.correlations.update(correlations)
        my_task.workflow.top_workflow.catch(BpmnEvent(self, payload={"payload": payload,
                                                                     "result_var": self.result_var},
                                                      correlations=correlations))

    def get_correlations(self, my_task, payload):
        # Correlation properties are read from the message content, not from its envelope.
        if isinstance(payload, dict) and set(payload) == {"payload", "result_var"}:
            payload = payload["payload"]
        if not self.correlation_properties:
            return {}
        return super().get_correlations(my_task, payload if isinstance(payload, dict) else {})

    def update_internal_data(self, my_task, event):
        my_task.internal_data[self.name] = event.payload

    def update_task_data(self, my_task):
        event_data = my_task.internal_data.get(self.name) or {}
        payload = event_data.get("payload")
        result_var = event_data.get("result_var") or self.result_var
        if result_var:
            my_task.data[result_var] = payload
        elif isinstance(payload, dict):
            my_task.data.update(payload)
        elif payload is not None:
            my_task.data[f"{self.name}_payload"] = payload


def invalid(message: str, node=None, filename: str | None = None) -> ValidationException:
    """A ValidationException that also knows the element's source line."""
    exc = ValidationException(message, node=node, file_name=filename)
    if node is not None and getattr(node, "sourceline", None):
        exc.line_number = node.sourceline
    return exc


def local_name(node) -> str:
    tag = node.tag if isinstance(node.tag, str) else ""
    return tag.rsplit("}", 1)[-1]


def split_list(value: str | None) -> list[str]:
    """``"a, b ,c"`` -> ``["a", "b", "c"]``; the parts of a ``${...}`` stay intact."""
    if not value:
        return []
    parts, depth, current = [], 0, []
    for ch in value:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


class FallwerkTaskMixin:
    """Behaviour added to every task parser of FallwerkParser (put first in the bases)."""

    def _translate(self, text, node=None):
        if text is None:
            return None
        try:
            return translate(text)
        except ExpressionError as exc:
            raise invalid(exc.message, node if node is not None else self.node, self.filename) from None

    def parse_extensions(self, node=None):
        extensions = CamundaTaskParser.parse_extensions(self, node)  # camunda:properties for every task
        implementation = {key: self.node.get(CAMUNDA + key) for key in SERVICE_ATTRIBUTES
                          if self.node.get(CAMUNDA + key)}
        if implementation:
            camunda = {**(extensions.get("camunda") or {}), **implementation}
            if implementation.get("type") == "external":
                camunda["external"] = True
            extensions["camunda"] = camunda
        if local_name(self.node) == "startEvent":
            start = self._start_event_attributes()
            if start:
                extensions["camunda"] = {**(extensions.get("camunda") or {}), **start}
        return extensions

    get_enum_field = UserTaskParser.get_enum_field  # used by UserTaskParser.get_form on start events

    def _start_event_attributes(self) -> dict:
        """A start event's form (formKey, formRef or inline formData) and `camunda:initiator`."""
        attrs = {key: self.node.get(CAMUNDA + key) for key in (*START_EVENT_ATTRIBUTES,)
                 if self.node.get(CAMUNDA + key)}
        if self.xpath(".//camunda:formData/camunda:formField"):
            form = UserTaskParser.get_form(self)
            if any(not field.id for field in form.fields):
                raise invalid("camunda:formField without id", self.node, self.filename)
            attrs["form"] = UserTaskConverter.form_to_dict(None, form)
        return attrs

    def parse_condition(self, sequence_flow):
        text = super().parse_condition(sequence_flow)
        if text is None or not text.strip():
            return None
        return self._translate(text.strip(), sequence_flow)

    def parse_timer_event(self, event):
        name = self.node.get("name", self.node.get("id"))
        description = self.get_event_description(event)
        classes = {"timeDate": TimeDateEventDefinition, "timeDuration": DurationTimerEventDefinition,
                   "timeCycle": CycleTimerEventDefinition}
        for kind, cls in classes.items():
            found = self._xpath(event, f"./bpmn:{kind}")
            if found:
                try:
                    expression = timer_expression(found[0].text or "", kind)
                except ExpressionError as exc:
                    raise invalid(f"Timer: {exc.message}", self.node, self.filename) from None
                return cls(name, expression, description=description)
        raise invalid("Timer event without timeDate, timeDuration or timeCycle", self.node, self.filename)

    def parse_conditional_event(self, event):
        found = self._xpath(event, "./bpmn:condition")
        text = found[0].text if found else None
        if text is None or not text.strip():
            raise invalid("Conditional event without a condition expression", self.node, self.filename)
        return ConditionalEventDefinition(self._translate(text.strip()),
                                          description=self.get_event_description(event))

    def parse_message_event(self, message_event):
        message_ref = message_event.get("messageRef")
        if message_ref:
            messages = self.doc_xpath(f'.//bpmn:message[@id="{message_ref}"]')
            if not messages:
                raise invalid(f"Message '{message_ref}' is not defined", self.node, self.filename)
            if not (messages[0].get("name") or "").strip():
                raise invalid(f"Message '{message_ref}' has no name; messages are matched by name",
                              self.node, self.filename)
        # Always the Camunda definition: the stock BPMN one (used by send and receive tasks) cannot be
        # stored by the Camunda serializer configuration.
        stock = CamundaEventDefinitionParser.parse_message_event(self, message_event)
        definition = MessageEventDefinition(stock.name, stock.correlation_properties, stock.expression,
                                            stock.result_var)
        payload = getattr(definition, "expression", None)
        if payload is not None:
            definition.expression = self._translate(payload)
        return definition

    def _check_data_store_refs(self, xpath):
        stores = getattr(self.process_parser.parser, "unsupported_data_stores", {})
        for ref in self.xpath(xpath):
            store_ref = self.doc_xpath(f'.//bpmn:dataStoreReference[@id="{ref.text}"]')
            store_id = store_ref[0].get("dataStoreRef") if store_ref else None
            if store_id in stores:
                raise invalid(f"Data store '{stores[store_id] or store_id}' has no implementation; "
                              "data stores are not supported", self.node, self.filename)

    def _resolve_data_refs(self, xpath, direction, parse):
        self._check_data_store_refs(xpath)
        try:
            return parse()
        except ValidationException as exc:
            if not str(exc.args[0]).startswith("Cannot resolve"):
                raise
            refs = ", ".join(repr(ref.text) for ref in self.xpath(xpath))
            raise invalid(f"Data {direction} association refers to {refs}, which is neither a data object "
                          "reference nor a data store reference", self.node, self.filename) from None

    def parse_incoming_data_references(self):
        return self._resolve_data_refs("./bpmn:dataInputAssociation/bpmn:sourceRef", "input",
                                       super().parse_incoming_data_references)

    def parse_outgoing_data_references(self):
        return self._resolve_data_refs("./bpmn:dataOutputAssociation/bpmn:targetRef", "output",
                                       super().parse_outgoing_data_references)

    def _add_loop_task(self, loop_characteristics):
        super()._add_loop_task(loop_characteristics)
        condition = self.task.condition
        self.task.condition = self._translate(condition.strip()) if condition and condition.strip() else None

    def _add_multiinstance_task(self, loop_characteristics):
        # Camunda semantics for every activity (the stock Camunda parser applies them only to some
        # task types; script, service, send and receive tasks got the BPMN ones, whose specs the
        # Camunda serializer cannot store).
        prefix = "./bpmn:multiInstanceLoopCharacteristics"
        if self.attribute("collection", "camunda", loop_characteristics) is None \
                and not self.xpath(f"{prefix}/bpmn:loopCardinality"):
            extra = " (bpmn:loopDataInputRef is not supported)" if self.xpath(f"{prefix}/bpmn:loopDataInputRef") else ""
            raise invalid(f"A multi-instance activity needs camunda:collection or bpmn:loopCardinality{extra}",
                          self.node, self.filename)
        CamundaTaskParser._add_multiinstance_task(self, loop_characteristics)
        task = self.task
        if task.cardinality is not None:
            task.cardinality = self._translate(task.cardinality.strip())
        if task.condition is not None:
            task.condition = self._translate(task.condition.strip()) if task.condition.strip() else None
        collection = task.data_output.bpmn_id if task.cardinality is None and task.data_output else None
        if collection is not None:
            name = self._translate(collection).strip()
            if not name.isidentifier():
                raise invalid(f"camunda:collection must name a variable, not {collection!r}",
                              self.node, self.filename)
            task.data_output = TaskDataReference(name)


class FallwerkUserTaskParser(FallwerkTaskMixin, UserTaskParser):
    """User tasks: Camunda assignment, dates, priority and form references into extensions."""

    def parse_extensions(self, node=None):
        extensions = super().parse_extensions(node)
        camunda = extensions.get("camunda") or {}
        camunda |= {key: self.node.get(CAMUNDA + key) for key in USER_TASK_ATTRIBUTES
                   if self.node.get(CAMUNDA + key) is not None}
        camunda["candidateGroups"] = split_list(self.node.get(CAMUNDA + "candidateGroups"))
        camunda["candidateUsers"] = split_list(self.node.get(CAMUNDA + "candidateUsers"))
        camunda["lane"] = self.lane
        form = getattr(self.task, "form", None)
        if form is not None and form.fields:
            camunda["formFields"] = [field.id for field in form.fields]
        extensions["camunda"] = camunda
        return extensions

    def get_form(self):
        # The stock parser reads camunda:formData whether or not formKey is set (its KeyError guard
        # never fires); keep it, but reject form fields without id, which could never be stored.
        form = super().get_form()
        for field in form.fields:
            if not field.id:
                raise invalid("camunda:formField without id", self.node, self.filename)
        return form


class FallwerkBusinessRuleTaskParser(FallwerkTaskMixin, BusinessRuleTaskParser):

    @staticmethod
    def get_decision_ref(node):
        return node.get(CAMUNDA + "decisionRef")

    def create_task(self):
        ref = self.get_decision_ref(self.node)
        if not ref:
            raise invalid("Business rule task without camunda:decisionRef", self.node, self.filename)
        if has_expression(ref):
            raise invalid(f"An expression as camunda:decisionRef is not supported: {ref!r}",
                          self.node, self.filename)
        return super().create_task()


class FallwerkScriptTaskParser(FallwerkTaskMixin, ScriptTaskParser):

    def get_script(self):
        script_format = (self.node.get("scriptFormat") or "").strip().lower()
        if script_format not in PYTHON_SCRIPT_FORMATS:
            raise invalid(f"Script format {self.node.get('scriptFormat')!r} is not supported; "
                          "scripts run in the Python sandbox", self.node, self.filename)
        if self.node.get(CAMUNDA + "resource"):
            raise invalid("External scripts (camunda:resource) are not supported", self.node, self.filename)
        scripts = self.xpath("./bpmn:script")
        text = scripts[0].text if scripts else None
        if text is None or not text.strip():
            raise invalid("Script task without a script", self.node, self.filename)
        if text.strip().startswith(("${", "#{")):
            return self._translate(text.strip())
        return text


class FallwerkCallActivityParser(FallwerkTaskMixin, CallActivityParser):

    def create_task(self):
        called = self.node.get("calledElement")
        if called and has_expression(called):
            raise invalid(f"An expression as calledElement is not supported: {called!r}",
                          self.node, self.filename)
        current = self.process_parser
        while current is not None:
            if called == current.bpmn_id:
                raise invalid(f"Call activity calls its own process '{called}' (endless recursion)",
                              self.node, self.filename)
            current = current.parent
        return super().create_task()


def _wrap(parser_class):
    if issubclass(parser_class, FallwerkTaskMixin):
        return parser_class
    return type(f"Fallwerk{parser_class.__name__}", (FallwerkTaskMixin, parser_class), {})


def _override_classes():
    classes = {**BpmnParser.PARSER_CLASSES, **CamundaParser.OVERRIDE_PARSER_CLASSES}
    classes[full_tag("userTask")] = (FallwerkUserTaskParser, UserTask)
    classes[full_tag("businessRuleTask")] = (FallwerkBusinessRuleTaskParser, BusinessRuleTask)
    classes[full_tag("scriptTask")] = (FallwerkScriptTaskParser, classes[full_tag("scriptTask")][1])
    classes[full_tag("callActivity")] = (FallwerkCallActivityParser, classes[full_tag("callActivity")][1])
    # A service task has no implementation we could run (camunda:class and friends are Java): it
    # waits as external work, a manual task mirrored with kind "external" and completed from outside
    # (its camunda:* attributes stay in extensions["camunda"]).
    classes[full_tag("serviceTask")] = (classes[full_tag("serviceTask")][0], ManualTask)
    return {tag: (_wrap(parser), spec) for tag, (parser, spec) in classes.items()}


class DecisionParser(DMNParser):
    """Parses one decision of a DMN document (the stock parser handles only the first)."""

    def __init__(self, p, node, nsmap, decision, filename=None):
        super().__init__(p, node, nsmap, filename=filename)
        self.decision_node = decision

    @property
    def bpmn_id(self):
        return self.decision_node.get("id")

    def get_name(self):
        return self.decision_node.get("name")

    def parse(self):
        if self.decision is None:
            if not self.decision_node.findall("dmn:decisionTable", namespaces=self.nsmap):
                raise invalid("Decision without a decision table (literal expressions are not supported)",
                              self.decision_node, self.filename)
            self.decision = self._parse_decision([self.decision_node])
            self._translate_input_entries()

    def _translate_input_entries(self):
        """FEEL unary tests in input entries become explicit sandbox expressions (engine.feel_unary):
        SpiffWorkflow would read `50,60,70` or `not(50)` as Python and answer wrongly."""
        for table in self.decision.decisionTables:
            for rule in table.rules:
                for entry in rule.inputEntries:
                    try:
                        entry.lhs = [translate_input_entry(entry.text)]
                    except ExpressionError as exc:
                        node = next((n for n in self.decision_node.iter() if n.get("id") == entry.id), None)
                        raise invalid(f"rule {rule.row_number}: {exc.message}", node, self.filename) from None


class FallwerkParser(CamundaParser):
    """The engine's parser. Use it for everything; never the stock CamundaParser."""

    OVERRIDE_PARSER_CLASSES = _override_classes()

    def __init__(self, namespaces=None, validator=None):
        super().__init__(namespaces=namespaces, validator=validator)
        self.unsupported_data_stores: dict[str, str | None] = {}
        self.process_files: dict[str, str | None] = {}
        self.decision_files: dict[str, str | None] = {}
        self.failed_specs: dict[str, Exception] = {}

    # -- BPMN ------------------------------------------------------------------------------------
    def add_bpmn_xml(self, bpmn, filename=None):
        assign_generated_ids(bpmn, filename)
        super().add_bpmn_xml(bpmn, filename)

    def _add_processes(self, bpmn, filename=None):
        for process in bpmn.xpath(".//bpmn:process", namespaces=self.namespaces):
            pid = process.get("id")
            if not pid:
                raise invalid("Process without id", process, filename)
            if pid in self.process_parsers:
                other = self.process_files.get(pid)
                raise invalid(f"Process '{pid}' is defined twice (also in {other or 'another file'})",
                              process, filename)
            self.process_files[pid] = filename
        super()._add_processes(bpmn, filename)

    def create_parser(self, node, filename=None, lane=None):
        if node.get("id") in self.process_parsers:
            other = self.process_files.get(node.get("id"))
            raise invalid(f"Sub-process id '{node.get('id')}' is also the id of another process"
                          f"{f' (in {other})' if other else ''}; ids must be unique across files", node, filename)
        super().create_parser(node, filename, lane)

    def _add_data_stores(self, bpmn):
        for store in bpmn.xpath(".//bpmn:dataStore", namespaces=self.namespaces):
            name = store.get("name")
            if store.get("id") and name not in self.DATA_STORE_CLASSES:
                self.unsupported_data_stores[store.get("id")] = name
                store.getparent().remove(store)  # the stock parser would refuse the whole file
        super()._add_data_stores(bpmn)

    def _find_dependencies(self, process):
        for call in process.xpath(".//bpmn:callActivity", namespaces=self.namespaces):
            if call.get("calledElement"):
                self.process_dependencies.add(call.get("calledElement"))
        for task in process.xpath(".//bpmn:businessRuleTask", namespaces=self.namespaces):
            if task.get(CAMUNDA + "decisionRef"):
                self.dmn_dependencies.add(task.get(CAMUNDA + "decisionRef"))

    def get_spec(self, process_id, required=True):
        # A process whose parse failed keeps a half-built spec in the stock parser; a later call
        # would return it silently. Fail the same way every time instead.
        if process_id in self.failed_specs:
            raise self.failed_specs[process_id]
        try:
            return super().get_spec(process_id, required)
        except Exception as exc:
            self.failed_specs[process_id] = exc
            raise

    def get_subprocess_specs(self, name, specs=None, require_call_activity_specs=True):
        used = specs if specs is not None else {}
        for task_spec in self.get_spec(name).task_specs.values():
            if isinstance(task_spec, SubWorkflowTaskMixin) and task_spec.spec not in used:
                if task_spec.spec not in self.process_parsers:
                    if not require_call_activity_specs:
                        continue
                    raise ValidationException(
                        f"Called process '{task_spec.spec}' was not found in the given files",
                        id=task_spec.bpmn_id or task_spec.name, file_name=self.process_files.get(name))
                used[task_spec.spec] = self.get_spec(task_spec.spec)
                self.get_subprocess_specs(task_spec.spec, used, require_call_activity_specs)
        return used

    # -- DMN -------------------------------------------------------------------------------------
    def add_dmn_xml(self, node, filename=None):
        assign_generated_ids(node, filename)
        namespaces = self.namespaces.copy()
        namespaces.update({k: v for k, v in node.nsmap.items() if k is not None})
        if None in node.nsmap:
            namespaces["dmn"] = node.nsmap[None]
        decisions = node.findall("dmn:decision", namespaces=namespaces) if "dmn" in namespaces else []
        if not decisions:
            raise invalid("DMN file without decisions", node, filename)
        for decision in decisions:
            parser = DecisionParser(self, node, namespaces, decision, filename=filename)
            if parser.bpmn_id in self.dmn_parsers:
                other = self.decision_files.get(parser.bpmn_id)
                raise invalid(f"Decision '{parser.bpmn_id}' is defined twice "
                              f"(also in {other or 'another file'})", decision, filename)
            self.decision_files[parser.bpmn_id] = filename
            self.dmn_parsers[parser.bpmn_id] = parser
            self.dmn_parsers_by_name[parser.get_name()] = parser


def assign_generated_ids(root, filename=None) -> None:
    """Give sequence flows and DMN table parts without ``id`` a stable id; reject id-less flow nodes.

    A generated id is ``__generated_<tag>_<n>``, n counting the id-less elements of that tag in
    document order, so parsing the same file twice gives the same ids.
    """
    counters: dict[str, int] = {}
    for node in root.iter():
        if not isinstance(node.tag, str) or node.get("id"):
            continue
        tag = local_name(node)
        namespace = node.tag[1:].split("}", 1)[0] if node.tag.startswith("{") else ""
        if namespace == BPMN_NS and tag in FLOW_NODE_TAGS:
            raise invalid(f"<{tag}> without id (line {node.sourceline}): nothing can connect to it",
                          node, filename)
        if (namespace == BPMN_NS and tag == "sequenceFlow") or ("DMN" in namespace and tag in DMN_ID_TAGS):
            counters[tag] = counters.get(tag, 0) + 1
            node.set("id", f"__generated_{tag}_{counters[tag]}")
