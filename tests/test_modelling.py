"""The modeller's engine: drafts, checking a draft, deploying it, versions and the diff of two versions."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from engine import drafts, versions
from engine.check import check_sources
from engine.deploy import deploy
from engine.errors import Conflict, FallwerkError, ModelError
from engine.models import AuditEvent, ProcessInstance, Task
from tests.modelkit import definitions, flow, user_task

WHO = "carla"


def procedure(*, group: str = "rz-west", name: str = "Beraten", form: str = "", condition: str | None = None,
              extra_task: bool = False, timer: str = "P2D", pid: str = "beratung") -> bytes:
    """start -> intake (initiator) -> gateway -> advise (group, boundary timer) -> [review] -> end."""
    form_attr = f' camunda:formRef="{form}"' if form else ""
    parts = [
        '<bpmn:startEvent id="start" />',
        user_task("intake", "Anfrage erfassen", 'camunda:assignee="${initiator}"'),
        '<bpmn:exclusiveGateway id="gw" default="f_default" />',
        user_task("advise", name, f'camunda:candidateGroups="{group}"{form_attr}'),
        '<bpmn:boundaryEvent id="deadline" attachedToRef="advise" cancelActivity="false">'
        f'<bpmn:timerEventDefinition id="TimerEventDefinition_1"><bpmn:timeDuration>{timer}</bpmn:timeDuration>'
        '</bpmn:timerEventDefinition></bpmn:boundaryEvent>',
        '<bpmn:endEvent id="reminded" />',
        '<bpmn:endEvent id="end" />',
        flow("f1", "start", "intake"), flow("f2", "intake", "gw"),
        flow("f_cond", "gw", "advise", condition or "True"), flow("f_default", "gw", "advise"),
        flow("f_timer", "deadline", "reminded"),
    ]
    if extra_task:
        parts += [user_task("review", "Prüfen", 'camunda:candidateGroups="lks:coordinator"'),
                  flow("f3", "advise", "review"), flow("f4", "review", "end")]
    else:
        parts.append(flow("f3", "advise", "end"))
    return definitions(pid, "\n".join(parts), name="Beratung")


def form(form_id: str, *, required_key: str = "notes") -> bytes:
    return json.dumps({"id": form_id, "type": "default", "schemaVersion": 16, "components": [
        {"id": "c1", "type": "textfield", "key": required_key, "label": "Notizen", "validate": {"required": True}},
    ]}).encode()


@pytest.fixture
def deployed(org):
    with org.transaction() as s:
        deploy(s, {"beratung.bpmn": procedure()}, user=WHO, now=org.clock.now())
    return org


def _new(db, **kwargs):
    with db.transaction() as s:
        return drafts.new_draft(s, user=WHO, now=db.clock.now(), **kwargs)


def _save(db, draft, bpmn, *, user=WHO, revision=None, **kwargs):
    with db.transaction() as s:
        return drafts.save_draft(s, draft.id, bpmn=bpmn.decode() if isinstance(bpmn, bytes) else bpmn,
                                 revision=draft.revision if revision is None else revision, user=user,
                                 now=db.clock.now(), **kwargs)


def _check(db, draft_id):
    with db.transaction() as s:
        return drafts.check_draft(s, drafts.get_draft(s, draft_id))


def _messages(check) -> list[str]:
    return [f"{f.element_id}: {f.message}" for f in check.findings]


# --- drafts -------------------------------------------------------------------------------------------
def test_a_draft_of_a_deployed_procedure_starts_from_its_newest_version(deployed):
    draft = _new(deployed, key="beratung")
    assert draft.base_version == 1 and draft.revision == 1 and draft.status == "open"
    assert draft.file_name == "beratung.bpmn" and 'id="advise"' in draft.bpmn
    with deployed.transaction() as s:
        assert [d.id for d in drafts.list_drafts(s, "beratung")] == [draft.id]
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "draft_create")).one()
        assert event.actor == WHO and event.element_id == "beratung"


def test_a_new_procedure_starts_from_a_blank_model_and_deploys_as_version_1(org):
    draft = _new(org, key="neues_verfahren", name="Neues Verfahren")
    assert draft.base_version is None
    body = ('<bpmn:startEvent id="StartEvent_1" /><bpmn:endEvent id="end" />'
            + flow("f1", "StartEvent_1", "end"))
    _save(org, draft, definitions("neues_verfahren", body))
    with org.transaction() as s:
        outcome = drafts.deploy_draft(s, draft.id, user=WHO, now=org.clock.now())
        assert [(d.key, d.version) for d in outcome.created] == [("neues_verfahren", 1)]
        assert drafts.get_draft(s, draft.id).status == "deployed"


def test_saving_counts_revisions_and_records_who_and_when(deployed):
    draft = _new(deployed, key="beratung")
    deployed.clock.advance(minutes=5)
    saved = _save(deployed, draft, procedure(name="Beraten und begleiten"), user="carla")
    assert saved.draft.revision == 2 and saved.draft.updated_by == "carla"
    assert saved.draft.updated_at == deployed.clock.now() and saved.warnings == []


def test_saving_over_a_newer_save_of_the_same_draft_is_a_conflict_unless_overwritten(deployed):
    draft = _new(deployed, key="beratung")
    _save(deployed, draft, procedure(name="Erste Fassung"), user="carla")
    with pytest.raises(drafts.DraftConflict, match="saved by carla"):
        _save(deployed, draft, procedure(name="Zweite Fassung"), user="dora", revision=1)
    saved = _save(deployed, draft, procedure(name="Zweite Fassung"), user="dora", revision=1, overwrite=True)
    assert saved.draft.revision == 3 and "Zweite Fassung" in saved.draft.bpmn


def test_two_drafts_of_one_procedure_do_not_clash_and_the_older_one_is_warned(deployed):
    first, second = _new(deployed, key="beratung"), _new(deployed, key="beratung")
    deployed.clock.advance(minutes=1)
    assert _save(deployed, second, procedure(name="Fassung B")).warnings == []
    deployed.clock.advance(minutes=1)
    warnings = _save(deployed, first, procedure(name="Fassung A")).warnings
    assert [(w.code, w.draft_id) for w in warnings] == [("newer_draft", second.id)]
    with deployed.transaction() as s:
        saved = {d.id: "Fassung A" in d.bpmn for d in drafts.list_drafts(s, "beratung")}
    assert saved == {first.id: True, second.id: False}


def test_a_draft_whose_base_is_older_than_the_newest_version_is_warned_and_deploys_only_when_forced(deployed):
    old = _new(deployed, key="beratung")
    newer = _new(deployed, key="beratung")
    _save(deployed, newer, procedure(name="Neu"))
    with deployed.transaction() as s:
        drafts.deploy_draft(s, newer.id, user="dora", now=deployed.clock.now())
    saved = _save(deployed, old, procedure(name="Alt"))
    assert [(w.code, w.version, w.by) for w in saved.warnings] == [("newer_version", 2, "dora")]
    with pytest.raises(Conflict, match="version 2 was deployed by dora"), deployed.transaction() as s:
        drafts.deploy_draft(s, old.id, user=WHO, now=deployed.clock.now())
    with deployed.transaction() as s:
        outcome = drafts.deploy_draft(s, old.id, user=WHO, now=deployed.clock.now(), force=True)
        assert [d.version for d in outcome.created] == [3]


def test_deploying_a_revision_other_than_the_checked_one_is_a_conflict(deployed):
    draft = _new(deployed, key="beratung")
    _save(deployed, draft, procedure(name="Neu"))
    with pytest.raises(drafts.DraftConflict), deployed.transaction() as s:
        drafts.deploy_draft(s, draft.id, user=WHO, now=deployed.clock.now(), revision=1)


# --- checking a draft ---------------------------------------------------------------------------------
def test_a_draft_is_checked_like_fallwerk_check_plus_units_roles_and_forms(deployed):
    draft = _new(deployed, key="beratung")
    _save(deployed, draft, procedure(group="rz-nirgendwo", condition="${"))
    found = _messages(_check(deployed, draft.id))
    assert any(m.startswith("f_cond: condition") for m in found), found
    assert "advise: candidate group 'rz-nirgendwo': there is no unit 'rz-nirgendwo'" in found


@pytest.mark.parametrize(("group", "form_ref", "expected"), [
    ("lks:chef", "", "advise: candidate group 'lks:chef': there is no role 'chef'"),
    ("rz-west", "gibt_es_nicht", "advise: form 'gibt_es_nicht' referenced by camunda:formRef does not exist"),
])
def test_references_to_roles_and_forms_that_do_not_exist_are_errors_on_the_task(deployed, group, form_ref, expected):
    draft = _new(deployed, key="beratung")
    _save(deployed, draft, procedure(group=group, form=form_ref))
    check = _check(deployed, draft.id)
    assert any(m.startswith(expected) for m in _messages(check)) and not check.ok


@pytest.mark.parametrize("group", ["${responsible_unit}", "${responsible_unit}:lead", "lks:coordinator,rz-west"])
def test_expressions_and_existing_units_in_candidate_groups_pass(deployed, group):
    draft = _new(deployed, key="beratung")
    _save(deployed, draft, procedure(group=group))
    check = _check(deployed, draft.id)
    assert check.ok, _messages(check)


def test_a_form_in_the_draft_counts_as_existing(deployed):
    draft = _new(deployed, key="beratung")
    _save(deployed, draft, procedure(form="beratung_notizen"),
          files={"beratung_notizen.form": form("beratung_notizen").decode()})
    check = _check(deployed, draft.id)
    assert check.ok, _messages(check)


def test_unreachable_elements_and_gateways_without_default_are_reported(deployed):
    body = "\n".join([
        '<bpmn:startEvent id="start" />', '<bpmn:exclusiveGateway id="gw" />',
        user_task("a", "A", 'camunda:candidateGroups="rz-west"'), user_task("b", "B", 'camunda:candidateGroups="lks"'),
        user_task("lost", "Verwaist", 'camunda:candidateGroups="lks"'), '<bpmn:endEvent id="end" />',
        flow("f1", "start", "gw"), flow("f2", "gw", "a", "x == 1"), flow("f3", "gw", "b", "x != 1"),
        flow("f4", "a", "end"), flow("f5", "b", "end"), flow("f6", "lost", "end"),
    ])
    draft = _new(deployed, key="beratung")
    _save(deployed, draft, definitions("beratung", body))
    found = _messages(_check(deployed, draft.id))
    assert "lost: unreachable: no path from a start event leads here" in found
    assert any(m.startswith("gw: gateway has conditions but no default flow") for m in found)


def test_decision_tables_and_called_processes_come_from_the_deployed_files(org):
    dmn = (b'<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" name="d" namespace="x">'
           b'<decision id="route" name="Route"><decisionTable id="t" hitPolicy="FIRST">'
           b'<input id="i"><inputExpression id="ie" typeRef="string"><text>topic</text></inputExpression></input>'
           b'<output id="o" name="unit" typeRef="string" /><rule id="r"><inputEntry id="r1"><text></text></inputEntry>'
           b'<outputEntry id="r2"><text>"rz-west"</text></outputEntry></rule></decisionTable></decision>'
           b'</definitions>')
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        '<bpmn:businessRuleTask id="route_it" camunda:decisionRef="route" camunda:resultVariable="unit" '
        'camunda:mapDecisionResult="singleEntry" />',
        '<bpmn:callActivity id="call" calledElement="beratung" />', '<bpmn:endEvent id="end" />',
        flow("f1", "start", "route_it"), flow("f2", "route_it", "call"), flow("f3", "call", "end"),
    ])
    with org.transaction() as s:
        deploy(s, {"routing.dmn": dmn, "beratung.bpmn": procedure()}, user=WHO, now=org.clock.now())
    draft = _new(org, key="eingang")
    _save(org, draft, definitions("eingang", body))
    check = _check(org, draft.id)
    assert check.ok, _messages(check)
    assert "eingang" in check.processes


# --- deploying a draft --------------------------------------------------------------------------------
def test_only_a_draft_without_errors_deploys(deployed):
    draft = _new(deployed, key="beratung")
    _save(deployed, draft, procedure(group="niemand"))
    with pytest.raises(ModelError) as raised, deployed.transaction() as s:
        drafts.deploy_draft(s, draft.id, user=WHO, now=deployed.clock.now())
    assert any("there is no unit 'niemand'" in f.message for f in raised.value.findings)
    with deployed.transaction() as s:
        assert [v.definition.version for v in versions.versions(s, "beratung")] == [1]
        assert drafts.get_draft(s, draft.id).status == "open"


def test_deploying_a_draft_makes_version_n_plus_1_and_running_instances_stay(deployed):
    with deployed.transaction() as s:
        old_case = deployed.runtime(s).start("beratung", user="alice").id
    draft = _new(deployed, key="beratung")
    _save(deployed, draft, procedure(extra_task=True))
    deployed.clock.advance(hours=1)
    with deployed.transaction() as s:
        outcome = drafts.deploy_draft(s, draft.id, user="carla", now=deployed.clock.now())
        assert [d.version for d in outcome.created] == [2]
    with deployed.transaction() as s:
        new_case = deployed.runtime(s).start("beratung", user="alice").id
    with deployed.transaction() as s:
        assert s.get(ProcessInstance, old_case).definition.version == 1
        assert s.get(ProcessInstance, new_case).definition.version == 2
        rows = versions.versions(s, "beratung")
        assert [(v.definition.version, v.deployed_by, v.running) for v in rows] == [(2, "carla", 1), (1, "carla", 1)]
        assert rows[0].deployed_at == deployed.clock.now()
        assert "draft" in rows[0].note


def test_an_unchanged_draft_deploys_nothing_and_stays_open(deployed):
    draft = _new(deployed, key="beratung")
    with deployed.transaction() as s:
        outcome = drafts.deploy_draft(s, draft.id, user=WHO, now=deployed.clock.now())
        assert outcome.created == [] and [d.version for d in outcome.unchanged] == [1]
        assert drafts.get_draft(s, draft.id).status == "open"


def test_changing_a_form_never_breaks_an_open_task(org):
    with org.transaction() as s:
        deploy(s, {"beratung.bpmn": procedure(form="notizen"), "notizen.form": form("notizen")}, user=WHO,
               now=org.clock.now())
        case = org.runtime(s).start("beratung", user="alice").id
    with org.transaction() as s:
        intake = s.scalars(select(Task).where(Task.instance_id == case, Task.state == "open")).one()
        org.runtime(s).complete(intake.id, user="alice", data={})
    draft = _new(org, key="beratung")
    _save(org, draft, draft.bpmn, files={"notizen.form": form("notizen", required_key="summary").decode()})
    with org.transaction() as s:
        assert [d.version for d in drafts.deploy_draft(s, draft.id, user=WHO, now=org.clock.now()).created] == [2]
    with org.transaction() as s:
        advise = s.scalars(select(Task).where(Task.instance_id == case, Task.state == "open",
                                              Task.element_id == "advise")).one()
        org.runtime(s).complete(advise.id, user="alice", data={"notes": "wie bisher"})  # the version-1 form
    with org.transaction() as s:
        new_case = org.runtime(s).start("beratung", user="alice")
        assert json.loads(new_case.definition.forms_json)["notizen"]["components"][0]["key"] == "summary"


# --- versions and the diff ----------------------------------------------------------------------------
def test_the_diff_of_two_versions_lists_added_removed_and_changed_elements_by_id():
    old = procedure()
    new = procedure(group="lks:coordinator", condition="x > 1", timer="P5D", extra_task=True)
    diff = versions.diff_models(old, new)
    assert {e.id for e in diff.added} == {"review", "f4"}
    assert diff.removed == []
    changed = {e.id: {c.what: (c.old, c.new) for c in e.changes} for e in diff.changed}
    assert changed["advise"] == {"attribute camunda:candidateGroups": ("rz-west", "lks:coordinator")}
    assert changed["f_cond"] == {"condition": ("True", "x > 1")}
    assert changed["deadline"] == {"timer": ("timeDuration(P2D)", "timeDuration(P5D)")}
    assert changed["f3"] == {"attribute targetRef": ("end", "review")}


def test_the_diff_ignores_the_diagram_and_generated_ids_of_owned_elements():
    old = procedure().decode()
    new = old.replace("TimerEventDefinition_1", "TimerEventDefinition_0abc123")
    new = new.replace("</bpmn:definitions>", '<bpmndi:BPMNDiagram xmlns:bpmndi="http://www.omg.org/spec/BPMN/'
                                             '20100524/DI" id="d"><bpmndi:BPMNPlane id="p" bpmnElement="beratung"/>'
                                             "</bpmndi:BPMNDiagram></bpmn:definitions>")
    assert versions.diff_models(old, new).empty
    removed = versions.diff_models(procedure(extra_task=True), procedure())
    assert {e.id for e in removed.removed} == {"review", "f4"}
    assert removed.to_dict()["removed"][0].keys() == {"id", "type", "name", "changes"}


# --- decision tables ----------------------------------------------------------------------------------
def test_a_decision_table_is_read_as_rows_and_written_back_keeping_the_rest_of_the_file():
    from pathlib import Path

    from engine import decisions

    original = (Path(__file__).resolve().parent.parent / "processes" / "routing.dmn").read_text(encoding="utf-8")
    table = decisions.read_table(original)
    assert (table.decision_id, table.hit_policy) == ("responsible_unit", "FIRST")
    assert [c.expression for c in table.inputs] == ["primary_topic", "territory"]
    assert table.rules[0].inputs == ['"gewalt"', ""] and table.rules[0].outputs == ['"opferberatung"']
    table.rules[0].outputs = ['"lks"']
    table.rules.append(decisions.Rule("", ['"schule"', ""], ['"rz-westmecklenburg"'], "neu"))
    written = decisions.write_table(original, table)
    again = decisions.read_table(written)
    assert again.rules[0].outputs == ['"lks"'] and again.rules[-1].description == "neu" and again.rules[-1].id
    assert len(again.rules) == len(table.rules) and "<documentation>" in written and 'name="Zuständigkeit"' in written
    assert check_sources({"routing.dmn": written.encode()}).ok
    with pytest.raises(FallwerkError, match="input and 1 output cells"):
        decisions.write_table(original, decisions.DecisionTable("responsible_unit", "", "FIRST", rules=[
            decisions.Rule("", ["x"], ['"a"'])]))
