"""Deployed versions of a procedure, and what changed between two of them.

    versions(session, "consultation")           # who deployed each version when; instances on each
    diff_models(old_xml, new_xml).to_dict()     # added, removed, changed elements by BPMN id

The diff compares the models, not the diagrams: an element is the same element when its BPMN id is the
same; it changed when its type, name, attributes (vendor extensions included), conditions, timers,
scripts, documentation or extension elements differ. Moving a shape changes nothing. Child elements that
are not flow elements (event definitions, condition expressions, extension elements) belong to their
owner; ids that bpmn-js gives them (``TimerEventDefinition_0x1y2z``) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from .check import BPMN_NS, _safe_parser
from .models import Deployment, ProcessDefinition, ProcessInstance

#: BPMN elements compared one by one (everything else is part of one of them)
ELEMENT_TAGS = frozenset({
    "process", "subProcess", "transaction", "adHocSubProcess", "callActivity",
    "task", "userTask", "manualTask", "serviceTask", "sendTask", "receiveTask", "scriptTask", "businessRuleTask",
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
    "exclusiveGateway", "inclusiveGateway", "parallelGateway", "eventBasedGateway", "complexGateway",
    "sequenceFlow", "messageFlow", "association", "dataObject", "dataObjectReference", "dataStoreReference",
    "textAnnotation", "group", "lane", "laneSet", "participant", "collaboration", "message", "signal", "error",
    "escalation", "dataInput", "dataOutput",
})
_SKIPPED_CHILDREN = frozenset({"incoming", "outgoing", "flowNodeRef"})
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


@dataclass
class VersionInfo:
    definition: ProcessDefinition
    deployed_by: str
    deployed_at: datetime
    note: str
    running: int
    total: int

    def to_dict(self) -> dict:
        d = self.definition
        return {"key": d.key, "version": d.version, "name": d.name, "deployed_by": self.deployed_by,
                "deployed_at": self.deployed_at.isoformat(), "running": self.running, "instances": self.total,
                "note": self.note}


def procedures(session: Session) -> list[tuple[ProcessDefinition, int]]:
    """The newest version of every deployed procedure, with the number of running instances (all versions)."""
    newest = (select(ProcessDefinition.key, func.max(ProcessDefinition.version).label("v"))
              .group_by(ProcessDefinition.key).subquery())
    running = (select(ProcessInstance.process_key, func.count().label("n"))
               .where(ProcessInstance.status == "running").group_by(ProcessInstance.process_key).subquery())
    rows = session.execute(
        select(ProcessDefinition, func.coalesce(running.c.n, 0))
        .join(newest, (newest.c.key == ProcessDefinition.key) & (newest.c.v == ProcessDefinition.version))
        .outerjoin(running, running.c.process_key == ProcessDefinition.key)
        .order_by(ProcessDefinition.name, ProcessDefinition.key)).all()
    return [(d, n) for d, n in rows]


def versions(session: Session, key: str) -> list[VersionInfo]:
    """Every version of one procedure, newest first."""
    counts = (select(ProcessInstance.definition_id,
                     func.count().label("total"),
                     func.sum(case((ProcessInstance.status == "running", 1), else_=0)).label("running"))
              .group_by(ProcessInstance.definition_id).subquery())
    rows = session.execute(
        select(ProcessDefinition, Deployment, func.coalesce(counts.c.running, 0), func.coalesce(counts.c.total, 0))
        .join(Deployment, Deployment.id == ProcessDefinition.deployment_id)
        .outerjoin(counts, counts.c.definition_id == ProcessDefinition.id)
        .where(ProcessDefinition.key == key)
        .order_by(ProcessDefinition.version.desc())).all()
    return [VersionInfo(d, dep.deployed_by, dep.deployed_at, dep.note, int(r), int(t)) for d, dep, r, t in rows]


def get_version(session: Session, key: str, version: int) -> ProcessDefinition | None:
    return session.scalar(select(ProcessDefinition).where(ProcessDefinition.key == key,
                                                          ProcessDefinition.version == version))


# --- the diff ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    what: str  # "type", "name", "attribute camunda:candidateGroups", "condition", "timer", ...
    old: str | None
    new: str | None

    def to_dict(self) -> dict:
        return {"what": self.what, "old": self.old, "new": self.new}


@dataclass
class ElementDiff:
    id: str
    type: str
    name: str
    changes: list[Change] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"id": self.id, "type": self.type, "name": self.name, "changes": [c.to_dict() for c in self.changes]}


@dataclass
class ModelDiff:
    added: list[ElementDiff] = field(default_factory=list)
    removed: list[ElementDiff] = field(default_factory=list)
    changed: list[ElementDiff] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict:
        return {"added": [e.to_dict() for e in self.added], "removed": [e.to_dict() for e in self.removed],
                "changed": [e.to_dict() for e in self.changed]}


def diff_models(old: str | bytes, new: str | bytes) -> ModelDiff:
    """Added, removed and changed BPMN elements between two model files, by BPMN id."""
    before, after = _elements(old), _elements(new)
    result = ModelDiff()
    for element_id, node in after.items():
        if element_id not in before:
            result.added.append(_describe(element_id, node))
    for element_id, node in before.items():
        if element_id not in after:
            result.removed.append(_describe(element_id, node))
            continue
        changes = _compare(node, after[element_id])
        if changes:
            entry = _describe(element_id, after[element_id])
            entry.changes = changes
            result.changed.append(entry)
    return result


def _parse(xml: str | bytes):
    return etree.fromstring(xml.encode() if isinstance(xml, str) else xml, _safe_parser())


def _local(node) -> str:
    return etree.QName(node).localname if isinstance(node.tag, str) else ""


def _is_element(node) -> bool:
    return (isinstance(node.tag, str) and node.tag.startswith(f"{{{BPMN_NS}}}") and _local(node) in ELEMENT_TAGS
            and bool(node.get("id")))


def _elements(xml: str | bytes) -> dict[str, etree._Element]:
    root = _parse(xml)
    return {node.get("id"): node for node in root.iter() if _is_element(node)}


def _describe(element_id: str, node) -> ElementDiff:
    return ElementDiff(element_id, _local(node), (node.get("name") or "").strip())


def _qname(root, name: str) -> str:
    """`camunda:candidateGroups` for `{http://camunda.org/...}candidateGroups`, with the file's own prefix."""
    if not name.startswith("{"):
        return name
    uri, local = name[1:].split("}", 1)
    prefix = next((p for p, u in (root.nsmap or {}).items() if u == uri and p), None)
    return f"{prefix}:{local}" if prefix else f"{{{uri}}}{local}"


def _compare(old, new) -> list[Change]:
    changes: list[Change] = []
    if _local(old) != _local(new):
        changes.append(Change("type", _local(old), _local(new)))
    for name in sorted(set(old.attrib) | set(new.attrib), key=str):
        if name == "id":
            continue
        a, b = old.get(name), new.get(name)
        if a != b:
            what = "name" if name == "name" else f"attribute {_qname(new if b is not None else old, name)}"
            changes.append(Change(what, a, b))
    before, after = _parts(old), _parts(new)
    for part in sorted(set(before) | set(after)):
        if before.get(part) != after.get(part):
            changes.append(Change(part, before.get(part), after.get(part)))
    return changes


_PART_NAMES = {"conditionExpression": "condition", "condition": "condition", "timerEventDefinition": "timer",
               "script": "script", "documentation": "documentation", "extensionElements": "extension elements"}


def _parts(node) -> dict[str, str]:
    """The owned children of an element, each as normalised text under a readable name."""
    parts: dict[str, list[str]] = {}
    for child in node:
        if not isinstance(child.tag, str) or _is_element(child) or _local(child) in _SKIPPED_CHILDREN:
            continue
        name = _PART_NAMES.get(_local(child), _local(child) if child.tag.startswith(f"{{{BPMN_NS}}}")
                               else _qname(node, child.tag))
        parts.setdefault(name, []).append(_normalised(child))
    return {name: "\n".join(texts) for name, texts in parts.items()}


def _normalised(node) -> str:
    """A child element as one line: its tag, attributes (without generated ids) and text, recursively."""
    local = _local(node)
    attrs = " ".join(f"{etree.QName(k).localname}={v!r}" for k, v in sorted(node.attrib.items())
                     if k not in ("id", _XSI_TYPE))
    text = " ".join((node.text or "").split())
    inner = " ".join(_normalised(c) for c in node if isinstance(c.tag, str))
    body = " ".join(p for p in (attrs, text, inner) if p)
    return f"{local}({body})" if local not in ("conditionExpression", "script", "documentation", "condition",
                                               "timerEventDefinition") \
        else text or inner or attrs
