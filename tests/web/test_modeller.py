"""The modeller pages (coordinators only): drafts, save with conflicts, check, publish, versions, diff, migration,
forms with a server-side preview, and the decision table form. The browser parts are in tests/browser."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from engine import drafts, identity
from engine.errors import ValidationFailed
from engine.models import AuditEvent, Draft, ProcessInstance
from tests.web import models
from tests.web.conftest import complete, login, open_task, start_case

ROUTING = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" name="Zuständigkeit" namespace="x">
  <decision id="responsible_unit" name="Zuständige Stelle">
    <decisionTable id="t" hitPolicy="FIRST">
      <input id="i1" label="Thema">
        <inputExpression id="e1" typeRef="string"><text>topic</text></inputExpression></input>
      <output id="o1" label="Stelle" name="responsible_unit" typeRef="string" />
      <rule id="r1"><description>Gewalt</description><inputEntry id="r1i"><text>"gewalt"</text></inputEntry>
        <outputEntry id="r1o"><text>"opferberatung"</text></outputEntry></rule>
      <rule id="r2"><inputEntry id="r2i"><text></text></inputEntry>
        <outputEntry id="r2o"><text>"rz-west"</text></outputEntry></rule>
    </decisionTable>
  </decision>
</definitions>
"""


def modeller_draft(db, user: str = "carla") -> int:
    """A draft of the test procedure `casework` with a decision table draft (used by the access matrix too)."""
    with db.transaction() as s:
        draft = drafts.new_draft(s, user=user, now=db.clock.now(), key="casework")
        drafts.save_draft(s, draft.id, bpmn=draft.bpmn, files={"routing.dmn": ROUTING}, revision=1, user=user,
                          now=db.clock.now())
        return draft.id


@pytest.fixture
def carla(client):
    login(client, "carla")
    return client


def _draft(db, draft_id) -> Draft:
    with db.transaction() as s:
        return s.get(Draft, draft_id)


def _post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


# --- who gets in --------------------------------------------------------------------------------------
@pytest.mark.parametrize("user", ["alice", "lena", "sven", "mira", "adam"])
def test_only_coordinators_reach_the_modeller(client, user):
    login(client, user)
    assert client.get("/modeller/").status_code == 404
    assert "Verfahren bearbeiten" not in client.get("/").get_data(as_text=True)


def test_a_coordinator_finds_the_modeller_in_the_navigation(carla):
    page = carla.get("/").get_data(as_text=True)
    assert 'href="/modeller/"' in page and "Verfahren bearbeiten" in page
    index = carla.get("/modeller/").get_data(as_text=True)
    assert "Beratung (Test)" in index and "casework" in index


# --- drafts -------------------------------------------------------------------------------------------
def test_editing_a_procedure_opens_a_draft_of_its_newest_version(carla, web):
    with web.transaction() as s:
        identity.get_user(s, "carla").display_name = "Carla Koordination"
    response = carla.post("/modeller/procedures/casework/drafts", data={})
    assert response.status_code == 303
    draft_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    page = carla.get(f"/modeller/drafts/{draft_id}").get_data(as_text=True)
    assert "data-modeller" in page and 'data-revision="1"' in page and "<script>" not in page
    assert "zuletzt gespeichert von Carla Koordination am" in page  # the name, not the user name
    assert "Carla Koordination" in carla.get("/modeller/").get_data(as_text=True)
    assert "dist/modeller.js" in page and 'data-xml-url="/modeller/drafts/' in page
    xml = carla.get(f"/modeller/drafts/{draft_id}/model.bpmn")
    assert xml.mimetype == "application/xml" and b'id="advise"' in xml.data


def test_a_new_procedure_gets_a_blank_draft(carla, web):
    response = carla.post("/modeller/new", data={"name": "Nachbereitung", "key": "nachbereitung"})
    assert response.status_code == 303
    draft_id = int(response.headers["Location"].rsplit("/", 1)[1])
    assert _draft(web, draft_id).process_key == "nachbereitung"
    again = carla.post("/modeller/new", data={"name": "X", "key": "casework"}, follow_redirects=True)
    assert "gibt es schon" in again.get_data(as_text=True)


def test_saving_returns_the_new_revision_and_a_second_save_from_an_old_revision_is_a_conflict(carla, web):
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn.replace("Beraten", "Beraten und begleiten")
    first = _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    assert first.status_code == 200 and first.json["revision"] == 3
    stale = _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    assert stale.status_code == 409 and stale.json["code"] == "draft_conflict"
    assert "carla" in stale.json["message"] and "Stand 3" in stale.json["message"]
    forced = _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2, "overwrite": True})
    assert forced.status_code == 200 and forced.json["revision"] == 4


def test_checking_lists_findings_with_element_names(carla, web):
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn.replace('camunda:candidateGroups="lks"', 'camunda:candidateGroups="niemand"')
    _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    result = _post(carla, f"/modeller/drafts/{draft_id}/check", {}).json
    assert result["ok"] is False and "1 Fehler" in result["summary"]
    [finding] = [f for f in result["findings"] if f["severity"] == "error"]
    assert finding["element_id"] == "intake" and finding["element_name"] == "Anfrage erfassen"
    assert "there is no unit 'niemand'" in finding["message"]


def test_publishing_a_draft_with_errors_is_refused_with_its_findings(carla, web):
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn.replace('camunda:formRef="advice"', 'camunda:formRef="gibt_es_nicht"')
    _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    refused = _post(carla, f"/modeller/drafts/{draft_id}/deploy", {"revision": 3})
    assert refused.status_code == 422 and "Nichts wurde veröffentlicht" in refused.json["message"]
    assert refused.json["findings"][0]["element_id"] == "advise"


def test_publishing_makes_a_new_version_and_the_versions_page_counts_running_cases(carla, web):
    old_case = start_case(web)
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn.replace('camunda:dueDate="P2D"', 'camunda:dueDate="P5D"')
    _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    published = _post(carla, f"/modeller/drafts/{draft_id}/deploy", {"revision": 3})
    assert published.status_code == 200
    assert published.json["created"] == [{"key": "casework", "version": 2, "name": "Beratung (Test)"}]
    assert published.json["next"] == "/modeller/procedures/casework"
    new_case = start_case(web)
    with web.transaction() as s:
        assert s.get(ProcessInstance, old_case.id).definition.version == 1
        assert s.get(ProcessInstance, new_case.id).definition.version == 2
    page = carla.get("/modeller/procedures/casework").get_data(as_text=True)
    assert 'data-testid="running-1">1<' in page and 'data-testid="running-2">1<' in page
    assert "Unterschiede zu Version 1" in page


def test_publishing_over_a_newer_version_asks_first(carla, web):
    old = modeller_draft(web)
    newer = modeller_draft(web)
    xml = _draft(web, newer).bpmn.replace("Beraten", "Beraten (neu)")
    _post(carla, f"/modeller/drafts/{newer}/save", {"bpmn": xml, "revision": 2})
    assert _post(carla, f"/modeller/drafts/{newer}/deploy", {}).status_code == 200
    xml = _draft(web, old).bpmn.replace("Beraten", "Beraten (alt)")
    saved = _post(carla, f"/modeller/drafts/{old}/save", {"bpmn": xml, "revision": 2}).json
    assert saved["warnings"][0]["code"] == "newer_version" and "Version 2" in saved["warnings"][0]["text"]
    asked = _post(carla, f"/modeller/drafts/{old}/deploy", {})
    assert asked.status_code == 409 and asked.json["code"] == "newer_version"
    forced = _post(carla, f"/modeller/drafts/{old}/deploy", {"force": True})
    assert forced.json["created"][0]["version"] == 3


def test_the_diff_page_lists_and_marks_what_changed(carla, web):
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn.replace('camunda:dueDate="P2D"', 'camunda:dueDate="P5D"')
    _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    _post(carla, f"/modeller/drafts/{draft_id}/deploy", {})
    page = carla.get("/modeller/procedures/casework/diff?from=1&to=2").get_data(as_text=True)
    assert 'data-testid="diff-changed"' in page and 'data-element-id="advise"' in page
    assert "camunda:dueDate" in page and "P5D" in page
    data = json.loads(page.split('id="diff-daten">', 1)[1].split("</script>", 1)[0])
    assert [e["id"] for e in data["changed"]] == ["advise"]
    assert carla.get("/modeller/procedures/casework/versions/2/model.bpmn").data.count(b"P5D") == 1


# --- migration ----------------------------------------------------------------------------------------
def test_the_migration_page_runs_a_dry_run_then_moves_the_chosen_cases_audited(carla, web):
    case = start_case(web)
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn.replace("Beraten", "Beraten und begleiten")
    _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    _post(carla, f"/modeller/drafts/{draft_id}/deploy", {})
    plan = carla.get("/modeller/procedures/casework/migrate?from=1&to=2").get_data(as_text=True)
    assert f'data-case="{case.number}" data-movable="ja"' in plan and "Anfrage erfassen" in plan
    with web.transaction() as s:
        assert s.get(ProcessInstance, case.id).definition.version == 1  # the dry run changed nothing
    done = carla.post("/modeller/procedures/casework/migrate", data={"from": "1", "to": "2", "instance": str(case.id)})
    assert done.status_code == 200 and "1 verschoben, 0 nicht verschoben" in done.get_data(as_text=True)
    with web.transaction() as s:
        assert s.get(ProcessInstance, case.id).definition.version == 2
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "migrate")).one()
        assert event.actor == "carla" and json.loads(event.detail)["to_version"] == 2
    complete(web, open_task(web, case.id, "intake").id, "alice", client_name=models.PERSONAL,
             responsible_unit="rz-west", topic="Schule")
    assert open_task(web, case.id, "advise").title == "Beraten und begleiten"


# --- forms and decision tables ------------------------------------------------------------------------
def test_the_form_editor_page_carries_the_schema_in_a_json_script_tag(carla, web):
    draft_id = modeller_draft(web)
    page = carla.get(f"/modeller/drafts/{draft_id}/forms/intake").get_data(as_text=True)
    schema = json.loads(page.split('id="formular-schema">', 1)[1].split("</script>", 1)[0])
    assert schema["id"] == "intake" and schema["components"][0]["key"] == "client_name"
    assert 'type="application/json"' in page and "dist/modeller-forms.js" in page


def test_a_saved_form_is_checked_previewed_server_side_and_published_with_its_procedure(carla, web):
    draft_id = modeller_draft(web)
    open_case = start_case(web)  # its intake task keeps the version-1 form
    schema = json.loads(models.INTAKE)
    schema["components"].append({"id": "f4", "type": "textfield", "key": "referral", "label": "Vermittelt durch",
                                 "validate": {"required": True}})
    saved = _post(carla, f"/modeller/drafts/{draft_id}/forms/intake/save", {"form": schema, "revision": 2})
    assert saved.status_code == 200 and saved.json["ok"] and saved.json["revision"] == 3
    preview = carla.get(f"/modeller/drafts/{draft_id}/forms/intake/preview").get_data(as_text=True)
    assert "Vermittelt durch" in preview and 'name="referral"' in preview
    tried = carla.post(f"/modeller/drafts/{draft_id}/forms/intake/preview", data={"client_name": "X"})
    assert tried.status_code == 422 and "error-summary" in tried.get_data(as_text=True)
    page = carla.get(f"/modeller/drafts/{draft_id}").get_data(as_text=True)
    assert "im Entwurf geändert" in page
    assert _post(carla, f"/modeller/drafts/{draft_id}/deploy", {}).json["created"][0]["version"] == 2
    complete(web, open_task(web, open_case.id, "intake").id, "alice", client_name="Y", responsible_unit="rz-west")
    new_case = start_case(web)
    with pytest.raises(ValidationFailed):
        complete(web, open_task(web, new_case.id, "intake").id, "alice", client_name="Y", responsible_unit="rz-west")


def test_a_broken_form_is_reported_when_saved(carla, web):
    draft_id = modeller_draft(web)
    broken = {"type": "default", "components": [{"type": "textfield", "label": "ohne Schlüssel"}]}
    saved = _post(carla, f"/modeller/drafts/{draft_id}/forms/intake/save", {"form": broken, "revision": 2})
    assert saved.status_code == 200 and saved.json["ok"] is False and saved.json["findings"]


def test_the_decision_table_is_edited_as_a_plain_form(carla, web):
    draft_id = modeller_draft(web)
    page = carla.get(f"/modeller/drafts/{draft_id}/decisions/routing.dmn").get_data(as_text=True)
    assert 'value="&#34;gewalt&#34;"' in page or 'value="&quot;gewalt&quot;"' in page
    form = {"revision": "2", "rows": "3", "rule-0-id": "r1", "rule-0-in-0": '"gewalt"', "rule-0-out-0": '"lks"',
            "rule-0-description": "Gewalt: LKS", "rule-1-id": "r2", "rule-1-delete": "1", "rule-1-in-0": "",
            "rule-1-out-0": '"rz-west"', "rule-2-id": "", "rule-2-in-0": '"schule"', "rule-2-out-0": '"rz-west"'}
    response = carla.post(f"/modeller/drafts/{draft_id}/decisions/routing.dmn", data=form)
    assert response.status_code == 303
    from engine.decisions import read_table

    table = read_table(drafts.draft_files(_draft(web, draft_id))["routing.dmn"])
    assert [(r.inputs, r.outputs) for r in table.rules] == [(['"gewalt"'], ['"lks"']), (['"schule"'], ['"rz-west"'])]
    assert table.rules[0].id == "r1" and table.rules[0].description == "Gewalt: LKS"
    missing = carla.post(f"/modeller/drafts/{draft_id}/decisions/routing.dmn",
                         data={"revision": "3", "rows": "1", "rule-0-id": "r1", "rule-0-in-0": "x", "rule-0-out-0": ""})
    assert missing.status_code == 422 and "Ergebnis" in missing.get_data(as_text=True)


def test_candidate_groups_come_from_the_real_units_and_roles(carla):
    groups = carla.get("/modeller/groups.json").json
    values = {g["value"] for g in groups}
    assert {"rz-west", "rz-west:counsellor", "lks:coordinator", "opferberatung:lead"} <= values


def test_a_model_or_form_with_a_nul_character_is_refused_and_nothing_is_saved(carla, web):
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn.replace("Beraten", "Bera\x00ten")
    refused = _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    assert refused.status_code == 400 and "unzulässiges Zeichen" in refused.json["message"]
    form = {"type": "default", "components": [{"type": "textfield", "key": "a", "label": "A\x00"}]}
    refused = _post(carla, f"/modeller/drafts/{draft_id}/forms/intake/save", {"form": form, "revision": 2})
    assert refused.status_code == 400
    assert _draft(web, draft_id).revision == 2
