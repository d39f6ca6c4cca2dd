"""Inline models and forms for the web tests (the network's real procedures are tested elsewhere)."""

from __future__ import annotations

import json

from tests import modelkit
from tests.modelkit import flow, user_task

PERSONAL = "Zeynep Demir-Personal"  # a personal value no viewer without case access may ever see


def _form(form_id: str, components: list[dict]) -> bytes:
    return json.dumps({"id": form_id, "type": "default", "schemaVersion": 16, "components": components}).encode()


INTAKE = _form("intake", [
    {"id": "f1", "type": "textfield", "key": "client_name", "label": "Name der ratsuchenden Person",
     "validate": {"required": True, "maxLength": 200}, "properties": {"personal": "true"}},
    {"id": "f2", "type": "select", "key": "responsible_unit", "label": "Zuständige Stelle",
     "values": [{"value": "rz-west", "label": "RZ West"}, {"value": "opferberatung", "label": "Opferberatung"}],
     "validate": {"required": True}},
    {"id": "f3", "type": "textfield", "key": "topic", "label": "Thema"},
])
ADVICE = _form("advice", [
    {"id": "a1", "type": "number", "key": "sessions", "label": "Anzahl der Sitzungen",
     "validate": {"required": True, "min": 1, "max": 20}},
    {"id": "a2", "type": "textarea", "key": "advice_notes", "label": "Notizen", "properties": {"personal": "true"}},
    {"id": "a3", "type": "checkbox", "key": "handover_consent", "label": "Einwilligung zur Übergabe liegt vor"},
])
REVIEW = _form("review", [
    {"id": "r1", "type": "radio", "key": "decision", "label": "Entscheidung", "validate": {"required": True},
     "values": [{"value": "takeover", "label": "Übernahme"}, {"value": "declined", "label": "Abgelehnt"}]},
])
START = _form("start_request", [
    {"id": "s1", "type": "textfield", "key": "subject", "label": "Betreff", "validate": {"required": True}},
])


def casework() -> bytes:
    """Intake (by the starter) -> advice (responsible unit, due in 2 days) -> close; escalation subprocess."""
    body = "\n".join([
        '<bpmn:startEvent id="start" name="Anfrage eingegangen" />',
        user_task("intake", "Anfrage erfassen",
                  'camunda:formRef="intake" camunda:assignee="${initiator}" camunda:candidateGroups="lks"'),
        user_task("advise", "Beraten", 'camunda:formRef="advice" camunda:candidateGroups="${responsible_unit}" '
                  'camunda:dueDate="P2D" camunda:priority="60"'),
        user_task("close", "Abschließen", 'camunda:candidateGroups="${responsible_unit}"'),
        '<bpmn:endEvent id="end" name="abgeschlossen" />',
        flow("f1", "start", "intake"), flow("f2", "intake", "advise"), flow("f3", "advise", "close"),
        flow("f4", "close", "end"),
        '<bpmn:subProcess id="escalation" name="Übergabe an das Netzwerk" triggeredByEvent="true">'
        '<bpmn:startEvent id="esc_start" name="Unterstützung angefordert" isInterrupting="false">'
        '<bpmn:messageEventDefinition id="esc_med" messageRef="Msg_escalation" /></bpmn:startEvent>'
        + user_task("review", "Eskalation prüfen", 'camunda:formRef="review" camunda:candidateGroups="lks:coordinator"')
        + '<bpmn:endEvent id="esc_end" />'
        + flow("e1", "esc_start", "review") + flow("e2", "review", "esc_end")
        + "</bpmn:subProcess>",
    ])
    extra = '<bpmn:message id="Msg_escalation" name="escalation_requested" />\n'
    return modelkit.definitions("casework", body, extra, name="Beratung (Test)")


def with_start_form() -> bytes:
    """A process with a start form (the fixture sets `start_form`: the engine does not read start forms yet)."""
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        user_task("work", "Bearbeiten", 'camunda:candidateGroups="rz-west"'),
        '<bpmn:endEvent id="end" />',
        flow("f1", "start", "work"), flow("f2", "work", "end"),
    ])
    return modelkit.definitions("request_form", body, name="Anfrage mit Startformular")


def sources() -> dict[str, bytes]:
    return {"casework.bpmn": casework(), "request_form.bpmn": with_start_form(), "intake.form": INTAKE,
            "advice.form": ADVICE, "review.form": REVIEW}
