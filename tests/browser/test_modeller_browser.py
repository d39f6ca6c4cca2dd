"""The modeller in a real browser (Playwright driving Debian's Chromium, the bundle from webapp/static/dist):
a coordinator changes the consultation procedure, sees and fixes a finding, publishes version 2; new cases
run on version 2 while an older one stays on version 1; the migration dry run lists the older case."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select

from engine import demo, identity
from engine.drafts import version_xml
from engine.models import ProcessInstance, Task
from engine.versions import diff_models, get_version
from tests.browser.conftest import ROOT, launched_chromium, serve
from tests.conftest import Database

PASSWORD = "modeller-test-passwort"
COORDINATOR, COUNSELLOR = "katrin.lange", "anna.berger"
REQUEST = {"requester_name": "Erika Mustermann", "requester_contact": "0381 123456", "organisation_name": "",
           "client_type": "schule", "territory": "hro", "topics": ["rechtsextremismus"],
           "primary_topic": "rechtsextremismus", "concern": "Schmierereien an der Schule", "urgency": "normal",
           "channel": "telefon"}

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def network(tmp_path, sqlite_template) -> Database:
    """A SQLite database with the real organisation, the demo users and the network's procedures (version 1)."""
    path = tmp_path / "modeller.sqlite3"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    with db.transaction() as s:
        identity.load_organisation(s, ROOT / "data" / "organisation.json")
        demo.create_users(s, db.clock, password=None)
        for username in (COORDINATOR, COUNSELLOR):
            identity.add_user(s, username, now=db.clock.now(), password=PASSWORD)
        demo.deploy_models(s, ROOT, db.clock)
    yield db
    db.engine.dispose()


@pytest.fixture
def server(network, tmp_path):
    live = serve(network, tmp_path / "uploads")
    yield live.url
    live.stop()


@pytest.fixture
def browser():
    with launched_chromium("modeller.js") as chromium:
        yield chromium


def signed_in(browser, server, username):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    problems = []
    # every Content Security Policy violation becomes a console error "CSP <directive> <source>"
    page.add_init_script("document.addEventListener('securitypolicyviolation', (e) => console.error("
                         "'CSP ' + e.violatedDirective + ' ' + e.sourceFile + ':' + e.lineNumber))")
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    page.problems = problems
    page.goto(f"{server}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/")
    return page


def start_case(db, user=COUNSELLOR) -> ProcessInstance:
    with db.transaction() as s:
        return db.runtime(s).start("consultation", user=user)


def _panel_group(page, title: str):
    """Open a group of the properties panel by its title (they start collapsed)."""
    header = page.locator(".bio-properties-panel-group-header", has_text=title).first
    if "open" not in (header.get_attribute("class") or ""):
        header.click()


NOT_RUN_GROUPS = {"Ausführungs-Listener", "Aufgaben-Listener", "Eingaben", "Ergebnisse", "Asynchrone Fortsetzung",
                  "Job-Ausführung", "Bereinigung des Verlaufs", "Wer starten darf", "Aufgabenliste",
                  "Externe Aufgabe", "Feldzuweisungen"}


def _panel_groups(page) -> list[tuple[str, str]]:
    """The properties panel's group headers: (title, left padding)."""
    return [tuple(group) for group in page.evaluate(
        "() => Array.from(document.querySelectorAll('.bio-properties-panel-group-header'), (header) => ["
        "header.querySelector('.bio-properties-panel-group-header-title').textContent,"
        "getComputedStyle(header).paddingLeft])")]


def _select(page, element_id: str):
    page.evaluate("(id) => window.fallwerkModeller.page.select(id)", element_id)
    page.wait_for_selector(f".bio-properties-panel-header-label:has-text('{element_id}'), "
                           f".bio-properties-panel-header-type", timeout=5000)


def _set_condition(page, flow_id: str, expression: str):
    _select(page, flow_id)
    _panel_group(page, "Bedingung")
    field = page.locator("#bio-properties-panel-conditionExpression")
    field.fill(expression)
    field.press("Tab")
    page.wait_for_timeout(400)  # the panel writes after its debounce


def test_a_coordinator_changes_checks_fixes_and_publishes_the_consultation_and_migrates(browser, server, network):
    older = start_case(network)

    page = signed_in(browser, server, COORDINATOR)
    page.click("text=Verfahren bearbeiten")
    page.click("[data-testid=edit-consultation]")
    page.wait_for_selector("[data-modeller][data-ready=true]")
    assert page.locator("[data-element-id=Task_FirstContactReminder]").count() == 1

    # a task's candidate group, picked in the properties panel (the field offers the real units and roles)
    page.click("[data-element-id=Task_FirstContactReminder]")
    _panel_group(page, "Zuständigkeit")
    groups = page.locator("#bio-properties-panel-candidateGroups")
    assert groups.get_attribute("list") == "fallwerk-candidate-groups"
    assert page.locator("#fallwerk-candidate-groups option[value='lks:coordinator']").count() == 1
    groups.fill("${responsible_unit}:lead,lks:coordinator")
    groups.press("Tab")

    # a timer: the overdue reminder after five days instead of the start data's date
    page.click("[data-element-id=BoundaryEvent_FirstContactOverdue]")
    _panel_group(page, "Zeitgeber")
    page.select_option("#bio-properties-panel-timerEventDefinitionType", "timeDuration")
    timer = page.locator("#bio-properties-panel-timerEventDefinitionValue")
    timer.fill("P5D")
    timer.press("Tab")
    page.wait_for_timeout(400)

    # a broken condition is a finding next to the diagram; clicking it selects the flow
    _set_condition(page, "Flow_CommissionGiven", "commission_given ==")
    page.click("[data-testid=check]")
    finding = page.locator("[data-testid=findings] .finding-error button[data-element-id=Flow_CommissionGiven]")
    finding.wait_for()
    assert "Fehler" in page.locator("[data-testid=findings]").inner_text()
    page.click("[data-element-id=Task_ClarifyMandate]")
    finding.click()
    assert page.locator(".djs-element.selected[data-element-id=Flow_CommissionGiven]").count() == 1

    # fixed, checked again, published as version 2
    _set_condition(page, "Flow_CommissionGiven", "commission_given == True")
    page.click("[data-testid=check]")
    page.wait_for_selector("[data-testid=status][data-kind=success]")
    assert page.locator("[data-testid=findings] .finding-error").count() == 0
    page.click("[data-testid=deploy]")
    page.wait_for_url(f"{server}/modeller/procedures/consultation")
    assert page.locator("[data-testid=versions] tr[data-version='2']").count() == 1
    assert page.locator("[data-testid=running-1]").inner_text() == "1"

    with network.transaction() as s:
        assert s.get(ProcessInstance, older.id).definition.version == 1  # the older case stays on version 1
        old_xml, new_xml = (version_xml(s, get_version(s, "consultation", v)) for v in (1, 2))
    changed = {e.id: {c.what: c.new for c in e.changes} for e in diff_models(old_xml, new_xml).changed}
    assert changed["Task_FirstContactReminder"] == {
        "attribute camunda:candidateGroups": "${responsible_unit}:lead,lks:coordinator"}
    assert "timeDuration(P5D)" in changed["BoundaryEvent_FirstContactOverdue"]["timer"]
    assert set(changed) == {"Task_FirstContactReminder", "BoundaryEvent_FirstContactOverdue"}
    newer = start_case(network)  # a counsellor's new case runs on version 2
    with network.transaction() as s:
        assert s.get(ProcessInstance, newer.id).definition.version == 2
    # the older case continues on version 1
    with network.transaction() as s:
        task = s.scalars(select(Task).where(Task.instance_id == older.id, Task.state == "open")).one()
        network.runtime(s).complete(task.id, user=COUNSELLOR, data=REQUEST)
    with network.transaction() as s:
        instance = s.get(ProcessInstance, older.id)
        assert instance.definition.version == 1 and "Task_FirstContact" in instance.active_elements

    # the migration dry run lists the older case
    page.click("[data-testid=migrate-1]")
    plan = page.locator("[data-testid=migration-plan]")
    plan.wait_for()
    assert page.locator(f"tr[data-case='{older.case_number}']").count() == 1
    assert page.locator(f"tr[data-case='{newer.case_number}']").count() == 0
    assert csp_violations(page) == []


def csp_violations(page) -> list[str]:
    """What the CSP blocked, except style attributes in bpmn-js's align/distribute menu icons (markup with
    style="..."): those icons only lose their stroke styling. Scripts, styles sheets, fonts, images: none."""
    return [p for p in page.problems if p.startswith("CSP ") and not p.startswith("CSP style-src-attr ")]


def test_the_properties_panel_offers_only_what_fallwerk_runs_in_german_and_in_its_own_layout(browser, server):
    page = signed_in(browser, server, COORDINATOR)
    page.goto(f"{server}/modeller/")
    page.click("[data-testid=edit-consultation]")
    page.wait_for_selector("[data-modeller][data-ready=true]")
    for element_id in (None, "Task_FirstContactReminder", "BoundaryEvent_FirstContactOverdue", "SubProcess_Escalation"):
        if element_id:
            _select(page, element_id)
        groups = _panel_groups(page)
        titles = {title for title, _ in groups}
        assert "Allgemein" in titles and not titles & NOT_RUN_GROUPS and "Process variables" not in titles, titles
        assert len({padding for _, padding in groups}) == 1, groups  # the page's styles do not leak in
    assert csp_violations(page) == [] and not [p for p in page.problems if "404" in p]


def test_only_coordinators_see_the_modeller(browser, server):
    page = signed_in(browser, server, COUNSELLOR)
    assert page.locator("text=Verfahren bearbeiten").count() == 0
    response = page.goto(f"{server}/modeller/")
    assert response.status == 404


def test_the_diff_view_marks_changes_and_the_form_editor_saves_into_the_draft(browser, server, network):
    from engine import drafts

    with network.transaction() as s:
        draft = drafts.new_draft(s, user=COORDINATOR, now=network.clock.now(), key="consultation")
        xml = draft.bpmn.replace('name="Auftrag klären"', 'name="Auftrag gemeinsam klären"')
        drafts.save_draft(s, draft.id, bpmn=xml, revision=1, user=COORDINATOR, now=network.clock.now())
        drafts.deploy_draft(s, draft.id, user=COORDINATOR, now=network.clock.now())
        form_draft = drafts.new_draft(s, user=COORDINATOR, now=network.clock.now(), key="consultation").id
    page = signed_in(browser, server, COORDINATOR)
    page.goto(f"{server}/modeller/procedures/consultation/diff?from=1&to=2")
    page.wait_for_selector("[data-diff][data-ready=true]")
    assert page.locator("[data-diff-new] .djs-element.diff-changed[data-element-id=Task_ClarifyMandate]").count() == 1
    assert page.locator("[data-diff-old] .djs-element.diff-changed[data-element-id=Task_ClarifyMandate]").count() == 1

    page.goto(f"{server}/modeller/drafts/{form_draft}/forms/mandate")
    page.wait_for_selector("[data-form-editor][data-ready=true]")
    page.evaluate("""() => {
        const editor = window.fallwerkFormEditor;
        const schema = editor.saveSchema();
        schema.components.find((c) => c.key && c.label).label = 'Auftrag (geändert im Browser)';
        return editor.importSchema(schema);
    }""")
    page.click("[data-testid=form-save]")
    page.wait_for_selector("[data-testid=status][data-kind]")
    assert page.locator("[data-testid=status]").get_attribute("data-kind") == "success", page.locator(
        "[data-testid=status]").inner_text()
    with network.transaction() as s:
        saved = drafts.draft_files(drafts.get_draft(s, form_draft))["mandate.form"]
    assert "Auftrag (geändert im Browser)" in saved
    page.goto(f"{server}/modeller/drafts/{form_draft}/forms/mandate/preview")
    assert "Auftrag (geändert im Browser)" in page.content()
    assert csp_violations(page) == []


def test_only_a_revision_conflict_asks_to_overwrite_a_published_draft_says_so(browser, server, network):
    from engine import drafts

    with network.transaction() as s:
        draft = drafts.new_draft(s, user=COORDINATOR, now=network.clock.now(), key="consultation")
        xml = draft.bpmn.replace('name="Auftrag klären"', 'name="Auftrag gemeinsam klären"')
        draft_id = draft.id
    page = signed_in(browser, server, COORDINATOR)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{server}/modeller/drafts/{draft_id}")
    page.wait_for_selector("[data-modeller][data-ready=true]")
    status = page.locator("[data-testid=status]")

    with network.transaction() as s:  # saved in another window meanwhile: overwrite that?
        drafts.save_draft(s, draft_id, bpmn=xml, revision=1, user=COORDINATOR, now=network.clock.now())
    page.click("[data-testid=save]")
    page.wait_for_selector("[data-testid=status][data-kind=error]")
    assert len(dialogs) == 1 and "überschreiben" in dialogs[0]

    with network.transaction() as s:  # and publishes it: saving or publishing says so, and asks nothing
        drafts.deploy_draft(s, draft_id, user=COORDINATOR, now=network.clock.now())
    for action in ("save", "deploy"):
        page.evaluate("() => { document.querySelector('[data-testid=status]').dataset.kind = ''; }")
        page.click(f"[data-testid={action}]")
        page.wait_for_selector("[data-testid=status][data-kind=error]")
        assert "Dieser Entwurf ist schon veröffentlicht (Version 2)." in status.inner_text(), action
    assert len(dialogs) == 1
    assert csp_violations(page) == []
