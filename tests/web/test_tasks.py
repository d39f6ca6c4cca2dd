"""The task page: form from its definition, server-side validation in German, drafts, completion with
Post/Redirect/Get, and stale tasks that keep what was entered."""

from __future__ import annotations

import json
import re

from engine import identity, serialization
from engine.deploy import deploy
from engine.models import Task
from tests import modelkit
from tests.web.conftest import case_at_advice, complete, login, open_task, start_case
from tests.web.models import PERSONAL

NOTES = "Gespräch mit der Schulleitung am Montag"


def _advise(web, client, user="alice"):
    case = case_at_advice(web)
    login(client, user)
    return case, open_task(web, case.id, "advise").id


def test_the_form_is_rendered_from_its_definition_with_labels(client, web):
    _, task_id = _advise(web, client)
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert '<label for="sessions">Anzahl der Sitzungen <span class="required">(Pflichtfeld)</span></label>' in page
    assert 'id="advice_notes"' in page and 'type="checkbox"' in page
    assert "Aufgabe erledigen" in page and "Entwurf speichern" in page


def test_the_task_page_shows_the_case_context(client, web):
    case, task_id = _advise(web, client)
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert case.number in page and "Beratung (Test)" in page
    assert "Bisherige Angaben in diesem Fall" in page and PERSONAL in page and "RZ West" in page
    assert 'data-diagram-url="/cases/' in page or "Diagramm ist nicht verfügbar" in page


def test_the_due_date_is_shown_in_german_format_and_berlin_time(client, web):
    _, task_id = _advise(web, client)  # due P2D from 26.11.2026 09:00 UTC
    assert "28.11.2026, 10:00 Uhr" in client.get(f"/tasks/{task_id}").get_data(as_text=True)


def test_an_invalid_value_is_explained_next_to_its_field_and_in_a_summary(client, web):
    _, task_id = _advise(web, client)
    response = client.post(f"/tasks/{task_id}", data={"action": "complete", "sessions": "", "advice_notes": NOTES})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'data-testid="error-summary"' in page and '<a href="#sessions">Anzahl der Sitzungen: ' in page
    assert 'aria-describedby="sessions-fehler"' in page and 'aria-invalid="true"' in page
    assert 'id="sessions-fehler"' in page and "Bitte füllen Sie dieses Feld aus." in page
    assert NOTES in page
    assert open_task(web, case_id(web, task_id), "advise").id == task_id


def test_an_english_user_reads_the_validation_messages_in_english(client, web):
    _, task_id = _advise(web, client)
    client.post("/account/language", data={"locale": "en"})
    page = client.post(f"/tasks/{task_id}", data={"action": "complete", "sessions": "", "advice_notes": NOTES}
                       ).get_data(as_text=True)
    assert 'id="sessions-fehler"' in page and "Please fill in this field." in page
    assert "Bitte füllen Sie dieses Feld aus." not in page
    page = client.post(f"/tasks/{task_id}", data={"action": "complete", "sessions": "50", "advice_notes": NOTES}
                       ).get_data(as_text=True)
    assert "The value must not be greater than 20." in page  # a message with a value
    page = client.post(f"/tasks/{task_id}", data={"action": "complete", "sessions": "zwei", "advice_notes": NOTES}
                       ).get_data(as_text=True)
    assert "Please enter a number." in page and "Bitte geben Sie" not in page  # the field's type refused it
    intake = open_task(web, start_case(web).id, "intake").id  # a select: its blank choice comes from the engine
    page = client.get(f"/tasks/{intake}").get_data(as_text=True)
    assert '<option value="">Please choose …</option>' in page and "Bitte wählen" not in page


def case_id(web, task_id):
    with web.transaction() as s:
        return s.get(Task, task_id).instance_id


def test_a_value_out_of_range_is_refused(client, web):
    _, task_id = _advise(web, client)
    response = client.post(f"/tasks/{task_id}", data={"action": "complete", "sessions": "50"})
    assert response.status_code == 422 and "20" in response.get_data(as_text=True)


def test_a_valid_form_completes_the_task_and_leads_to_the_next_one(client, web):
    case, task_id = _advise(web, client)
    response = client.post(f"/tasks/{task_id}", data={"action": "complete", "sessions": "3", "advice_notes": NOTES})
    assert response.status_code == 303
    following = open_task(web, case.id, "close")
    assert response.headers["Location"] == f"/tasks/{following.id}"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Aufgabe erledigt." in page and "Für diese Aufgabe sind keine Angaben nötig." in page
    with web.transaction() as s:
        assert s.get(Task, task_id).state == "completed"


def test_the_form_post_completes_on_the_workflow_its_page_read(client, web, monkeypatch):
    case, task_id = _advise(web, client)
    restores = []
    load_state = serialization.load_state
    monkeypatch.setattr(serialization, "load_state", lambda *a, **k: restores.append(1) or load_state(*a, **k))
    assert client.get(f"/tasks/{task_id}").status_code == 200
    assert len(restores) == 1
    response = client.post(f"/tasks/{task_id}", data={"action": "complete", "sessions": "3", "advice_notes": NOTES})
    assert response.status_code == 303 and len(restores) == 1  # the post restored nothing
    assert "Aufgabe erledigt." in client.get(response.headers["Location"]).get_data(as_text=True)
    assert len(restores) == 2
    with web.transaction() as s:
        assert s.get(Task, task_id).state == "completed"
    assert open_task(web, case.id, "close") is not None


def test_the_last_task_leads_back_to_the_inbox(client, web):
    case, task_id = _advise(web, client)
    complete(web, task_id, "alice", sessions=2)
    last = open_task(web, case.id, "close").id
    response = client.post(f"/tasks/{last}", data={"action": "complete"})
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_a_draft_is_saved_and_fills_the_form_again(client, web):
    _, task_id = _advise(web, client)
    response = client.post(f"/tasks/{task_id}", data={"action": "draft", "sessions": "", "advice_notes": NOTES})
    assert response.status_code == 303 and response.headers["Location"] == f"/tasks/{task_id}"
    with web.transaction() as s:
        assert json.loads(s.get(Task, task_id).draft_json)["advice_notes"] == NOTES
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert "Entwurf gespeichert." in page and "Ein gespeicherter Entwurf wurde geladen." in page
    assert f"{NOTES}</textarea>" in page


def test_a_draft_too_long_to_store_is_refused_and_the_entered_text_stays_on_the_page(client, web):
    _, task_id = _advise(web, client)
    client.post(f"/tasks/{task_id}", data={"action": "draft", "sessions": "", "advice_notes": NOTES})
    long_notes = "Gesprächsnotiz " * 20_000  # 300,000 characters
    response = client.post(f"/tasks/{task_id}", data={"action": "draft", "sessions": "", "advice_notes": long_notes})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "Der Entwurf ist zu lang" in page and long_notes.strip() in page
    with web.transaction() as s:
        assert json.loads(s.get(Task, task_id).draft_json)["advice_notes"] == NOTES  # the earlier draft stays


def test_a_task_completed_by_someone_else_keeps_the_entered_values(client, web):
    _, task_id = _advise(web, client)
    complete(web, task_id, "bob", sessions=1)
    response = client.post(f"/tasks/{task_id}", data={"action": "complete", "sessions": "4", "advice_notes": NOTES})
    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Diese Aufgabe wurde inzwischen von bob erledigt." in page
    assert f"{NOTES}</textarea>" in page and 'value="4"' in page


def test_a_double_submit_is_answered_as_stale_with_the_values_kept(client, web):
    _, task_id = _advise(web, client)
    data = {"action": "complete", "sessions": "4", "advice_notes": NOTES}
    assert client.post(f"/tasks/{task_id}", data=data).status_code == 303
    second = client.post(f"/tasks/{task_id}", data=data)
    assert second.status_code == 409
    assert "Sie haben diese Aufgabe bereits erledigt." in second.get_data(as_text=True)
    assert NOTES in second.get_data(as_text=True)


def test_a_task_handed_to_a_colleague_is_no_longer_mine(client, web):
    _, task_id = _advise(web, client)
    with web.transaction() as s:
        web.runtime(s).claim(task_id, user="bob")
    response = client.post(f"/tasks/{task_id}", data={"action": "complete", "sessions": "4", "advice_notes": NOTES})
    assert response.status_code == 409
    assert "bearbeitet inzwischen bob" in response.get_data(as_text=True)
    assert NOTES in response.get_data(as_text=True)
    draft = client.post(f"/tasks/{task_id}", data={"action": "draft", "advice_notes": NOTES})
    assert draft.status_code == 409


def test_a_task_withdrawn_by_its_deadline_keeps_the_entered_values(client, web):
    with web.transaction() as s:
        deploy(s, {"deadline.bpmn": modelkit.boundary_timer("deadline", "P2D")}, user="carla", now=web.clock.now())
        instance = web.runtime(s).start("deadline", user="alice")
    task_id = open_task(web, instance.id, "work").id
    login(client, "alice")
    web.clock.advance(days=3)
    response = client.post(f"/tasks/{task_id}", data={"action": "complete"})
    assert response.status_code == 409
    assert "zurückgezogen" in response.get_data(as_text=True)


def test_a_completed_task_page_says_so(client, web):
    _, task_id = _advise(web, client)
    complete(web, task_id, "bob", sessions=1)
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert "von bob erledigt" in page and 'data-testid="task-form"' not in page


def test_refreshing_shows_the_form_again_without_saving(client, web):
    _, task_id = _advise(web, client)
    response = client.post(f"/tasks/{task_id}", data={"action": "refresh", "advice_notes": NOTES})
    assert response.status_code == 200 and NOTES in response.get_data(as_text=True)
    with web.transaction() as s:
        assert s.get(Task, task_id).state == "open" and s.get(Task, task_id).draft_json is None


def test_the_hand_over_list_offers_only_candidates(client, web):
    _, task_id = _advise(web, client)
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    options = re.findall(r'<option value="([^"]*)"', page)
    assert "bob" in options and "lena" in options and "otto" not in options and "alice" not in options


def test_the_policy_decides_a_form_post_where_the_engine_would_let_a_candidate_complete(client, web):
    """A named candidate with no role in any unit: the engine's own check lets them complete, the policy
    does not (staff only); the post answers 404 like any task the user may not see, and changes nothing."""
    with web.transaction() as s:
        identity.add_user(s, "nora", now=web.clock.now())  # no memberships
        deploy(s, {"solo.bpmn": modelkit.definitions("solo", "\n".join([
            '<bpmn:startEvent id="start" />', modelkit.user_task("t", "Für Nora", 'camunda:candidateUsers="nora"'),
            '<bpmn:endEvent id="end" />', modelkit.flow("f1", "start", "t"), modelkit.flow("f2", "t", "end")]))},
            user="carla", now=web.clock.now())
        instance = web.runtime(s).start("solo", user="alice")
    task_id = open_task(web, instance.id, "t").id
    login(client, "nora")
    assert client.post(f"/tasks/{task_id}", data={"action": "complete"}).status_code == 404
    with web.transaction() as s:
        assert s.get(Task, task_id).state == "open"
        assert web.runtime(s).complete(task_id, user="nora").status == "completed"  # the engine alone would


def test_a_task_is_handed_only_to_active_candidates_other_than_me_its_assignee_and_the_excluded(web):
    """casework.colleagues: named users, members of a candidate unit, members with a candidate unit role,
    each with a role that works on cases; never the user asking, the assignee, an excluded user, a
    deactivated one, or one without such a role (who could not open the task)."""
    from webapp.services import casework

    with web.transaction() as s:
        now = web.clock.now()
        identity.add_unit(s, "rz-ost", name="rz-ost")
        identity.add_user(s, "olga", now=now, display_name="Olga Ost", memberships=[("rz-ost", "lead")])
        identity.add_user(s, "oskar", now=now, memberships=[("rz-ost", "counsellor")])  # not a lead
        identity.add_user(s, "ina", now=now, memberships=[("rz-west", "counsellor")])
        identity.get_user(s, "ina").is_active = False
        identity.add_user(s, "nora", now=now)  # named, but no role that works on cases
        deploy(s, {"handover.bpmn": modelkit.definitions("handover", "\n".join([
            '<bpmn:startEvent id="start" />',
            modelkit.user_task("t", "Übergabe", 'camunda:candidateGroups="rz-west,rz-ost:lead" '
                               'camunda:candidateUsers="nora,carla"', body=(
                '<bpmn:extensionElements><camunda:properties><camunda:property name="not_user" value="bob"/>'
                '</camunda:properties></bpmn:extensionElements>')),
            '<bpmn:endEvent id="end" />', modelkit.flow("f1", "start", "t"), modelkit.flow("f2", "t", "end")]))},
            user="carla", now=now)
        instance = web.runtime(s).start("handover", user="alice")
    task_id = open_task(web, instance.id, "t").id
    with web.transaction() as s:
        task, alice = s.get(Task, task_id), identity.get_user(s, "alice")
        found = casework.colleagues(s, task, alice)
        assert {c.username for c in found} == {"carla", "lena", "olga"} and len(found) == 3
        assert ("olga", "Olga Ost") in found
        web.runtime(s).claim(task_id, user="lena")
    with web.transaction() as s:
        assert "lena" not in {c.username for c in casework.colleagues(s, s.get(Task, task_id), alice)}
