"""axe-core (WCAG 2.1 A and AA rules) on every page a user reaches, as the role that reaches it: sign-in,
inbox, task pages (with a form, with validation errors, stale), starting a procedure (list, start form, its
errors), the case page, the account page, the error pages (400, 403, 404, 500), the modeller and the monitor.
Any serious or critical violation fails, with the rule, the elements (CSS selectors) and the help URL.

Set FALLWERK_AXE_REPORT=path.json to keep every finding (moderate and minor too) per page."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import abort
from sqlalchemy import select

from engine import demo, drafts
from engine.deploy import deploy, read_sources
from engine.models import SavedFilter, Task, User
from tests import modelkit
from tests.conftest import Database

from .axe import blocking, describe, run_axe
from .conftest import PASSWORD, ROOT, VIEWPORT, build_network, serve, sign_in
from .test_staff_browser import ANNA, JONAS, KATRIN, MARIA, REQUEST, STEPS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SUPERVISOR, ADMIN = "peter.hahn", "admin"  # a ministry's supervisor (figures only), the account administrator
EVENT_FORM = json.dumps({"id": "veranstaltung_start", "type": "default", "schemaVersion": 16, "components": [
    {"id": "v1", "type": "textfield", "key": "event_title", "label": "Titel der Veranstaltung",
     "validate": {"required": True, "maxLength": 200}},
    {"id": "v2", "type": "select", "key": "event_kind", "label": "Art", "validate": {"required": True},
     "values": [{"value": "workshop", "label": "Workshop"}, {"value": "vortrag", "label": "Vortrag"}]},
    {"id": "v3", "type": "datetime", "subtype": "date", "key": "event_date", "dateLabel": "Datum",
     "validate": {"required": True}},
    {"id": "v4", "type": "number", "key": "event_participants", "label": "Teilnehmende",
     "validate": {"min": 1, "max": 500}},
]}).encode()


def event_procedure() -> bytes:
    """A small procedure with a start form (the network's own procedures start without one)."""
    body = "\n".join([
        '<bpmn:startEvent id="start" name="Veranstaltung geplant" camunda:formRef="veranstaltung_start" />',
        modelkit.user_task("report", "Veranstaltung nachbereiten", 'camunda:candidateGroups="rz-westmecklenburg"'),
        '<bpmn:endEvent id="end" />',
        modelkit.flow("f1", "start", "report"), modelkit.flow("f2", "report", "end"),
    ])
    return modelkit.definitions("veranstaltung", body, name="Bildungsveranstaltung")


@dataclass
class Site:
    db: Database
    url: str
    ids: dict = field(default_factory=dict)


def _add_error_routes(app) -> None:
    """403 and 500 are not reachable by design (forbidden things are 404, bugs are rare): routes that show them."""
    def forbidden():
        abort(403)

    def broken():
        raise RuntimeError("a deliberate error for the 500 page")

    app.add_url_rule("/_a11y/403", "a11y_403", forbidden)
    app.add_url_rule("/_a11y/500", "a11y_500", broken)


@pytest.fixture(scope="module")
def site(tmp_path_factory, sqlite_template):
    folder = tmp_path_factory.mktemp("a11y")
    shutil.copy(sqlite_template, folder / "a11y.sqlite3")
    db = build_network(Database(f"sqlite:///{folder / 'a11y.sqlite3'}"))
    demo.create_cases(db.factory, db.clock, count=8, seed=3)  # cases in several phases, for the monitor
    ids = {}
    with db.transaction() as s:
        deploy(s, {"veranstaltung.bpmn": event_procedure(), "veranstaltung_start.form": EVENT_FORM},
               user=KATRIN, now=db.clock.now())
        # version 2 of the consultation (a renamed step), for the diff and the migration plan
        files = sorted((ROOT / "processes").glob("*.*")) + sorted((ROOT / "forms").glob("*.form"))
        sources = {name: xml.replace(b'name="Erstkontakt aufnehmen"', b'name="Erstkontakt herstellen"')
                   for name, xml in read_sources(files).items()}
        deploy(s, sources, user=KATRIN, now=db.clock.now(), note="Barrierefreiheitstest")
        ids["draft"] = drafts.new_draft(s, user=KATRIN, now=db.clock.now(), key="consultation").id
        s.scalar(select(User).where(User.username == ADMIN)).locale = "en"  # the English interface
        anna = s.scalar(select(User).where(User.username == ANNA))
        s.add(SavedFilter(user_id=anna.id, name="Überfällig", query="due=overdue", created_at=db.clock.now()))
    with db.transaction() as s:
        runtime = db.runtime(s)
        # a request Anna has to record (the largest form: groups, checklist, radios, selects)
        own = runtime.start("consultation", user=ANNA, data={"first_contact_days": 3})
        ids["request_task"] = _open(s, own.id, "Task_RecordRequest").id
        ids["case"] = own.id
        # a consultation at the mandate (a checkbox that shows more fields), unclaimed, for her team
        other = runtime.start("consultation", user=JONAS, data={"first_contact_days": 3})
        runtime.complete(_open(s, other.id, "Task_RecordRequest").id, user=JONAS, data=REQUEST)
        runtime.complete(_open(s, other.id, "Task_FirstContact").id, user=JONAS, data=STEPS["Task_FirstContact"])
        ids["mandate_task"] = _open(s, other.id, "Task_ClarifyMandate").id
        # a task Jonas has claimed: Anna sees it, cannot work on it
        third = runtime.start("consultation", user=JONAS, data={"first_contact_days": 3})
        runtime.complete(_open(s, third.id, "Task_RecordRequest").id, user=JONAS, data=REQUEST)
        claimed = _open(s, third.id, "Task_FirstContact")
        runtime.claim(claimed.id, user=JONAS)
        ids["claimed_task"] = claimed.id
        ids["any_case"] = other.id
    server = serve(db, folder / "uploads", prepare=_add_error_routes)
    yield Site(db, server.url, ids)
    server.stop()
    db.engine.dispose()


def _open(session, instance_id: int, element: str) -> Task:
    return session.scalars(select(Task).where(Task.instance_id == instance_id, Task.element_id == element,
                                              Task.state == "open")).one()


@pytest.fixture(scope="module")
def signed_in(chromium, site):
    """One signed-in page per user for the module (each in its own context; axe-core may be injected)."""
    contexts, pages = [], {}

    def page_for(username: str | None):
        if username not in pages:
            context = chromium.new_context(viewport=VIEWPORT, locale="de-DE", timezone_id="Europe/Berlin",
                                           bypass_csp=True)
            context.set_default_timeout(15_000)
            contexts.append(context)
            page = context.new_page()
            if username:
                sign_in(page, site.url, username, PASSWORD)
            pages[username] = page
        return pages[username]

    yield page_for
    for context in contexts:
        context.close()


FINDINGS: dict[str, list[dict]] = {}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    target = os.environ.get("FALLWERK_AXE_REPORT")
    if target:
        Path(target).write_text(json.dumps(FINDINGS, indent=2, ensure_ascii=False), encoding="utf-8")


# --- what to do on each page: (user, action, a selector that says the page is ready, expected status) -------
def go(path: str):
    return lambda page, site: page.goto(site.url + path.format(**site.ids))


def submit(path: str, button: str, before=None):
    """Open `path`, optionally change the form (`before(page)`), press `button`; the response of the POST."""
    def act(page, site):
        page.goto(site.url + path.format(**site.ids))
        if before:
            before(page)
        with page.expect_navigation() as navigation:
            page.click(button)
        return navigation.value
    return act


def _spoil_csrf(page):
    page.evaluate("document.querySelectorAll('[data-testid=comment-form] input[name=csrf_token]')"
                  ".forEach(e => e.value = 'abgelaufen')")
    page.fill("#body", "Ein Kommentar")


def _wrong_password(page):
    page.fill("#current", "nicht-das-passwort")
    page.fill("#new", "kurz")
    page.fill("#repeat", "anders")


def _tick_commission(page):
    page.locator("#commission_given").check()


DIAGRAM = "#diagramm .djs-container svg g.viewport"
PAGES = {
    # anonymous
    "sign-in": (None, go("/login"), None, 200),
    "sign-in with errors": (None, submit("/login", "[data-testid=login-form] button[type=submit]"), None, 422),
    # a counsellor
    "inbox: my tasks": (ANNA, go("/"), None, 200),
    "inbox: team tasks": (ANNA, go("/?view=team"), None, 200),
    "inbox: filtered, saved filters": (ANNA, go("/?view=team&text=Auftrag&sort=created"), None, 200),
    "inbox: empty": (ANNA, go("/?view=mine&text=gibtesnicht"), None, 200),
    "task with form": (ANNA, go("/tasks/{request_task}"), DIAGRAM, 200),
    "task with validation errors": (ANNA, submit("/tasks/{request_task}", "[data-testid=complete]"), DIAGRAM, 422),
    "task with fields shown on refresh": (ANNA, submit("/tasks/{mandate_task}", "button[value=refresh]",
                                                       _tick_commission), DIAGRAM, 200),
    "task claimed by a colleague": (ANNA, go("/tasks/{claimed_task}"), DIAGRAM, 200),
    "start: list": (ANNA, go("/procedures/"), None, 200),
    "start: form": (ANNA, go("/procedures/veranstaltung"), None, 200),
    "start: form with errors": (ANNA, submit("/procedures/veranstaltung", "[data-testid=start]"), None, 422),
    "start: without a form": (ANNA, go("/procedures/consultation"), None, 200),
    "case": (ANNA, go("/cases/{case}"), DIAGRAM, 200),
    "case with a form error": (ANNA, submit("/cases/{case}", "[data-testid=comment-form] button[type=submit]"),
                               DIAGRAM, 422),
    "account": (ANNA, go("/account"), None, 200),
    "account with errors": (ANNA, submit("/account", "[data-testid=password-form] button[type=submit]",
                                         _wrong_password), None, 422),
    "error 400 (expired form)": (ANNA, submit("/cases/{case}", "[data-testid=comment-form] button[type=submit]",
                                              _spoil_csrf), None, 400),
    "error 403": (ANNA, go("/_a11y/403"), None, 403),
    "error 404": (ANNA, go("/cases/999999"), None, 404),
    "error 404 (signed out)": (None, go("/gibt-es-nicht"), None, 404),
    "error 500": (ANNA, go("/_a11y/500"), None, 500),
    # a coordinator: the modeller
    "modeller: procedures": (KATRIN, go("/modeller/"), None, 200),
    "modeller: versions": (KATRIN, go("/modeller/procedures/consultation"), None, 200),
    "modeller: editor": (KATRIN, go("/modeller/drafts/{draft}"), "[data-modeller][data-ready=true]", 200),
    "modeller: form editor": (KATRIN, go("/modeller/drafts/{draft}/forms/session"),
                              "[data-form-editor][data-ready=true]", 200),
    "modeller: form preview": (KATRIN, go("/modeller/drafts/{draft}/forms/session/preview"), None, 200),
    "modeller: form preview with errors": (KATRIN, submit("/modeller/drafts/{draft}/forms/session/preview",
                                                          "[data-testid=preview] button[type=submit]"), None, 422),
    "modeller: decision table": (KATRIN, go("/modeller/drafts/{draft}/decisions/routing.dmn"), None, 200),
    "modeller: diff": (KATRIN, go("/modeller/procedures/consultation/diff?from=1&to=2"),
                       "[data-diff-new][data-ready=true]", 200),
    "modeller: migration plan": (KATRIN, go("/modeller/procedures/consultation/migrate?from=1&to=2"), None, 200),
    # the monitor (a unit's lead: the cases of her unit) and the figures (a ministry's supervisor too)
    "monitor: cases": (MARIA, go("/monitor/"), None, 200),
    "monitor: case": (MARIA, go("/monitor/cases/{any_case}"), "[data-monitor-diagram][data-ready=true]", 200),
    "monitor: procedures": (MARIA, go("/monitor/procedures"), None, 200),
    "monitor: procedure": (MARIA, go("/monitor/procedures/consultation/1"),
                           "[data-monitor-diagram][data-ready=true]", 200),
    "monitor: overdue work": (MARIA, go("/monitor/overdue"), None, 200),
    "monitor: figures": (MARIA, go("/monitor/figures?year=2026&period=month"), None, 200),
    "monitor: cases (coordinator)": (KATRIN, go("/monitor/"), None, 200),
    "figures (ministry)": (SUPERVISOR, go("/monitor/figures"), None, 200),
    "inbox (ministry)": (SUPERVISOR, go("/"), None, 200),
    "inbox (admin, English)": (ADMIN, go("/"), None, 200),
    "account (admin, English)": (ADMIN, go("/account"), None, 200),
    "inbox (coordinator)": (KATRIN, go("/?view=team"), None, 200),
}


@pytest.mark.parametrize("name", list(PAGES))
def test_no_serious_or_critical_accessibility_violation(name, site, signed_in):
    user, act, ready, status = PAGES[name]
    page = signed_in(user)
    response = act(page, site)
    assert response is not None and response.status == status, f"{name}: HTTP {response and response.status}"
    if ready:
        page.wait_for_selector(ready, state="attached")
    page.wait_for_load_state("networkidle")
    assert page.get_attribute("html", "lang") == ("en" if "English" in name else "de")
    where = f"{name} ({user or 'signed out'}, {page.url.removeprefix(site.url)})"
    violations = run_axe(page)
    FINDINGS[name] = [{"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]),
                       "targets": [", ".join(n["target"]) for n in v["nodes"][:5]]} for v in violations]
    assert not blocking(violations), describe(blocking(violations), where=where)
