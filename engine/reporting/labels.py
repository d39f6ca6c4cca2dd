"""Names for the codes the figures and lists show: units, territories, BPMN elements, form options.

Codes in the facts (client types, topics, indicator values, escalation kinds ...) are the option values
of the network's forms, so their labels come from the deployed forms (newest version first). Units and
territories come from the organisation tables. Everything is read per request and cached by content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..memo import Memo
from ..models import ProcessDefinition, Territory, Unit
from ..specs import DEFAULT_CACHE, SpecCache

_memo = Memo(512)


@dataclass
class Labels:
    units: dict[str, str] = field(default_factory=dict)
    territories: dict[str, str] = field(default_factory=dict)
    elements: dict[str, str] = field(default_factory=dict)  # BPMN id -> name (newest versions first)
    options: dict[str, dict[str, str]] = field(default_factory=dict)  # form field key -> {value: label}
    fields: dict[str, str] = field(default_factory=dict)  # form field key -> label
    processes: dict[str, str] = field(default_factory=dict)  # process key -> name

    def option(self, key: str, value: str | None) -> str:
        if value is None:
            return ""
        return self.options.get(key, {}).get(value, value)


def newest_definitions(session: Session) -> list[ProcessDefinition]:
    newest = (select(ProcessDefinition.key, func.max(ProcessDefinition.version).label("v"))
              .group_by(ProcessDefinition.key).subquery())
    return list(session.scalars(
        select(ProcessDefinition)
        .join(newest, (newest.c.key == ProcessDefinition.key) & (newest.c.v == ProcessDefinition.version))
        .order_by(ProcessDefinition.name)))


def labels(session: Session, *, specs: SpecCache = DEFAULT_CACHE) -> Labels:
    result = Labels()
    result.units = dict(session.execute(select(Unit.id, Unit.name)).all())
    result.territories = dict(session.execute(select(Territory.id, Territory.name)).all())
    definitions = newest_definitions(session)
    for definition in definitions:
        result.processes[definition.key] = definition.name
        result.elements.update({k: v for k, v in element_names(definition, specs=specs).items()
                                if k not in result.elements})
        options, fields = form_labels(definition)
        for key, values in options.items():
            merged = result.options.setdefault(key, {})
            merged.update({v: label for v, label in values.items() if v not in merged})
        result.fields.update({k: v for k, v in fields.items() if k not in result.fields})
    return result


def element_names(definition: ProcessDefinition, *, specs: SpecCache = DEFAULT_CACHE) -> dict[str, str]:
    def build():
        loaded = specs.get(definition)
        names: dict[str, str] = {}
        for spec in (loaded.spec, *loaded.subprocess_specs.values()):
            for task_spec in spec.task_specs.values():
                if task_spec.bpmn_id:
                    names.setdefault(task_spec.bpmn_id, task_spec.bpmn_name or task_spec.bpmn_id)
        return names

    return _memo.get(("names", definition.content_hash), build)


#: element types a case waits at (the "current step" a list can be filtered by)
WAITING_TYPES = frozenset({"UserTask", "ManualTask", "ReceiveTask", "IntermediateCatchEvent", "CallActivity",
                           "ServiceTask", "SendTask", "EventBasedGateway", "BoundaryEvent", "SubWorkflowTask",
                           "TransactionSubprocess"})


def waiting_elements(definition: ProcessDefinition, *, specs: SpecCache = DEFAULT_CACHE) -> list[tuple[str, str]]:
    """(BPMN id, name) of the elements a case of this version can wait at, in model order."""
    def build():
        loaded = specs.get(definition)
        found: dict[str, str] = {}
        for spec in (loaded.spec, *loaded.subprocess_specs.values()):
            for task_spec in spec.task_specs.values():
                kind = type(task_spec).__name__
                if task_spec.bpmn_id and (kind in WAITING_TYPES or kind.endswith("UserTask")):
                    found.setdefault(task_spec.bpmn_id, task_spec.bpmn_name or task_spec.bpmn_id)
        return sorted(found.items(), key=lambda item: item[1].lower())

    return _memo.get(("waiting", definition.content_hash), build)


def form_labels(definition: ProcessDefinition) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    def build():
        options: dict[str, dict[str, str]] = {}
        fields: dict[str, str] = {}
        forms = json.loads(definition.forms_json or "{}")
        for form in forms.values():
            for component in _components(form.get("components", []) if isinstance(form, dict) else []):
                key = component.get("key")
                if not isinstance(key, str):
                    continue
                if isinstance(component.get("label"), str):
                    fields.setdefault(key, component["label"])
                for option in component.get("values") or []:
                    if isinstance(option, dict) and "value" in option:
                        options.setdefault(key, {}).setdefault(str(option["value"]),
                                                               str(option.get("label", option["value"])))
        return options, fields

    return _memo.get(("forms", definition.content_hash), build)


def _components(components: Iterable) -> Iterable[dict]:
    for component in components:
        if isinstance(component, dict):
            yield component
            yield from _components(component.get("components") or [])
