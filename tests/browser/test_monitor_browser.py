"""The monitor in a real browser (Playwright driving Debian's Chromium, the bundle from webapp/static/dist),
on the demo data: a supervisor filters the case list, opens a case and sees its active task highlighted in
the diagram, opens the figures (a small cell is suppressed) and exports them as CSV; no personal value of
the demo data appears on any page the supervisor sees, nor in the export."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from engine import demo, identity
from engine.clock import FixedClock
from engine.models import ProcessInstance
from tests import reportingkit
from tests.browser.conftest import ROOT, launched_chromium, serve, watch
from tests.conftest import Database

SUPERVISOR = "sven"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory, sqlite_template):
    """The demo data (users, procedures, 36 cases in every phase) and a supervisor outside a ministry."""
    path = tmp_path_factory.mktemp("monitor-browser") / "demo.sqlite3"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    clock = FixedClock(db.clock.now().replace(year=2026, month=9, day=1))
    demo.build(db.factory, ROOT, clock)
    db.clock = clock  # the demo's clock, where its last case left it
    with db.transaction() as s:
        identity.add_user(s, SUPERVISOR, now=clock.now(), display_name="Sven Aufsicht", password=demo.DEMO_PASSWORD,
                          memberships=[("lks", "supervisor")])
    yield db
    db.engine.dispose()


@pytest.fixture(scope="module")
def server(demo_db, tmp_path_factory):
    live = serve(demo_db, tmp_path_factory.mktemp("uploads"))
    yield live.url
    live.stop()


@pytest.fixture(scope="module")
def browser():
    with launched_chromium("monitor.js") as chromium:
        yield chromium


def test_a_supervisor_watches_cases_and_figures_without_seeing_personal_data(browser, server, demo_db, tmp_path):
    personal = reportingkit.personal_values_of(demo_db)
    assert len(personal) > 20, "the demo data should have personal values to look for"
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    problems, seen = watch(page, documents=True), []

    def remember():
        seen.append((page.url, page.content()))

    page.goto(f"{server}/login")
    page.fill("#username", SUPERVISOR)
    page.fill("#password", demo.DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("link", name="Überblick").click()
    remember()

    # filter: running consultations waiting at the first contact
    page.select_option("#f-process", "consultation")
    page.select_option("#f-status", "running")
    page.select_option("#f-step", "Task_FirstContact")
    page.get_by_test_id("apply-filters").click()
    page.wait_for_url(re.compile(r"step=Task_FirstContact"))
    remember()
    rows = page.get_by_test_id("instance-row")
    assert rows.count() >= 1
    for text in rows.all_inner_texts():
        assert "Erstkontakt aufnehmen" in text and "laufend" in text

    # the case: its active task is highlighted in the diagram
    rows.first.get_by_test_id("case-link").click()
    page.wait_for_selector("[data-monitor-diagram][data-ready='true']")
    active = page.locator('g.djs-element.active[data-element-id="Task_FirstContact"]')
    assert active.count() == 1
    assert page.locator('g.djs-element.done[data-element-id="Task_RecordRequest"]').count() == 1
    assert "Erstkontakt aufnehmen" in page.get_by_test_id("current-step").inner_text()
    remember()

    # the procedure with waiting cases and a heatmap
    page.get_by_role("link", name="Verfahren im Überblick").click()
    page.wait_for_selector("[data-monitor-diagram][data-ready='true']")
    assert page.locator(".diagram-badge").count() >= 1
    remember()

    page.get_by_role("link", name="Überfällige Arbeit").first.click()
    remember()

    # figures: the demo's cases are in 2026; small cells are suppressed
    page.get_by_role("link", name="Kennzahlen").first.click()
    page.select_option("#k-year", "2026")
    page.select_option("#k-period", "month")
    page.get_by_role("button", name="Anzeigen").click()
    page.wait_for_url(re.compile(r"year=2026"))
    assert page.get_by_test_id("small-cell").count() >= 1
    assert page.get_by_test_id("small-cell").first.inner_text() == "<5"
    assert page.get_by_test_id("chart-diagramm-cases_period").is_visible()
    remember()
    with page.expect_download() as download_info:
        page.get_by_test_id("figures-csv").click()
    exported = Path(download_info.value.path()).read_bytes().decode("utf-8-sig")
    assert exported.startswith("Kennzahlen 2026") and "<5" in exported

    # every case page the supervisor may open
    with demo_db.transaction() as s:
        ids = list(s.scalars(select(ProcessInstance.id)))
    for case_id in ids:
        page.goto(f"{server}/monitor/cases/{case_id}")
        remember()

    assert not problems, problems
    for url, html in [*seen, ("figures.csv", exported)]:
        found = [value for value in personal if value in html]
        assert not found, f"{url} shows personal values: {found[:3]}"
    page.close()
