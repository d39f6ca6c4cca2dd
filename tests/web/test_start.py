"""Verfahren starten: the procedures a user may start, with their start forms."""

from __future__ import annotations

import re
import threading

from sqlalchemy import select

from engine.deploy import deploy
from engine.models import ProcessInstance
from tests import modelkit
from tests.web.conftest import login, open_task


def test_the_list_shows_the_procedures_the_user_may_start(client, web):
    login(client, "alice")
    page = client.get("/procedures/").get_data(as_text=True)
    keys = re.findall(r'data-testid="procedure" data-key="([^"]+)"', page)
    assert sorted(keys) == ["casework", "request_form"]
    assert "Beratung (Test)" in page


def test_supervisors_and_admins_start_nothing(client, web):
    for user in ("sven", "adam", "mira"):
        login(client, user)
        assert client.get("/procedures/").status_code == 404
        assert client.get("/procedures/casework").status_code == 404
        assert "Verfahren starten" not in client.get("/").get_data(as_text=True)


def test_start_roles_come_from_the_policy_mapping(web):
    from engine import policy
    from engine.identity import get_user

    with web.transaction() as s:
        carla, alice = get_user(s, "carla"), get_user(s, "alice")
        assert policy.can(carla, policy.Permission.PROCESS_START, "consultation")
        assert not policy.can(carla, policy.Permission.PROCESS_START, "proactive_intervention")
        assert policy.can(alice, policy.Permission.PROCESS_START, "proactive_intervention")
        assert policy.can(carla, policy.Permission.PROCESS_START, "some_new_process")


def test_a_procedure_without_start_form_starts_with_a_button_and_opens_the_case(client, web):
    login(client, "alice")
    page = client.get("/procedures/casework").get_data(as_text=True)
    assert 'data-testid="start"' in page and "Mit dem Start wird ein neuer Fall angelegt." in page
    response = client.post("/procedures/casework")
    assert response.status_code == 303
    with web.transaction() as s:
        instance = s.scalars(select(ProcessInstance)).one()
        assert instance.started_by == "alice"
    assert response.headers["Location"] == f"/cases/{instance.id}"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Fallnummer: {instance.case_number}" in page and "Anfrage erfassen" in page
    assert open_task(web, instance.id, "intake").assignee == "alice"


def test_a_start_form_is_validated_and_its_values_start_the_case(client, web):
    login(client, "alice")
    page = client.get("/procedures/request_form").get_data(as_text=True)
    assert '<label for="subject">Betreff' in page
    response = client.post("/procedures/request_form", data={"subject": ""})
    assert response.status_code == 422 and "Bitte füllen Sie dieses Feld aus." in response.get_data(as_text=True)
    response = client.post("/procedures/request_form", data={"subject": "Schulhof"})
    assert response.status_code == 303
    with web.transaction() as s:
        instance = s.scalars(select(ProcessInstance)).one()
        workflow = web.runtime(s).load_workflow(instance)
        from engine.runtime import instance_data

        assert instance_data(workflow)["subject"] == "Schulhof"


def test_start_data_defaults_declared_in_the_model_are_passed(client, web):
    body = ('<bpmn:extensionElements><camunda:properties>'
            '<camunda:property name="default.first_contact_days" value="3" />'
            '</camunda:properties></bpmn:extensionElements>'
            '<bpmn:startEvent id="s" /><bpmn:userTask id="t" camunda:candidateGroups="rz-west" />'
            '<bpmn:endEvent id="e" /><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t" />'
            '<bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e" />')
    with web.transaction() as s:
        deploy(s, {"defaults.bpmn": modelkit.definitions("with_defaults", body)}, user="carla", now=web.clock.now())
    login(client, "alice")
    assert client.post("/procedures/with_defaults").status_code == 303
    with web.transaction() as s:
        instance = s.scalars(select(ProcessInstance).where(ProcessInstance.process_key == "with_defaults")).one()
        from engine.runtime import instance_data

        assert instance_data(web.runtime(s).load_workflow(instance))["first_contact_days"] == 3


def test_an_unknown_procedure_is_404(client, web):
    login(client, "alice")
    assert client.get("/procedures/gibt-es-nicht").status_code == 404


def _submission(client, key: str) -> str:
    page = client.get(f"/procedures/{key}").get_data(as_text=True)
    return re.search(r'name="submission" value="([^"]+)"', page).group(1)


def test_a_start_form_sent_twice_starts_one_case_and_leads_to_it(client, web):
    login(client, "alice")
    token = _submission(client, "casework")
    first = client.post("/procedures/casework", data={"submission": token})
    again = client.post("/procedures/casework", data={"submission": token})
    assert first.status_code == again.status_code == 303 and first.headers["Location"] == again.headers["Location"]
    with web.transaction() as s:
        instance = s.scalars(select(ProcessInstance)).one()
    page = client.get(again.headers["Location"]).get_data(as_text=True)
    assert f"Dieses Formular wurde bereits abgeschickt: der Fall {instance.case_number} ist angelegt." in page
    assert _submission(client, "casework") != token  # a new form is a new case
    assert client.post("/procedures/casework", data={"submission": _submission(client, "casework")}).status_code == 303
    with web.transaction() as s:
        assert len(s.scalars(select(ProcessInstance)).all()) == 2


def test_a_double_click_on_start_starts_one_case_even_while_the_first_request_runs(app, web):
    """Both requests run at once: the second waits for the first's token row and then leads to its case."""
    clients = [app.test_client() for _ in range(2)]
    for c in clients:
        login(c, "alice")
    token = _submission(clients[0], "casework")
    barrier, answers = threading.Barrier(2), []

    def send(c):
        barrier.wait()
        answers.append(c.post("/procedures/casework", data={"submission": token}))

    threads = [threading.Thread(target=send, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [303, 303]
    assert answers[0].headers["Location"] == answers[1].headers["Location"]
    with web.transaction() as s:
        assert len(s.scalars(select(ProcessInstance)).all()) == 1
