"""The staff web app in a real browser (Playwright driving Debian's Chromium) against a live server on a real
database: a counsellor sees a task of her team, claims it, fills its form wrongly and then rightly, completes
it, and the next step appears for the right people; a case of another unit is a 404 page in German; sign-in
and task completion work with the keyboard alone, with visible focus; and one long test takes a request
through the whole consultation procedure to a closed consultation, as a newcomer would from the README."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from engine.models import ProcessInstance, Task
from engine.runtime import instance_data

from .conftest import sign_in, sign_out

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# demo users (engine/demo.py): two counsellors and the lead of RZ Westmecklenburg, a counsellor in Rostock,
# the coordinator of the LKS (the network's central contact point for requests)
ANNA, JONAS, MARIA, TOM, KATRIN = "anna.berger", "jonas.krueger", "maria.schulz", "tom.richter", "katrin.lange"
REQUEST = {"requester_name": "Erika Mustermann", "requester_contact": "0385 123456", "organisation_name": "",
           "client_type": "schule", "territory": "sn", "topics": ["rechtsextremismus"],
           "primary_topic": "rechtsextremismus", "concern": "Rechtsextreme Aufkleber am Schultor", "urgency": "normal",
           "channel": "telefon"}
STEPS = {  # valid answers for each step of the consultation, as the engine takes them
    "Task_FirstContact": {"first_contact_date": "2026-11-26", "first_contact_channel": "telefon",
                          "first_contact_notes": "Rückruf bei der Schulleitung"},
    "Task_ClarifyMandate": {"commission_given": True, "mandate_description": "Begleitung der Schulleitung",
                            "commission_date": "2026-11-27"},
    "Task_GoalAgreement": {"consultation_goals": "Umgang mit den Aufklebern klären", "agreement_date": "2026-11-28"},
    "Task_ComposeTeam": {"case_team": ANNA, "experts_needed": False},
}


# --- cases set up through the engine (the browser part starts at the inbox) ---------------------------------
def start_consultation(db, user: str, **request) -> ProcessInstance:
    """A consultation whose request `user` has recorded; the first contact is open for the responsible unit."""
    with db.transaction() as s:
        runtime = db.runtime(s)
        instance = runtime.start("consultation", user=user, data={"first_contact_days": 3})
        task = open_task(s, instance.id, "Task_RecordRequest")
        runtime.complete(task.id, user=user, data={**REQUEST, **request})
        return instance


def open_task(session, instance_id: int, element: str) -> Task:
    return session.scalars(select(Task).where(Task.instance_id == instance_id, Task.element_id == element,
                                              Task.state == "open")).one()


def advance(db, instance_id: int, *, to: str, user: str = ANNA) -> Task:
    """Complete the steps of STEPS in order until `to` is the open task."""
    for element, data in STEPS.items():
        with db.transaction() as s:
            found = s.scalars(select(Task).where(Task.instance_id == instance_id, Task.state == "open")).all()
            if any(t.element_id == to for t in found):
                return next(t for t in found if t.element_id == to)
            db.runtime(s).complete(open_task(s, instance_id, element).id, user=user, data=data)
    with db.transaction() as s:
        return open_task(s, instance_id, to)


def case_status(db, instance_id: int) -> str:
    with db.transaction() as s:
        return s.get(ProcessInstance, instance_id).status


# --- page helpers ------------------------------------------------------------------------------------------
def task_rows(page, title: str | None = None):
    rows = page.get_by_test_id("task-row")
    return rows.filter(has_text=title) if title else rows


def flash_text(page) -> str:
    return " ".join(page.get_by_test_id("flash").all_inner_texts())


def complete_task(page):
    with page.expect_navigation():
        page.get_by_test_id("complete").click()


def error_of(page, field_id: str) -> str:
    """The error text shown next to a field (inside the same field wrapper, referenced by aria-describedby)."""
    return page.locator(f"#{field_id}-fehler").inner_text().replace("Fehler:", "").strip()


def assert_german_404(page, response, *, not_containing=()):
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Seite nicht gefunden"
    assert "Diese Seite gibt es nicht, oder Sie haben keinen Zugriff darauf." in page.get_by_test_id(
        "error-message").inner_text()
    assert re.fullmatch(r"[0-9a-f]{32}", page.get_by_test_id("request-id").inner_text())
    html = page.content()
    assert "Traceback" not in html and "NotFound" not in html
    for value in not_containing:
        assert value not in html


# --- the tests ---------------------------------------------------------------------------------------------
def test_a_counsellor_claims_a_team_task_corrects_its_form_completes_it_and_the_next_step_reaches_her_unit(
        network, live_server, new_page):
    base = live_server.url
    ours = start_consultation(network, KATRIN, territory="sn")  # Schwerin: RZ Westmecklenburg
    foreign = start_consultation(network, TOM, territory="hro", requester_name="Hanna Fremdfall")  # Rostock

    # the first contact is a task of Jonas's team, nobody has claimed it yet
    page = new_page()
    sign_in(page, base, JONAS)
    assert page.get_by_test_id("signed-in-as").inner_text() == "Jonas Krüger"
    assert page.get_by_test_id("count-mine").inner_text() == "0"
    assert page.get_by_test_id("count-team").inner_text() == "1"
    page.get_by_test_id("tab-team").click()
    row = task_rows(page, "Erstkontakt aufnehmen")
    assert row.count() == 1 and ours.case_number in row.inner_text()
    assert foreign.case_number not in page.content()  # Rostock's request is not his team's

    # claim it: it moves to "Meine Aufgaben"
    row.get_by_test_id("claim").click()
    page.wait_for_load_state()
    assert "Aufgabe übernommen." in flash_text(page)
    page.get_by_test_id("tab-mine").click()
    assert page.get_by_test_id("count-mine").inner_text() == "1"
    page.get_by_role("link", name="Erstkontakt aufnehmen", exact=True).click()
    assert page.locator("h1").inner_text() == "Erstkontakt aufnehmen"
    assert page.get_by_test_id("assignee").inner_text() == "Jonas Krüger"
    # the case context: the earlier answers and the position in the diagram
    assert "Rechtsextreme Aufkleber am Schultor" in page.locator("section[aria-labelledby=bisher-titel]").inner_text()
    page.wait_for_selector('#diagramm g.djs-element.active[data-element-id="Task_FirstContact"]')
    assert page.locator('#diagramm g.djs-element.done[data-element-id="Task_RecordRequest"]').count() == 1

    # invalid: the kind of contact is missing; the German error stands next to the field, the rest is kept
    page.fill("#first_contact_date", "2026-11-26")
    page.fill("#first_contact_notes", "Rückruf bei der Schulleitung, Termin vereinbart")
    with page.expect_navigation() as navigation:
        page.get_by_test_id("complete").click()
    assert navigation.value.status == 422
    assert error_of(page, "first_contact_channel") == "Bitte wählen Sie einen Wert aus."
    channel = page.locator("#first_contact_channel")
    assert channel.get_attribute("aria-invalid") == "true"
    assert "first_contact_channel-fehler" in channel.get_attribute("aria-describedby")
    wrapper = page.locator(".field.has-error", has=page.locator("#first_contact_channel"))
    assert wrapper.locator("#first_contact_channel-fehler").count() == 1
    summary = page.get_by_test_id("error-summary")
    assert summary.get_by_role("link").get_attribute("href") == "#first_contact_channel"
    assert page.input_value("#first_contact_date") == "2026-11-26"
    assert page.input_value("#first_contact_notes") == "Rückruf bei der Schulleitung, Termin vereinbart"
    assert page.locator(".field-error").count() == 1

    # valid: completed; the next step of this case opens for him, since his unit is its candidate
    page.select_option("#first_contact_channel", "telefon")
    complete_task(page)
    assert "Aufgabe erledigt." in flash_text(page)
    assert page.locator("h1").inner_text() == "Auftrag klären"
    assert ours.case_number in page.get_by_test_id("task-facts").inner_text()
    with network.transaction() as s:
        done = s.scalars(select(Task).where(Task.instance_id == ours.id, Task.element_id == "Task_FirstContact")).one()
        assert (done.state, done.completed_by) == ("completed", JONAS)
        next_task = open_task(s, ours.id, "Task_ClarifyMandate")
        assert next_task.assignee is None

    # the right people see the next step: a colleague of the unit in her team's tasks ...
    anna = new_page()
    sign_in(anna, base, ANNA)
    anna.get_by_test_id("tab-team").click()
    assert task_rows(anna, "Auftrag klären").filter(has_text=ours.case_number).count() == 1
    # ... and the counsellor in Rostock neither sees it nor may open it
    tom = new_page()
    sign_in(tom, base, TOM)
    tom.get_by_test_id("tab-team").click()
    assert ours.case_number not in tom.content()
    assert_german_404(tom, tom.goto(f"{base}/tasks/{next_task.id}"), not_containing=["Erika Mustermann"])
    assert_german_404(tom, tom.goto(f"{base}/cases/{ours.id}"), not_containing=["Erika Mustermann"])

    # a case of another unit is a 404, exactly like a case that does not exist, and leaks nothing
    response = anna.goto(f"{base}/cases/{foreign.id}")
    assert_german_404(anna, response, not_containing=["Hanna Fremdfall", foreign.case_number])
    foreign_page = anna.get_by_test_id("error-message").inner_text()
    assert_german_404(anna, anna.goto(f"{base}/cases/999999"))
    assert anna.get_by_test_id("error-message").inner_text() == foreign_page
    # the error page is the app's page: header, navigation, a way back to the tasks
    assert anna.get_by_test_id("signed-in-as").inner_text() == "Anna Berger"
    anna.get_by_role("link", name="Zu den Aufgaben").click()
    anna.wait_for_url(f"{base}/")

    for p in (page, anna, tom):
        assert not p.problems, p.problems


# --- keyboard only -----------------------------------------------------------------------------------------
FOCUSED = """() => {
  const e = document.activeElement;
  const s = getComputedStyle(e);
  const r = e.getBoundingClientRect();
  return {tag: e.tagName.toLowerCase(), id: e.id, testid: e.dataset ? (e.dataset.testid || '') : '',
          text: (e.innerText || e.value || '').trim().slice(0, 60),
          outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2,
          shadow: s.boxShadow !== 'none',
          onscreen: r.width > 0 && r.height > 0 && r.right > 0 && r.bottom > 0
                    && r.left < window.innerWidth + 1 && r.top < document.documentElement.scrollHeight};
}"""


def tab_to(page, selector: str, *, limit: int = 60, shift: bool = False) -> list[dict]:
    """Press Tab until the focused element matches `selector`; every element passed on the way must show a
    visible focus indicator (an outline of at least 2px or the focus ring's shadow) and be on screen."""
    passed = []
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if shift else "Tab")
        focused = page.evaluate(FOCUSED)
        if focused["tag"] == "body":
            continue
        passed.append(focused)
        assert focused["outline"] or focused["shadow"], f"no visible focus on {focused}"
        assert focused["onscreen"], f"focused element is off screen: {focused}"
        if page.evaluate("(sel) => document.activeElement.matches(sel)", selector):
            return passed
    raise AssertionError(f"{selector} not reached with Tab; passed {[p['text'] or p['id'] for p in passed]}")


def test_sign_in_and_task_completion_with_the_keyboard_alone_with_visible_focus(sqlite_network, sqlite_live_server,
                                                                                  new_page):
    db, base = sqlite_network, sqlite_live_server.url
    case = start_consultation(db, ANNA, territory="sn")
    task = advance(db, case.id, to="Task_ProblemAnalysis")
    page = new_page()
    page.goto(f"{base}/login")

    # the first Tab reaches the skip link, which becomes visible
    page.keyboard.press("Tab")
    first = page.evaluate(FOCUSED)
    assert first["text"] == "Zum Inhalt springen" and first["onscreen"] and (first["outline"] or first["shadow"])
    assert page.locator(".skip-link").bounding_box()["x"] >= 0
    tab_to(page, "#username")
    page.keyboard.type(JONAS)
    tab_to(page, "#password")
    page.keyboard.type("falsch")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    # a failed sign-in: the German message is announced, the username kept, focus can go straight back
    assert "Anmeldung fehlgeschlagen" in page.get_by_test_id("error-summary").inner_text()
    assert page.input_value("#username") == JONAS
    page.locator("#password").focus()
    page.keyboard.type("demo-passwort")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{base}/"

    # to the team's tasks, claim the problem analysis, open it from "Meine Aufgaben"
    tab_to(page, "[data-testid=tab-team]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, f"tr[data-task-id='{task.id}'] [data-testid=claim]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Aufgabe übernommen." in flash_text(page)
    tab_to(page, "[data-testid=tab-mine]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, f"tr[data-task-id='{task.id}'] a")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("h1").inner_text() == "Gemeinsame Problemanalyse"

    # an empty required field first: the error summary takes the focus's place at the top, its link leads
    # to the field
    tab_to(page, "[data-testid=complete]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert error_of(page, "situation_analysis") == "Bitte füllen Sie dieses Feld aus."
    tab_to(page, "[data-testid=error-summary] a")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "situation_analysis"
    page.keyboard.type("Die Schulleitung sieht das Problem, das Kollegium ist gespalten.")
    tab_to(page, "[data-testid=complete]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Aufgabe erledigt." in flash_text(page)
    assert page.locator("h1").inner_text() == "Handlungsoptionen entwickeln"
    with db.transaction() as s:
        done = s.get(Task, task.id)
        assert (done.state, done.completed_by) == ("completed", JONAS)
        assert "gespalten" in (s.get(ProcessInstance, case.id).state_json or "")
    assert not page.problems, page.problems


# --- the newcomer's walk-through ---------------------------------------------------------------------------
def fill_form(page, values: dict) -> None:
    """Fill task form fields by id: text and dates with fill, selects with select_option, True/False
    checkboxes, lists of checklist values, radio values as ("radio", value)."""
    for key, value in values.items():
        if isinstance(value, bool):
            page.locator(f"#{key}").set_checked(value)
        elif isinstance(value, list):
            for option in value:
                page.locator(f"input[name={key}][value={option}]").check()
        elif isinstance(value, tuple) and value[0] == "radio":
            page.locator(f"input[name={key}][value={value[1]}]").check()
        elif page.locator(f"select#{key}").count():
            page.select_option(f"#{key}", value)
        else:
            page.fill(f"#{key}", value)


def test_a_newcomer_takes_a_request_through_to_a_closed_consultation(sqlite_network, sqlite_live_server, new_page):
    """The issue's "Done when": sign in as a demo counsellor, record a request, and take it through the
    consultation procedure (first contact, Beauftragung, Beratungsvereinbarung, team, analysis, options, one
    session, closing with the six indicators) in the browser, each step by a person who may do it."""
    db, base = sqlite_network, sqlite_live_server.url
    anna = new_page()
    sign_in(anna, base, ANNA)
    assert "Sie haben keine offenen Aufgaben" in anna.get_by_test_id("empty-inbox").inner_text()

    # start the consultation: Verfahren starten -> Beratungsprozess
    anna.get_by_role("link", name="Verfahren starten").click()
    anna.get_by_role("link", name="„Beratungsprozess“ starten").click()
    anna.get_by_test_id("start").click()
    anna.wait_for_url(re.compile(r"/cases/\d+$"))
    case_id = int(anna.url.rsplit("/", 1)[1])
    number = anna.get_by_test_id("case-number").inner_text()
    assert f"Fallnummer: {number}" in flash_text(anna)
    assert anna.get_by_test_id("status").inner_text() == "laufend"
    assert "Anfrage erfassen" in anna.get_by_test_id("current-step").inner_text()

    # 1. Anfrage erfassen: the first task is hers (she took the request)
    anna.get_by_test_id("open-tasks").get_by_role("link", name="Anfrage erfassen").click()
    assert anna.locator("h1").inner_text() == "Anfrage erfassen"
    fill_form(anna, {"requester_name": "Erika Mustermann", "requester_contact": "0385 123456",
                     "organisation_name": "Regionale Schule am See", "client_type": "schule", "territory": "sn",
                     "topics": ["rechtsextremismus", "rassismus"], "primary_topic": "rechtsextremismus",
                     "concern": "An der Schule tauchen rechtsextreme Aufkleber auf; die Schulleitung bittet um "
                                "Beratung.", "urgency": ("radio", "normal"), "channel": "telefon"})
    complete_task(anna)
    assert "Aufgabe erledigt." in flash_text(anna)

    # 2. Erstkontakt: routed to RZ Westmecklenburg (Schwerin), her unit, so it opens for her next
    assert anna.locator("h1").inner_text() == "Erstkontakt aufnehmen"
    assert "noch nicht übernommen" in anna.get_by_test_id("assignee").inner_text()
    fill_form(anna, {"first_contact_date": "2026-11-26", "first_contact_channel": "telefon",
                     "first_contact_notes": "Telefonat mit der Schulleiterin, Termin für ein Auftragsgespräch."})
    complete_task(anna)

    # 3. Auftrag klären: the Beauftragung; the mandate fields appear once the commission is ticked (the page is
    # rendered again on the server: no JavaScript needed)
    assert anna.locator("h1").inner_text() == "Auftrag klären"
    assert anna.locator("#mandate_description").count() == 0
    anna.locator("#commission_given").check()
    with anna.expect_navigation():
        anna.get_by_role("button", name="Angaben aktualisieren").click()
    assert anna.locator("#commission_given").is_checked()
    fill_form(anna, {"mandate_description": "Begleitung der Schulleitung im Umgang mit rechtsextremen Aufklebern",
                     "commission_date": "2026-11-27"})
    complete_task(anna)

    # 4. Beratungsvereinbarung
    assert anna.locator("h1").inner_text() == "Beratungsvereinbarung treffen"
    fill_form(anna, {"consultation_goals": "Handlungssicherheit des Kollegiums; Leitbild gegen Diskriminierung",
                     "agreement_date": "2026-11-30", "agreement_review_date": "2027-01-15"})
    complete_task(anna)

    # 5. Beratungsteam: Anna and her colleague Jonas, no further experts
    assert anna.locator("h1").inner_text() == "Beratungsteam zusammenstellen"
    fill_form(anna, {"case_team": f"{ANNA}, {JONAS}", "experts_needed": False})
    complete_task(anna)

    # 6. Gemeinsame Problemanalyse: Jonas (on the team) takes it from his team's tasks
    assert anna.locator("h1").inner_text() == "Gemeinsame Problemanalyse"
    jonas = new_page()
    sign_in(jonas, base, JONAS)
    jonas.get_by_test_id("tab-team").click()
    row = task_rows(jonas, "Gemeinsame Problemanalyse").filter(has_text=number)
    row.get_by_test_id("claim").click()
    jonas.wait_for_load_state()
    jonas.get_by_test_id("tab-mine").click()
    task_rows(jonas, "Gemeinsame Problemanalyse").get_by_role("link", name="Gemeinsame Problemanalyse",
                                                              exact=True).click()
    assert jonas.get_by_test_id("assignee").inner_text() == "Jonas Krüger"
    fill_form(jonas, {"situation_analysis": "Aufkleber seit September; Kollegium unsicher, Elternschaft gespalten.",
                      "perspectives": "Schulleitung, Lehrkräfte, Schülervertretung"})
    complete_task(jonas)
    assert "Aufgabe erledigt." in flash_text(jonas)
    # meanwhile Anna's page of the analysis is stale: she is told so and keeps what she typed
    anna.fill("#situation_analysis", "Meine Notizen")
    with anna.expect_navigation() as navigation:
        anna.get_by_test_id("complete").click()
    assert navigation.value.status == 409
    assert "Jonas Krüger" in anna.get_by_test_id("stale-message").inner_text()
    assert anna.input_value("#situation_analysis") == "Meine Notizen"
    sign_out(jonas)

    # 7. Handlungsoptionen: back to Anna, from her team's tasks
    anna.get_by_role("link", name="Aufgaben").first.click()
    anna.get_by_test_id("tab-team").click()
    task_rows(anna, "Handlungsoptionen entwickeln").filter(has_text=number).get_by_role(
        "link", name="Handlungsoptionen entwickeln", exact=True).click()
    fill_form(anna, {"options_strategies": "Fortbildung für das Kollegium; Projekttag mit der Schülervertretung",
                     "resources": "Netzwerk für Demokratie und Courage, Schulsozialarbeit"})
    complete_task(anna)

    # 8. one Beratungssitzung, with a wrong participant count first
    assert anna.locator("h1").inner_text() == "Beratungssitzung dokumentieren"
    fill_form(anna, {"session_date": "2026-12-10", "session_format": "vor_ort", "session_participants": "0",
                     "session_notes": "Workshop mit dem Kollegium; Verabredungen zur Meldekette.",
                     "another_session": False})
    with anna.expect_navigation() as navigation:
        anna.get_by_test_id("complete").click()
    assert navigation.value.status == 422
    assert error_of(anna, "session_participants") == "Der Wert darf nicht kleiner als 1 sein."
    assert anna.input_value("#session_notes") == "Workshop mit dem Kollegium; Verabredungen zur Meldekette."
    assert anna.input_value("#session_date") == "2026-12-10"
    anna.fill("#session_participants", "14")
    complete_task(anna)

    # 9. Abschluss und Auswertung: the six indicators
    assert anna.locator("h1").inner_text() == "Abschluss und Auswertung"
    indicators = ["indicator_problem_clarity", "indicator_sensitisation", "indicator_resources",
                  "indicator_independence", "indicator_future", "indicator_democratic_competence"]
    assert anna.locator("fieldset legend", has_text="Problemklarheit").count() == 1
    fill_form(anna, {key: ("radio", "achieved" if i % 3 else "partly") for i, key in enumerate(indicators)})
    fill_form(anna, {"closing_date": "2027-01-20",
                     "closing_summary": "Das Kollegium hat eine Meldekette und ein Leitbild; Beratung beendet."})
    complete_task(anna)
    assert "Aufgabe erledigt." in flash_text(anna)
    assert anna.url == f"{base}/"  # no task of this case is left: back to the inbox

    # the case is closed: its page says so, the history names who did what, the diagram shows it done
    anna.goto(f"{base}/cases/{case_id}")
    assert anna.get_by_test_id("status").inner_text() == "abgeschlossen"
    assert anna.get_by_test_id("current-step").inner_text() == "–"
    history = anna.get_by_test_id("history").inner_text()
    assert "Jonas Krüger" in history and "Anna Berger" in history
    anna.wait_for_selector('#diagramm g.djs-element.done[data-element-id="Task_Closing"]')
    assert case_status(db, case_id) == "completed"
    with db.transaction() as s:
        instance = s.get(ProcessInstance, case_id)
        statistics = instance_data(db.runtime(s).load_workflow(instance))["statistics"]
    # the anonymised statistics record: a closed consultation with one session and the six indicators
    assert (statistics["outcome"], statistics["responsible_unit"], statistics["sessions"]) == (
        "consultation_closed", "rz-westmecklenburg", 1)
    assert statistics["commission_given"] is True and statistics["experts_involved"] is False
    assert statistics["indicators"] == {key.removeprefix("indicator_"): "achieved" if i % 3 else "partly"
                                        for i, key in enumerate(indicators)}
    assert "Erika Mustermann" not in repr(statistics)
    for p in (anna, jonas):
        assert not p.problems, p.problems
