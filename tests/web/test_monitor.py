"""The monitor pages: the case list with filters and exports, a case's status, procedures, overdue work,
figures; who sees what; no personal value anywhere for viewers without case access.

Most tests read the fixed data set (tests/reportingkit.py, the network's real procedures); the ones that
change something (retry, hand over) use the web tests' own small world.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from urllib.parse import quote

import pytest
from sqlalchemy import select

from engine.models import Incident, ProcessInstance, Task
from tests import reportingkit
from tests.reportingkit import dataset_fixture  # noqa: F401 - the data set, as `dataset`
from tests.web.conftest import case_at_advice, login, open_task
from tests.web.models import PERSONAL
from webapp import create_app


@pytest.fixture(scope="module")
def site(dataset, tmp_path_factory):
    """An app on the data set's database, and the personal values stored in its cases."""
    db = dataset.db
    app = create_app({"TESTING": True, "SECRET_KEY": "monitor-test", "WTF_CSRF_ENABLED": False,
                      "FALLWERK_ENGINE": db.engine, "FALLWERK_CLOCK": db.clock, "DATABASE_URL": db.url,
                      "UPLOAD_FOLDER": str(tmp_path_factory.mktemp("uploads")), "SESSION_COOKIE_SECURE": False})
    return app, dataset, reportingkit.personal_values_of(db)


def _get(app, user, url):
    client = app.test_client()
    login(client, user)
    response = client.get(url)
    return response


def _text(app, user, url, status=200):
    response = _get(app, user, url)
    assert response.status_code == status, (url, response.status_code)
    return response.get_data(as_text=True)


def _case_links(html):
    return re.findall(r'href="/monitor/cases/(\d+)"', html)


def test_a_supervisor_lists_every_case_and_filters_it(site):
    app, data, _ = site
    html = _text(app, "sven", "/monitor/")
    assert '<span data-testid="result-count">12</span>' in html
    assert len(set(_case_links(html))) == 12
    html = _text(app, "sven", "/monitor/?status=running&unit=rz-rostock&step=Task_FirstContact")
    expected = {data.cases["overdue"], *(data.cases[f"june_{i}"] for i in range(5))}
    assert {int(i) for i in _case_links(html)} == expected
    assert "Erstkontakt aufnehmen" in html and "überfällig" in html


def test_the_list_exports_the_filtered_cases_as_csv_and_xlsx(site):
    app, data, _ = site
    response = _get(app, "sven", "/monitor/export.csv?territory=hro&status=completed")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data().decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:4] == ["Fallnummer", "Verfahren", "Version", "Status"]
    with data.db.transaction() as s:
        numbers = {s.get(ProcessInstance, data.cases[k]).case_number for k in ("closed", "no_commission")}
    assert {row[0] for row in rows[1:]} == numbers
    assert all(row[3] == "abgeschlossen" for row in rows[1:])
    response = _get(app, "sven", "/monitor/export.xlsx?territory=hro&status=completed")
    sheet = zipfile.ZipFile(io.BytesIO(response.get_data())).read("xl/worksheets/sheet1.xml").decode()
    assert all(number in sheet for number in numbers)
    with data.db.transaction() as s:
        from engine.models import AuditEvent

        exported = s.scalars(select(AuditEvent).where(AuditEvent.action == "export")).all()
    assert {"instances.csv", "instances.xlsx"} <= {e.element_id for e in exported}


def test_the_case_view_highlights_steps_and_shows_roles_instead_of_names_to_a_supervisor(site):
    app, data, _ = site
    html = _text(app, "sven", f"/monitor/cases/{data.cases['escalated']}")
    assert 'data-active="' in html and "Task_ProblemAnalysis" in re.search(r'data-active="([^"]*)"', html).group(1)
    assert "Task_RecordRequest" in re.search(r'data-completed="([^"]*)"', html).group(1)
    assert "Beratung, Regionalzentrum für demokratische Kultur Westmecklenburg" in html  # who started it
    assert "Anna Berger" not in html and "anna.berger" not in html and "Katrin Lange" not in html
    assert "Landeskoordinierungsstelle" in html  # the network support task's candidates
    html = _text(app, "katrin.lange", f"/monitor/cases/{data.cases['escalated']}")
    assert "Anna Berger" in html  # the coordinator works on the case: names


def test_the_case_view_shows_open_tasks_with_candidates_and_due_dates(site):
    app, data, _ = site
    html = _text(app, "sven", f"/monitor/cases/{data.cases['overdue']}")
    tasks = html[html.index('data-testid="monitor-open-tasks"'):]
    assert "Erstkontakt aufnehmen" in tasks and "Regionalzentrum für demokratische Kultur Landkreis" in tasks
    assert "23.03.2026" in tasks and 'data-testid="overdue"' in tasks


def test_the_process_view_shows_waiting_cases_and_durations(site):
    app, _, _ = site
    html = _text(app, "sven", "/monitor/procedures")
    assert "/monitor/procedures/consultation/1" in html
    html = _text(app, "sven", "/monitor/procedures/consultation/1")
    assert re.search(r'data-testid="waiting-Task_FirstContact">6<', html)
    assert "24 Std." in html  # every step took a day
    assert _get(app, "sven", "/monitor/procedures/consultation/1/diagram.bpmn").mimetype == "application/xml"
    assert _get(app, "sven", "/monitor/procedures/consultation/9").status_code == 404


def test_overdue_work_per_unit_lets_the_lead_hand_over(site):
    app, _, _ = site
    html = _text(app, "sabine.wolf", "/monitor/overdue")
    assert len(re.findall(r'data-testid="overdue-row"', html)) == 6
    assert html.count('data-testid="reassign-form"') == 6 and 'value="tom.richter"' in html
    html = _text(app, "sven", "/monitor/overdue")
    assert len(re.findall(r'data-testid="overdue-row"', html)) == 7 and 'data-testid="reassign-form"' not in html
    html = _text(app, "sven", "/monitor/overdue?unit=opferberatung")
    assert len(re.findall(r'data-testid="overdue-row"', html)) == 1


def test_figures_suppress_small_cells_and_export_csv(site):
    app, _, _ = site
    html = _text(app, "sven", "/monitor/figures?year=2026&period=quarter")
    assert 'data-testid="small-cell"' in html and "Schutz kleiner Zahlen" in html
    assert 'data-testid="chart-diagramm-cases_period"' in html and "<desc" in html
    response = _get(app, "sven", "/monitor/figures.csv?year=2026&period=quarter")
    text = response.get_data().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0][0] == "Kennzahlen 2026"
    unit = rows.index(["Neue Fälle nach Stelle"])
    assert rows[unit + 1] == ["Stelle", "1. Quartal 2026", "2. Quartal 2026", "3. Quartal 2026", "2026"]
    by_unit = {row[0]: row[1:] for row in rows[unit + 2:unit + 6]}
    assert by_unit["Regionalzentrum für demokratische Kultur Westmecklenburg"] == ["<5", "0", "0", "<5"]
    assert by_unit["Regionalzentrum für demokratische Kultur Landkreis und Hansestadt Rostock"][-1] == "8"
    assert by_unit["Insgesamt"][-1] == "10"
    for row in rows:
        for cell in row:
            assert cell not in ("1", "2", "3", "4"), f"a small count is published: {row}"


def test_numbers_that_are_not_ascii_digits_are_ignored_like_other_invalid_ones(site):
    """`"²".isdigit()` is true, but int() refuses it."""
    app, _, _ = site
    assert "<h1>Kennzahlen 2026</h1>" in _text(app, "sven", "/monitor/figures?year=²")  # the current year
    rows = list(csv.reader(io.StringIO(_get(app, "sven", "/monitor/figures.csv?year=²").get_data().decode("utf-8-sig")),
                           delimiter=";"))
    assert rows[0][0] == "Kennzahlen 2026"
    every = set(_case_links(_text(app, "sven", "/monitor/")))
    for query in ("min_age=²", "max_age=³", "min_age=١٢", "max_age=1²"):
        assert set(_case_links(_text(app, "sven", f"/monitor/?{query}"))) == every, query
    consultation = set(_case_links(_text(app, "sven", "/monitor/?process=consultation")))
    assert set(_case_links(_text(app, "sven", "/monitor/?process=consultation&version=²"))) == consultation
    exported = _get(app, "sven", "/monitor/export.csv?min_age=¹")
    assert exported.status_code == 200 and len(exported.get_data().decode("utf-8-sig").splitlines()) == 1 + len(every)


def test_a_page_cursor_that_cannot_be_used_shows_the_first_page(site):
    """A cursor names an instant with its offset (the columns hold UTC) and an id of the database's range."""
    app, _, _ = site
    unusable = ("2024-01-01|1", "0001-01-01|1", "9999-12-31T23:59:59.999999|1", "0001-01-01T00:00:00+05:00|1",
                "9999-12-31T23:59:59.999999-01:00|1", "2026-01-01T00:00:00+00:00|2147483648",
                "2026-01-01T00:00:00+00:00|99999999999999999999", "2026-01-01T00:00:00+00:00|0", "x|y")
    for sort in ("started_desc", "started_asc", "updated_desc"):
        first = _case_links(_text(app, "sven", f"/monitor/?sort={sort}"))
        for cursor in unusable:
            for direction in ("after", "before"):
                html = _text(app, "sven", f"/monitor/?sort={sort}&{direction}={quote(cursor)}")
                assert _case_links(html) == first and 'rel="prev"' not in html, (sort, direction, cursor)
    html = _text(app, "sven", f"/monitor/?after={quote('9999-12-31T23:59:59.999999+00:00|2147483647')}")
    assert _case_links(html) == _case_links(_text(app, "sven", "/monitor/")) and 'rel="prev"' in html


def test_a_ministry_sees_figures_only(site):
    app, data, _ = site
    assert _get(app, "peter.hahn", "/monitor/figures?year=2026").status_code == 200
    for url in ("/monitor/", "/monitor/export.csv", f"/monitor/cases/{data.cases['closed']}", "/monitor/overdue",
                "/monitor/procedures"):
        assert _get(app, "peter.hahn", url).status_code == 404, url
    nav = _text(app, "peter.hahn", "/monitor/figures?year=2026")
    assert 'href="/monitor/figures"' in nav and 'href="/monitor/"' not in nav


def test_counsellors_have_no_monitor(site):
    app, data, _ = site
    for url in ("/monitor/", "/monitor/figures", f"/monitor/cases/{data.cases['closed']}"):
        assert _get(app, "anna.berger", url).status_code == 404, url
    assert 'href="/monitor/' not in _text(app, "anna.berger", "/")


def test_a_lead_sees_the_cases_of_the_unit_only(site):
    app, data, _ = site
    html = _text(app, "ole.brandt", "/monitor/")
    unit = {data.cases[k] for k in ("cancelled", "proactive_rejected", "proactive_approved")}
    assert {int(i) for i in _case_links(html)} == unit
    assert _get(app, "ole.brandt", f"/monitor/cases/{data.cases['closed']}").status_code == 404


def test_no_personal_value_appears_on_any_page_a_supervisor_or_ministry_sees(site):
    app, data, personal = site
    assert set(reportingkit.PERSONAL) <= personal | {reportingkit.PERSONAL[2]}
    urls = ["/monitor/", "/monitor/?status=running", "/monitor/export.csv", "/monitor/procedures",
            "/monitor/procedures/consultation/1", "/monitor/procedures/proactive_intervention/1",
            "/monitor/overdue", "/monitor/figures?year=2026&period=month", "/monitor/figures.csv?year=2026",
            *(f"/monitor/cases/{i}" for i in data.cases.values())]
    for user, allowed in (("sven", urls), ("peter.hahn", [u for u in urls if "figures" in u])):
        for url in allowed:
            body = _get(app, user, url).get_data().decode("utf-8", "replace")
            for value in personal:
                assert value not in body, f"{user} sees a personal value on {url}"
    xlsx = _get(app, "sven", "/monitor/export.xlsx").get_data()
    sheet = zipfile.ZipFile(io.BytesIO(xlsx)).read("xl/worksheets/sheet1.xml").decode()
    assert not [v for v in personal if v in sheet]


# --- changes, in the web tests' own world ------------------------------------------------------------------
def test_a_coordinator_retries_an_incident(app, web):
    case = case_at_advice(web)
    with web.transaction() as s:
        web.runtime(s).send_message(case.id, "escalation_requested", user="alice",
                                    payload={"escalation_kind": "support", "escalation_reason": "x"})
        instance = s.get(ProcessInstance, case.id)
        instance.has_incident = True
        s.add(Incident(instance_id=case.id, element_id="advise", message="boom", error_type="ExpressionError",
                       attempt=1, created_at=web.clock.now()))
    client = app.test_client()
    login(client, "sven")
    page = client.get(f"/monitor/cases/{case.id}").get_data(as_text=True)
    assert 'data-testid="incidents"' in page and 'data-testid="retry-form"' not in page and "boom" not in page
    assert client.post(f"/monitor/cases/{case.id}/retry").status_code == 404
    login(client, "carla")
    page = client.get(f"/monitor/cases/{case.id}").get_data(as_text=True)
    assert 'data-testid="retry-form"' in page and "boom" in page
    response = client.post(f"/monitor/cases/{case.id}/retry")
    assert response.status_code == 303
    with web.transaction() as s:
        assert s.get(ProcessInstance, case.id).has_incident is False
        assert s.scalar(select(Incident.resolved_by)) == "carla"


def test_a_lead_hands_over_an_overdue_task_from_the_overdue_page(app, web):
    case = case_at_advice(web)
    task = open_task(web, case.id, "advise")
    web.clock.advance(days=3)
    client = app.test_client()
    login(client, "lena")
    page = client.get("/monitor/overdue").get_data(as_text=True)
    assert case.number in page and 'data-testid="reassign-form"' in page
    assert PERSONAL not in page
    response = client.post(f"/tasks/{task.id}/hand-over", data={"assignee": "bob", "next": "/monitor/overdue"})
    assert response.status_code == 303 and response.headers["Location"].endswith("/monitor/overdue")
    with web.transaction() as s:
        assert s.get(Task, task.id).assignee == "bob"
    login(client, "sven")
    page = client.get("/monitor/overdue").get_data(as_text=True)
    assert "Bob" not in page and "bob" not in page and "Beratung, rz-west" in page
