"""The modeller pages (coordinators only): drafts, save with conflicts, check, publish, versions, diff, migration,
forms with a server-side preview, and the decision table form. The browser parts are in tests/browser."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from engine import decisions, drafts, identity, versions
from engine.errors import FallwerkError, ValidationFailed
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
    table = decisions.read_table(drafts.draft_files(_draft(web, draft_id))["routing.dmn"])
    assert [(r.inputs, r.outputs) for r in table.rules] == [(['"gewalt"'], ['"lks"']), (['"schule"'], ['"rz-west"'])]
    assert table.rules[0].id == "r1" and table.rules[0].description == "Gewalt: LKS"
    missing = carla.post(f"/modeller/drafts/{draft_id}/decisions/routing.dmn",
                         data={"revision": "3", "rows": "1", "rule-0-id": "r1", "rule-0-in-0": "x", "rule-0-out-0": ""})
    assert missing.status_code == 422 and "Ergebnis" in missing.get_data(as_text=True)


@pytest.mark.parametrize(("change", "message"), [
    ({"rule-0-out-0": '"rz\x01"'}, "Zeile 1 enthält ein Steuerzeichen, das nicht gespeichert werden kann."),
    ({"rule-0-description": "a\x0bb"}, "Zeile 1 enthält ein Steuerzeichen, das nicht gespeichert werden kann."),
    ({"rule-1-in-0": "\x1f"}, "Zeile 2 enthält ein Steuerzeichen, das nicht gespeichert werden kann."),
    ({"rule-0-id": "a b c"}, "Zeile 1: „a b c“ ist keine gültige Regel-ID"),
    ({"rule-1-id": "r1"}, "Zeile 2: Die Regel-ID „r1“ gibt es in der Datei schon."),
    ({"rule-1-id": "o1"}, "Zeile 2: Die Regel-ID „o1“ gibt es in der Datei schon."),  # the output column's
    ({"rows": "-5"}, "Die Tabelle kam unvollständig an."),
    ({"rows": "kaputt"}, "Die Tabelle kam unvollständig an."),
])
def test_a_decision_table_that_cannot_be_written_is_refused_with_a_message_and_nothing_stored(carla, web, change,
                                                                                             message):
    draft_id = modeller_draft(web)
    form = {"revision": "2", "rows": "3", "rule-0-id": "r1", "rule-0-in-0": '"gewalt"', "rule-0-out-0": '"lks"',
            "rule-1-id": "r2", "rule-1-in-0": "", "rule-1-out-0": '"rz-west"', "rule-2-id": "", **change}
    refused = carla.post(f"/modeller/drafts/{draft_id}/decisions/routing.dmn", data=form)
    assert refused.status_code == 422 and message in refused.get_data(as_text=True)
    assert _draft(web, draft_id).revision == 2
    assert drafts.draft_files(_draft(web, draft_id))["routing.dmn"] == ROUTING


def test_writing_a_decision_table_never_writes_a_broken_file():
    table = decisions.read_table(ROUTING)
    table.rules[0].description = "a\x0bb"
    with pytest.raises(FallwerkError, match="character XML cannot hold"):
        decisions.write_table(ROUTING, table)
    table.rules[0].description, table.rules[1].id = "", "r1"
    with pytest.raises(FallwerkError, match="another rule or element"):
        decisions.write_table(ROUTING, table)


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


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_nul_character_is_found_in_every_encoding_json_allows(carla, web, encoding):
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn.replace("Beraten", "Bera\x00ten")
    for url, body in ((f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2}),
                      (f"/modeller/drafts/{draft_id}/forms/intake/save",
                       {"form": {"components": [{"type": "text", "text\x00": "a"}]}, "revision": 2})):
        refused = carla.post(url, data=json.dumps(body).encode(encoding), content_type="application/json")
        assert refused.status_code == 400 and "unzulässiges Zeichen (NUL)" in refused.json["message"]
    assert _draft(web, draft_id).revision == 2


def test_half_a_character_escaped_in_json_is_refused(carla, web):
    draft_id = modeller_draft(web)
    refused = carla.post(f"/modeller/drafts/{draft_id}/save", data='{"bpmn": "<x>\\ud800</x>", "revision": 2}',
                         content_type="application/json")
    assert refused.status_code == 400 and "nicht gespeichert werden kann" in refused.json["message"]
    assert _draft(web, draft_id).revision == 2


@pytest.mark.parametrize("path", ["save", "deploy", "forms/intake/save"])
def test_a_body_nested_deeper_than_the_parser_goes_is_an_incomplete_request(carla, web, path):
    draft_id = modeller_draft(web)
    for body in ("[" * 100000, '{"revision": 2, "bpmn": ' + "[" * 100000 + "]" * 100000 + "}", "{bpmn:"):
        refused = carla.post(f"/modeller/drafts/{draft_id}/{path}", data=body, content_type="application/json")
        assert refused.status_code == 400 and refused.json["message"] == "Unvollständige Anfrage."
    assert _draft(web, draft_id).status == "open" and _draft(web, draft_id).revision == 2


def test_a_body_over_the_request_limit_gets_json_naming_the_model_limit(carla, web):
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn + "<!--" + "x" * 11_000_000 + "-->"
    refused = _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    assert refused.status_code == 413 and refused.is_json and "höchstens 2 MB" in refused.json["message"]
    assert "10 MB" not in refused.json["message"]


def test_a_model_over_the_file_limit_is_refused_in_german(carla, web):
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn + "<!--" + "x" * (drafts.MAX_FILE + 1) + "-->"
    refused = _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    assert refused.status_code == 422
    assert refused.json["message"] == "Die Datei casework.bpmn ist größer als 2 MB; nichts wurde gespeichert."


def test_a_revision_the_draft_never_had_is_a_bad_request_not_a_conflict(carla, web):
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn
    for revision in (7, 0, -1):
        for url, body in ((f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": revision}),
                          (f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": revision, "overwrite": True}),
                          (f"/modeller/drafts/{draft_id}/forms/intake/save", {"form": {}, "revision": revision}),
                          (f"/modeller/drafts/{draft_id}/deploy", {"revision": revision})):
            refused = _post(carla, url, body)
            assert refused.status_code == 400 and refused.json["code"] == "unknown_revision", (url, revision)
            assert "nie gehabt" in refused.json["message"]
    table = {"rows": "1", "rule-0-id": "r1", "rule-0-in-0": '"gewalt"', "rule-0-out-0": '"lks"'}
    url = f"/modeller/drafts/{draft_id}/decisions/routing.dmn"
    assert carla.post(url, data=table).status_code == 400
    never = carla.post(url, data={**table, "revision": "9"})
    assert never.status_code == 400 and "nie gehabt" in never.get_data(as_text=True)
    assert _draft(web, draft_id).revision == 2


def test_a_new_procedure_with_a_name_longer_than_a_title_is_refused_with_a_message(carla, web):
    refused = carla.post("/modeller/new", data={"name": "N" * 201, "key": "nachbereitung"}, follow_redirects=True)
    assert refused.status_code == 200 and "höchstens 200 Zeichen" in refused.get_data(as_text=True)
    with web.transaction() as s:
        assert not drafts.list_drafts(s, "nachbereitung")
    assert carla.post("/modeller/new", data={"name": "N" * 200, "key": "nachbereitung"}).status_code == 303


def test_publishing_a_published_draft_again_says_so(carla, web):
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn.replace("Beraten", "Beraten (neu)")
    _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    assert _post(carla, f"/modeller/drafts/{draft_id}/deploy", {"revision": 3}).status_code == 200
    for body in ({"revision": 3}, {"revision": 3, "force": True}, {}):
        again = _post(carla, f"/modeller/drafts/{draft_id}/deploy", body)
        assert again.status_code == 409 and again.json["code"] == "closed"
        assert again.json["message"] == "Dieser Entwurf ist schon veröffentlicht (Version 2)."


def test_a_closed_draft_is_refused_in_german_wherever_it_is_saved(carla, web):
    draft_id = modeller_draft(web)
    xml = _draft(web, draft_id).bpmn.replace("Beraten", "Beraten (neu)")
    _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    _post(carla, f"/modeller/drafts/{draft_id}/deploy", {"revision": 3})
    published = "Dieser Entwurf ist schon veröffentlicht (Version 2)."
    for url, body in ((f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 3}),
                      (f"/modeller/drafts/{draft_id}/forms/intake/save", {"form": {}, "revision": 3})):
        refused = _post(carla, url, body)
        assert refused.status_code == 409 and refused.json == {"code": "closed", "message": published}
    table = carla.post(f"/modeller/drafts/{draft_id}/decisions/routing.dmn",
                       data={"revision": "3", "rows": "1", "rule-0-id": "r1", "rule-0-in-0": "", "rule-0-out-0": '"a"'})
    assert table.status_code == 409 and published in table.get_data(as_text=True)
    assert "deployed" not in table.get_data(as_text=True)
    discarded = modeller_draft(web)
    carla.post(f"/modeller/drafts/{discarded}/discard")
    refused = _post(carla, f"/modeller/drafts/{discarded}/save", {"bpmn": xml, "revision": 2})
    assert refused.json == {"code": "closed", "message": "Dieser Entwurf wurde verworfen."}


def test_a_draft_cannot_publish_a_process_of_another_procedure(carla, web):
    draft_id = modeller_draft(web)
    stub = '</bpmn:process><bpmn:process id="{}" isExecutable="true"><bpmn:startEvent id="S_{}" /></bpmn:process>'
    xml = _draft(web, draft_id).bpmn.replace("</bpmn:process>", stub.format("request_form", "1"), 1)
    _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    checked = _post(carla, f"/modeller/drafts/{draft_id}/check", {}).json
    [finding] = checked["findings"]
    assert checked["ok"] is False and finding["element_id"] == "request_form"
    assert finding["message"].startswith("Der Prozess „request_form“ gehört zu einem anderen Verfahren "
                                         "(request_form.bpmn)")
    refused = _post(carla, f"/modeller/drafts/{draft_id}/deploy", {"revision": 3})
    assert refused.status_code == 422 and "Nichts wurde veröffentlicht" in refused.json["message"]
    assert refused.json["findings"][0]["message"] == finding["message"]
    with web.transaction() as s:
        assert [r.definition.version for r in versions.versions(s, "request_form")] == [1]
        assert [r.definition.version for r in versions.versions(s, "casework")] == [1]
    xml = _draft(web, draft_id).bpmn.replace('id="request_form"', 'id="nachsorge"')  # a new process may come along
    _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 3})
    published = _post(carla, f"/modeller/drafts/{draft_id}/deploy", {"revision": 4})
    assert [(d["key"], d["version"]) for d in published.json["created"]] == [("nachsorge", 1)]


def test_of_two_drafts_published_at_the_same_moment_the_second_is_told_and_stores_nothing(carla, web):
    if web.backend != "postgresql":
        pytest.skip("SQLite lets one writer in at a time: the second publish starts after the first committed")
    first, second = modeller_draft(web), modeller_draft(web)
    for draft_id, name in ((first, "Beraten (A)"), (second, "Beraten (B)")):
        xml = _draft(web, draft_id).bpmn.replace("Beraten", name)
        _post(carla, f"/modeller/drafts/{draft_id}/save", {"bpmn": xml, "revision": 2})
    answer = {}
    with web.transaction() as s:
        drafts.deploy_draft(s, first, user="carla", now=web.clock.now())  # version 2, not committed yet
        publishing = threading.Thread(target=lambda: answer.update(
            response=_post(carla, f"/modeller/drafts/{second}/deploy", {"revision": 3, "force": True})))
        publishing.start()
        _wait_for_a_lock(web, publishing)
    publishing.join(30)
    response = answer["response"]
    assert response.status_code == 409 and response.json["code"] == "concurrent_deploy"
    assert "Im selben Moment hat jemand anderes eine Version" in response.json["message"]
    with web.transaction() as s:
        assert [r.definition.version for r in versions.versions(s, "casework")] == [2, 1]
        assert s.get(Draft, second).status == "open" and s.get(Draft, first).status == "deployed"


def _wait_for_a_lock(db, thread: threading.Thread) -> None:
    """Until a connection to the test's database waits for a lock (the second publish, on the unique key of the
    new version), or the thread has ended."""
    from sqlalchemy import text

    waiting = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND wait_event_type = 'Lock'")
    deadline = time.monotonic() + 60  # a bound only: it returns as soon as the lock is waited for
    with db.engine.connect() as conn:
        while thread.is_alive() and not conn.execute(waiting).scalar():
            assert time.monotonic() < deadline, "the second publish never waited for the first"
            time.sleep(0.05)
