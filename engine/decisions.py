"""DMN decision tables as rows a plain form can edit (the modeller's routing table editor).

    table = read_table(xml)                 # the first decision table (or `decision_id`)
    table.rules[0].inputs[1] = '"lk-rostock"'
    xml = write_table(xml, table)           # the same file with the rules replaced, everything else kept

Cells are the texts of the input and output entries (expressions of the sandboxed expression language, as
the engine evaluates them); each rule keeps its id, a new rule gets a fresh one.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from lxml import etree

from .check import _safe_parser
from .errors import FallwerkError

RULE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
RULE_PROBLEMS = {"character": "has a character XML cannot hold", "id": "has an id that is not an XML id",
                 "duplicate_id": "has an id that another rule or element of the file has"}


@dataclass
class Column:
    id: str
    label: str
    expression: str  # input expression text, or the output's name


@dataclass
class Rule:
    id: str
    inputs: list[str]
    outputs: list[str]
    description: str = ""


@dataclass
class DecisionTable:
    decision_id: str
    decision_name: str
    hit_policy: str
    inputs: list[Column] = field(default_factory=list)
    outputs: list[Column] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)


def _root(xml: str | bytes):
    try:
        return etree.fromstring(xml.encode() if isinstance(xml, str) else xml, _safe_parser())
    except (etree.LxmlError, ValueError) as exc:
        raise FallwerkError(f"not a DMN file: {exc}") from exc


def _ns(root) -> str:
    return root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""


def _table(root, decision_id: str | None):
    ns = _ns(root)
    for decision in root.iter(f"{{{ns}}}decision"):
        if decision_id in (None, decision.get("id")):
            table = decision.find(f"{{{ns}}}decisionTable")
            if table is not None:
                return decision, table
    raise FallwerkError(f"no decision table {decision_id or ''} in this DMN file".replace("  ", " "))


def _text(node, ns: str) -> str:
    text = node.find(f"{{{ns}}}text") if node is not None else None
    return (text.text or "") if text is not None else ""


def decision_ids(xml: str | bytes) -> list[tuple[str, str]]:
    root = _root(xml)
    ns = _ns(root)
    return [(d.get("id"), d.get("name") or d.get("id")) for d in root.iter(f"{{{ns}}}decision")
            if d.find(f"{{{ns}}}decisionTable") is not None]


def read_table(xml: str | bytes, decision_id: str | None = None) -> DecisionTable:
    root = _root(xml)
    ns = _ns(root)
    decision, table = _table(root, decision_id)
    result = DecisionTable(decision.get("id"), decision.get("name") or decision.get("id"),
                           table.get("hitPolicy", "UNIQUE"))
    for column in table.findall(f"{{{ns}}}input"):
        result.inputs.append(Column(column.get("id"), column.get("label") or "",
                                    _text(column.find(f"{{{ns}}}inputExpression"), ns)))
    for column in table.findall(f"{{{ns}}}output"):
        result.outputs.append(Column(column.get("id"), column.get("label") or "", column.get("name") or ""))
    for rule in table.findall(f"{{{ns}}}rule"):
        description = rule.find(f"{{{ns}}}description")
        result.rules.append(Rule(rule.get("id"), [_text(e, ns) for e in rule.findall(f"{{{ns}}}inputEntry")],
                                 [_text(e, ns) for e in rule.findall(f"{{{ns}}}outputEntry")],
                                 (description.text or "") if description is not None else ""))
    return result


def rule_problems(xml: str | bytes, table: DecisionTable) -> list[tuple[int, str]]:
    """Why rules cannot be written, as (index in `table.rules`, problem): "character" (a character XML
    cannot hold), "id" (not an XML id), "duplicate_id" (another rule or element of the file has it)."""
    root = _root(xml)
    _decision, node = _table(root, table.decision_id)
    taken = _ids_besides_rules(root, node)
    problems = []
    for index, rule in enumerate(table.rules):
        if any(_NOT_XML.search(text) for text in [rule.id, rule.description, *rule.inputs, *rule.outputs]):
            problems.append((index, "character"))
        elif rule.id and not RULE_ID.match(rule.id):
            problems.append((index, "id"))
        elif rule.id and rule.id in taken:
            problems.append((index, "duplicate_id"))
        if rule.id:
            taken.add(rule.id)
    return problems


def write_table(xml: str | bytes, table: DecisionTable) -> str:
    """The DMN file with the decision's rules replaced by `table.rules` (columns and the rest unchanged)."""
    problems = rule_problems(xml, table)
    if problems:
        index, problem = problems[0]
        raise FallwerkError(f"rule {index + 1} ({table.rules[index].id or 'new'}) {RULE_PROBLEMS[problem]}")
    root = _root(xml)
    ns = _ns(root)
    _decision, node = _table(root, table.decision_id)
    n_in, n_out = len(node.findall(f"{{{ns}}}input")), len(node.findall(f"{{{ns}}}output"))
    existing = _ids_besides_rules(root, node) | {rule.id for rule in table.rules if rule.id}
    for rule in table.rules:
        if len(rule.inputs) != n_in or len(rule.outputs) != n_out:
            raise FallwerkError(f"rule {rule.id or '(new)'} has {len(rule.inputs)} input and {len(rule.outputs)} "
                                f"output cells; the table has {n_in} and {n_out}")
        rule_id = rule.id or _fresh("Rule", existing)
        element = etree.SubElement(node, f"{{{ns}}}rule", id=rule_id)
        if rule.description.strip():
            etree.SubElement(element, f"{{{ns}}}description").text = rule.description.strip()
        for kind, cells in (("inputEntry", rule.inputs), ("outputEntry", rule.outputs)):
            for cell in cells:
                entry = etree.SubElement(element, f"{{{ns}}}{kind}", id=_fresh(f"{rule_id}_{kind}", existing))
                etree.SubElement(entry, f"{{{ns}}}text").text = cell.strip()
    etree.indent(node, space="  ", level=2)
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8").decode()


def _ids_besides_rules(root, node) -> set[str]:
    """Remove the table's rules from `node`; the ids left in the file."""
    for old in node.findall(f"{{{_ns(root)}}}rule"):
        node.remove(old)
    return {e.get("id") for e in root.iter() if isinstance(e.tag, str) and e.get("id")}


def _fresh(prefix: str, existing: set[str]) -> str:
    while True:
        candidate = f"{prefix}_{secrets.token_hex(3)}"
        if candidate not in existing:
            existing.add(candidate)
            return candidate
