"""Monitoring and reporting: the facts table, the figures against a hand count, small-cell suppression on
hand-made tables, the instance list (filters, pages, scope), exports, durations and overdue work.

The fixed data set (tests/reportingkit.py) is built once per backend through the engine with the
network's real procedures; the tests here only read it.
"""

from __future__ import annotations

import csv
import io
import random
import shutil
import zipfile
from datetime import UTC, datetime
from fractions import Fraction
from xml.etree import ElementTree

import pytest
from sqlalchemy import delete, select

from engine import identity, policy
from engine.models import CaseEscalation, CaseFact, CaseFactTopic, ProcessDefinition, ProcessInstance
from engine.reporting import durations, exports, facts, figures, instances, overdue, suppression
from engine.reporting.instances import InstanceFilter
from engine.reporting.periods import periods
from tests import reportingkit
from tests.conftest import Database
from tests.reportingkit import NOW, dataset_fixture  # noqa: F401 - the data set, as `dataset`


def _numbers(table: figures.Table) -> dict[str, list]:
    """{row: [cell per column]}: the number, or "<5" / "x" where suppressed."""
    marks = {suppression.PRIMARY: suppression.SMALL, suppression.SECONDARY: suppression.HIDDEN}
    return {row: [marks.get(v.state, v.number) for v in (table.value(row, c) for c in table.columns)]
            for row in table.rows}


def _user(session, name):
    return identity.get_user(session, name)


# --- the facts table --------------------------------------------------------------------------------------------
def test_each_case_has_its_non_personal_facts(dataset):
    with dataset.db.transaction() as s:
        rows = {r.instance_id: r for r in s.scalars(select(CaseFact))}
        closed = rows[dataset.cases["closed"]]
        assert (closed.unit, closed.territory, closed.client_type, closed.primary_topic) == \
            ("rz-rostock", "hro", "schule", "rechtsextremismus")
        assert closed.topics == "rassismus,rechtsextremismus"
        assert (closed.commission, closed.experts, closed.sessions, closed.outcome) == \
            (True, True, 2, "consultation_closed")
        assert (closed.indicator_resources, closed.indicator_future) == ("partly", "not_achieved")
        assert rows[dataset.cases["no_commission"]].commission is False
        assert rows[dataset.cases["no_commission"]].closure_reason == "no_commission"
        escalated = rows[dataset.cases["escalated"]]
        assert (escalated.escalations, escalated.network) == (1, True)
        assert rows[dataset.cases["proactive_rejected"]].approval == "rejected"
        assert rows[dataset.cases["proactive_rejected"]].request is False
        assert rows[dataset.cases["cancelled"]].status == "cancelled"
        (escalation,) = s.scalars(select(CaseEscalation)).all()
        assert (escalation.kind, escalation.decision) == ("support", "takeover")
        topics = sorted(s.execute(select(CaseFactTopic.topic).where(
            CaseFactTopic.instance_id == closed.instance_id)).scalars())
        assert topics == ["rassismus", "rechtsextremismus"]


def test_facts_keep_codes_and_drop_free_text():
    assert facts.code("lk-rostock") == "lk-rostock"
    assert facts.code("Erika Mustermann") is None
    assert facts.code("x" * 65) is None
    assert facts.code(42) is None


def test_a_failure_to_read_the_facts_never_stops_casework(org, monkeypatch):
    from tests import modelkit
    from tests.test_runtime import _deploy, _open, _start

    _deploy(org, chain=modelkit.chain(n=2))

    def broken(workflow, *, process_key):
        raise RuntimeError("unreadable")

    monkeypatch.setattr(facts, "extract", broken)
    instance_id = _start(org, "chain")
    (task,) = _open(org, instance_id)
    with org.transaction() as s:
        assert org.runtime(s).complete(task.id, user="alice").status == "running"
        assert s.get(CaseFact, instance_id) is None


def test_no_personal_value_reaches_the_facts_tables(dataset):
    with dataset.db.transaction() as s:
        stored = " ".join(str(v) for table in (CaseFact, CaseFactTopic, CaseEscalation)
                          for row in s.execute(select(table)).all() for v in row)
    for secret in reportingkit.PERSONAL:
        assert secret not in stored


# --- the figures against a hand count ---------------------------------------------------------------------------
def _figures(dataset, granularity="month", metric="new", threshold=1):
    with dataset.db.transaction() as s:
        return figures.compute(s, year=2026, now=NOW, granularity=granularity, metric=metric, threshold=threshold)


def test_case_counts_by_month_match_a_hand_count(dataset):
    # new: A, B in February; C, D in March; E in April; five in June. Closed: A, B in February, E (cancelled)
    # in April. Running at the end of each month follows.
    table = _figures(dataset).tables["cases_period"]
    assert _numbers(table) == {
        "m01": [0, 0, 0], "m02": [2, 0, 2], "m03": [2, 2, 0], "m04": [1, 2, 1], "m05": [0, 2, 0],
        "m06": [5, 7, 0], "m07": [0, 7, 0], "y": [10, 7, 3]}


def test_case_counts_by_quarter_match_a_hand_count(dataset):
    table = _figures(dataset, "quarter").tables["cases_period"]
    assert _numbers(table) == {"q1": [4, 2, 2], "q2": [6, 7, 1], "q3": [0, 7, 0], "y": [10, 7, 3]}


def test_cases_by_unit_territory_client_type_and_topic_match_a_hand_count(dataset):
    tables = _figures(dataset, "year").tables
    year = {t: {row: values[-1] for row, values in _numbers(tables[t]).items()}
            for t in ("cases_unit", "cases_territory", "cases_client_type", "cases_topic")}
    assert year["cases_unit"] == {"opferberatung": 1, "rz-rostock": 8, "rz-westmecklenburg": 1, "total": 10}
    assert year["cases_territory"] == {"hro": 8, "lk-rostock": 1, "sn": 1, "total": 10}
    assert year["cases_client_type"] == {"kommune": 1, "person": 1, "schule": 7, "verein": 1, "total": 10}
    assert year["cases_topic"] == {"antisemitismus": 1, "gewalt": 1, "rassismus": 2, "rechtsextremismus": 7}


def test_running_and_closed_cases_by_unit_match_a_hand_count(dataset):
    running = _numbers(_figures(dataset, "quarter", "running").tables["cases_unit"])
    assert running["rz-rostock"] == [1, 6, 6, 6]  # D since March 20; the five June requests from June
    closed = _numbers(_figures(dataset, "quarter", "closed").tables["cases_unit"])
    assert closed["rz-rostock"] == [2, 0, 0, 2] and closed["opferberatung"] == [0, 1, 0, 1]


def test_commission_rate_is_commissioned_over_decided_requests(dataset):
    table = _figures(dataset, "quarter").tables["commission"]
    assert _numbers(table)["y"][:3] == [2, 1, 3]  # A and C commissioned, B not
    assert table.value("y", "rate").number == pytest.approx(200 / 3)


def test_escalations_experts_indicators_proactive_and_durations_match_a_hand_count(dataset):
    tables = _figures(dataset).tables
    assert _numbers(tables["escalations"])["support"] == [1, 0, 0, 1]
    assert _numbers(tables["experts"]) == {"yes": [1], "total": [1]}
    assert _numbers(tables["indicators"])["future"] == [0, 0, 1, 1]
    assert _numbers(tables["indicators"])["resources"] == [0, 1, 0, 1]
    assert _numbers(tables["proactive"]) == {"opferberatung": [1, 1, 2], "total": [1, 1, 2]}
    durations_table = tables["durations"]
    assert durations_table.value("rz-rostock", "count").number == 1
    assert durations_table.value("total", "mean").number == pytest.approx(11.0)  # A: Feb 2 to Feb 13


def test_deadlines_of_steps_match_a_hand_count(dataset):
    # first contacts: A, B, C on time; E withdrawn (cancelled); D and the five June requests overdue
    table = _numbers(_figures(dataset).tables["deadlines"])
    assert table["Task_FirstContact"] == [3, 0, 1, 6, 0, 10]
    assert table["Task_ApproveIntervention"] == [2, 0, 0, 0, 0, 2]


def test_published_figures_suppress_every_count_below_five(dataset):
    tables = _figures(dataset, "year", threshold=suppression.THRESHOLD).tables
    unit = _numbers(tables["cases_unit"])
    assert unit["rz-rostock"] == [8]
    assert unit["opferberatung"] == ["<5"] and unit["rz-westmecklenburg"] == ["<5"]
    assert unit["total"] == [10]
    for table in tables.values():
        for value in table.cells.values():
            if value.kind == "count" and value.state == suppression.SHOWN and value.number is not None:
                assert value.number == 0 or value.number >= suppression.THRESHOLD


def test_a_month_view_and_a_quarter_view_show_the_same_protected_numbers(dataset):
    by_month = _figures(dataset, "month", threshold=5).tables["cases_period"]
    by_quarter = _figures(dataset, "quarter", threshold=5).tables["cases_period"]
    assert by_month.value("y", "new") == by_quarter.value("y", "new")
    assert _numbers(by_quarter)["q2"][0] == 6  # April (1) and June (5)
    assert _numbers(by_month)["m04"][0] == "<5"
    # June is 5 and the quarter 6: April would follow from them, so June is hidden too
    assert _numbers(by_month)["m06"][0] == "x"


def test_periods_are_calendar_months_in_german_time():
    p = periods(2026, datetime(2026, 7, 15, tzinfo=UTC))
    assert p.begun == 7
    assert p.bounds[0] == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)  # midnight in Berlin (CET)
    assert p.bounds[6] == datetime(2026, 6, 30, 22, 0, tzinfo=UTC)  # CEST
    assert p.keys("quarter") == ["q1", "q2", "q3"]


def test_percentiles_use_the_nearest_rank():
    assert figures.nearest_rank([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == 9
    assert figures.nearest_rank([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 0.9) == 10
    assert figures._duration_stats([1.0, 2.0, 3.0, 4.0]) == (None, None, None)  # fewer than 5 cases


# --- suppression on hand-made tables -------------------------------------------------------------------------
def _grid(cells: dict[tuple, int], rows, cols):
    """A table with row, column and grand totals ("T"), and the relations a reader knows."""
    values = dict(cells)
    relations = []
    for r in [*rows, "T"]:
        if r != "T":
            values[(r, "T")] = sum(cells[(r, c)] for c in cols)
        relations.append({**{(r, c): 1 for c in cols}, (r, "T"): -1})
    for c in [*cols, "T"]:
        values[("T", c)] = sum(values[(r, c)] for r in rows)
        relations.append({**{(r, c): 1 for r in rows}, ("T", c): -1})
    return values, relations


def _show(result, rows, cols):
    return [[result.text((r, c)) for c in [*cols, "T"]] for r in [*rows, "T"]]


def test_a_small_cell_and_its_complements_are_suppressed_and_totals_stay():
    # hand-made: unit a has 3 cases in January; every line with one hidden cell gets a second one
    rows, cols = ["a", "b"], ["jan", "feb", "mar"]
    values, relations = _grid({("a", "jan"): 3, ("a", "feb"): 10, ("a", "mar"): 12,
                               ("b", "jan"): 8, ("b", "feb"): 9, ("b", "mar"): 20}, rows, cols)
    result = suppression.protect(values, relations)
    assert _show(result, rows, cols) == [
        ["<5", "x", "12", "25"],
        ["x", "x", "20", "37"],
        ["11", "19", "32", "62"],
    ]
    # neither the row total (25 - 12 = 13 = 3 + 10) nor the column total gives the 3 back
    assert suppression.determined(result.suppressed, relations) == set()


def test_zero_is_shown_and_one_to_four_are_small():
    values, relations = _grid({("a", "x"): 0, ("a", "y"): 4, ("b", "x"): 5, ("b", "y"): 30}, ["a", "b"], ["x", "y"])
    result = suppression.protect(values, relations)
    assert result.text(("a", "x")) == "0"
    assert result.text(("a", "y")) == "<5"
    assert result.text(("a", "T")) == "<5"  # the row total is 4 as well
    assert result.value(("a", "y")) is None


def test_a_list_with_a_total_hides_the_next_smallest_entry():
    values = {"rz": 40, "lks": 2, "opfer": 7, "ausstieg": 9, "T": 58}
    relations = [{"rz": 1, "lks": 1, "opfer": 1, "ausstieg": 1, "T": -1}]
    result = suppression.protect(values, relations)
    assert [result.text(k) for k in ("rz", "lks", "opfer", "ausstieg", "T")] == ["40", "<5", "x", "9", "58"]


def test_cells_that_must_stay_published_are_never_complements():
    values = {"a": 2, "b": 6, "c": 7, "T": 15}
    relations = [{"a": 1, "b": 1, "c": 1, "T": -1}]
    result = suppression.protect(values, relations, fixed={"b"})
    assert [result.text(k) for k in "abcT"] == ["<5", "6", "x", "15"]


def test_the_audit_finds_a_cell_that_a_chain_of_totals_gives_away():
    # two suppressed rectangles joined by one suppressed cell: every line has two hidden cells, but the
    # joining cell follows from the totals all the same
    rows = cols = [1, 2, 3, 4]
    _, relations = _grid({(r, c): 10 for r in rows for c in cols}, rows, cols)
    hidden = {(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (3, 4), (4, 3), (4, 4), (2, 3)}
    assert suppression.determined(hidden, relations) == {(2, 3)}


def test_protection_leaves_no_small_cell_recomputable_in_random_tables():
    rng = random.Random(20261126)
    rows, cols = list(range(5)), list(range(4))
    for _ in range(60):
        cells = {(r, c): rng.choice([0, 0, 1, 2, 3, 4, 5, 6, 9, 15, 40]) for r in rows for c in cols}
        values, relations = _grid(cells, rows, cols)
        result = suppression.protect(values, relations)
        small = {c for c, v in values.items() if 0 < v < 5}
        assert {c for c, s in result.status.items() if s == suppression.PRIMARY} == small
        assert not _determined_exactly(result.suppressed, relations) & small


def _determined_exactly(unknowns, relations) -> set:
    """The same question as suppression.determined, answered with fractions (an independent check)."""
    cells = sorted(unknowns, key=repr)
    matrix = [[Fraction(r.get(c, 0)) for c in cells] for r in relations]
    matrix = [row for row in matrix if any(row)]
    pivots, top = [], 0
    for col in range(len(cells)):
        found = next((i for i in range(top, len(matrix)) if matrix[i][col]), None)
        if found is None:
            continue
        matrix[top], matrix[found] = matrix[found], matrix[top]
        matrix[top] = [x / matrix[top][col] for x in matrix[top]]
        for i in range(len(matrix)):
            if i != top and matrix[i][col]:
                factor = matrix[i][col]
                matrix[i] = [a - factor * b for a, b in zip(matrix[i], matrix[top], strict=True)]
        pivots.append(col)
        top += 1
    return {cells[col] for i, col in enumerate(pivots) if sum(1 for x in matrix[i] if x) == 1}


def test_a_relation_that_does_not_hold_is_a_programming_error():
    with pytest.raises(ValueError, match="does not hold"):
        suppression.protect({"a": 1, "T": 3}, [{"a": 1, "T": -1}])


# --- the instance list --------------------------------------------------------------------------------------
def _list(dataset, user="sven", **args):
    with dataset.db.transaction() as s:
        f = InstanceFilter.from_args({k: str(v) for k, v in args.items()})
        page = instances.list_page(s, _user(s, user), f, now=NOW, size=100)
        return {r.id for r in page.rows}, page


def test_the_list_filters_by_procedure_status_and_version(dataset):
    c = dataset.cases
    proactive = {c["proactive_rejected"], c["proactive_approved"]}
    assert _list(dataset, process="proactive_intervention")[0] == proactive
    assert _list(dataset, process="proactive_intervention", version=1)[0] == proactive
    assert _list(dataset, process="proactive_intervention", version=2)[0] == set()
    assert _list(dataset, status="completed")[0] == {c["closed"], c["no_commission"], c["proactive_rejected"]}
    assert _list(dataset, status="cancelled")[0] == {c["cancelled"]}
    assert len(_list(dataset, status="running")[0]) == 8
    assert _list(dataset, status="incident")[0] == set()


def test_the_list_filters_by_current_step_unit_territory_age_and_overdue(dataset):
    c = dataset.cases
    june = {c[f"june_{i}"] for i in range(5)}
    assert _list(dataset, step="Task_FirstContact")[0] == june | {c["overdue"]}
    assert _list(dataset, step="Task_First")[0] == set()  # a whole element id, not a part of one
    assert _list(dataset, unit="rz-westmecklenburg")[0] == {c["escalated"]}
    assert _list(dataset, territory="lk-rostock")[0] == {c["overdue"]}
    assert _list(dataset, max_age=44)[0] == june  # started on June 1 to 5, now is July 15
    assert c["closed"] in _list(dataset, min_age=160)[0] and c["overdue"] not in _list(dataset, min_age=160)[0]
    assert _list(dataset, overdue=1)[0] == june | {c["overdue"], c["proactive_approved"]}


def test_the_list_pages_forward_and_back_without_gaps(dataset):
    with dataset.db.transaction() as s:
        user, f = _user(s, "sven"), InstanceFilter.from_args({"sort": "started_asc"})
        first = instances.list_page(s, user, f, now=NOW, size=5)
        second = instances.list_page(s, user, f, now=NOW, size=5, after=first.next)
        third = instances.list_page(s, user, f, now=NOW, size=5, after=second.next)
        back = instances.list_page(s, user, f, now=NOW, size=5, before=second.previous)
    ids = [r.id for r in first.rows + second.rows + third.rows]
    assert ids == sorted(dataset.cases.values()) and first.total == 12
    assert first.previous is None and third.next is None
    assert [r.id for r in back.rows] == [r.id for r in first.rows]


def test_the_list_shows_each_viewer_only_cases_the_policy_lets_them_read(dataset):
    c = dataset.cases
    seen = {}
    with dataset.db.transaction() as s:
        for name in ("sven", "katrin.lange", "sabine.wolf", "maria.schulz", "ole.brandt", "tom.richter",
                     "peter.hahn", "admin"):
            user = _user(s, name)
            rows = list(instances.all_rows(s, user, InstanceFilter(), now=NOW))
            seen[name] = {r.id for r in rows}
            for row in rows:
                assert policy.can(user, policy.Permission.CASE_READ, s.get(ProcessInstance, row.id)), (name, row.id)
    assert len(seen["sven"]) == 12  # a supervisor outside a ministry: status of every case
    assert seen["sabine.wolf"] == {c["closed"], c["no_commission"], c["overdue"], *(c[f"june_{i}"] for i in range(5))}
    assert c["escalated"] in seen["maria.schulz"]  # lead of RZ Westmecklenburg; A. Berger started them all
    assert seen["ole.brandt"] >= {c["cancelled"], c["proactive_rejected"], c["proactive_approved"]}
    assert seen["katrin.lange"] >= {c["escalated"], c["proactive_rejected"], c["proactive_approved"]}
    assert seen["tom.richter"] == seen["peter.hahn"] == seen["admin"] == set()  # counsellor, ministry, admin


def test_the_list_never_selects_a_personal_field(dataset):
    with dataset.db.transaction() as s:
        rows = list(instances.all_rows(s, _user(s, "sven"), InstanceFilter(), now=NOW))
    text = repr(rows)
    for secret in reportingkit.PERSONAL:
        assert secret not in text


def test_filters_read_from_a_query_string_ignore_what_they_do_not_know():
    f = InstanceFilter.from_args({"status": "weird", "step": "a b'", "min_age": "-3", "sort": "drop table",
                                  "version": "2", "overdue": "1"})
    assert (f.status, f.step, f.min_age, f.sort, f.version, f.overdue) == ("", "", None, "started_desc", None, True)
    assert InstanceFilter(process="consultation", version=2).args() == {"process": "consultation", "version": "2"}


# --- exports --------------------------------------------------------------------------------------------------
def test_csv_export_is_semicolon_separated_utf8_for_spreadsheets():
    body = exports.csv_bytes([["Fall", "Stelle"], ["2026-AB", "Rostock; Süd"], ["=HYPERLINK(1)", -3]])
    assert body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";"))
    assert rows == [["Fall", "Stelle"], ["2026-AB", "Rostock; Süd"], ["'=HYPERLINK(1)", "-3"]]


def test_xlsx_export_is_a_valid_workbook_with_the_rows():
    body = exports.xlsx_bytes([("Fälle", [["Fall", "Alter"], ["2026-AB <&>", 12], ["@x", None]])])
    archive = zipfile.ZipFile(io.BytesIO(body))
    names = set(archive.namelist())
    assert {"[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/_rels/workbook.xml.rels",
            "xl/styles.xml", "xl/worksheets/sheet1.xml"} <= names
    for name in names:
        ElementTree.fromstring(archive.read(name))  # every part is well-formed XML
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    sheet = ElementTree.fromstring(archive.read("xl/worksheets/sheet1.xml"))
    cells = [[(c.get("t"), "".join(c.itertext())) for c in row.findall("m:c", ns)]
             for row in sheet.findall("m:sheetData/m:row", ns)]
    assert cells == [[("inlineStr", "Fall"), ("inlineStr", "Alter")], [("inlineStr", "2026-AB <&>"), (None, "12")],
                     [("inlineStr", "'@x"), ("inlineStr", "")]]
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    assert workbook.find("m:sheets/m:sheet", ns).get("name") == "Fälle"


# --- durations, waiting cases, overdue work ------------------------------------------------------------------
def test_the_process_view_counts_waiting_cases_and_durations_per_element(dataset):
    with dataset.db.transaction() as s:
        definition = s.scalar(select(ProcessDefinition).where(ProcessDefinition.key == "consultation"))
        stats = durations.element_stats(s, _user(s, "sven"), definition.id)
        lead = durations.element_stats(s, _user(s, "ole.brandt"), definition.id)
    assert stats["Task_FirstContact"].waiting == 6
    assert stats["Task_FirstContact"].finished == 3
    assert stats["Task_FirstContact"].mean == pytest.approx(86400, abs=1)  # every step took one day
    assert stats["Task_FirstContact"].p90 == pytest.approx(86400, abs=1)
    assert stats["Task_FirstContact"].taken_mean == pytest.approx(86400, abs=1)
    assert stats["Task_Session"].finished == 2
    assert "Task_FirstContact" not in lead or lead["Task_FirstContact"].waiting == 0  # they are RZ Rostock's
    assert durations.heat({"a": durations.ElementStats("a", mean=10), "b": durations.ElementStats("b", mean=2)}) \
        == {"a": 5, "b": 1}


def test_overdue_work_is_counted_per_unit_with_first_contacts(dataset):
    with dataset.db.transaction() as s:
        tasks = overdue.overdue_tasks(s, _user(s, "sven"), now=NOW)
        own = overdue.overdue_tasks(s, _user(s, "sabine.wolf"), now=NOW)
    lines = {line.unit: (line.tasks, line.first_contacts) for line in overdue.per_unit(tasks)}
    assert lines == {"rz-rostock": (6, 6), "opferberatung": (1, 0)}
    assert {t.unit for t in own} == {"rz-rostock"}
    assert tasks[0].days_overdue(NOW) == (NOW - datetime(2026, 3, 23, 9, 0, tzinfo=UTC)).days


def test_a_lead_hands_an_overdue_first_contact_to_a_colleague(dataset, tmp_path, sqlite_template):
    # on a copy: the data set stays as it is for the other tests
    if dataset.db.backend != "sqlite":
        pytest.skip("the copy is a SQLite file")
    path = tmp_path / "copy.sqlite3"
    shutil.copy(dataset.db.url.removeprefix("sqlite:///"), path)
    db = Database(f"sqlite:///{path}")
    db.clock.at = NOW
    try:
        with db.transaction() as s:
            task = overdue.overdue_tasks(s, _user(s, "sabine.wolf"), now=NOW)[0]
            db.runtime(s).assign(task.task_id, assignee="tom.richter", user="sabine.wolf")
        with db.transaction() as s:
            again = overdue.overdue_tasks(s, _user(s, "sabine.wolf"), now=NOW)[0]
        assert (again.task_id, again.assignee) == (task.task_id, "tom.richter")
    finally:
        db.engine.dispose()


# --- last, because it rewrites the facts of the data set ---------------------------------------------
def test_rebuilding_the_facts_writes_the_same_rows(dataset):
    db = dataset.db
    with db.transaction() as s:
        before = [tuple(r) for r in s.execute(select(CaseFact.__table__).order_by(CaseFact.instance_id))]
    with db.transaction() as s:
        s.execute(delete(CaseFactTopic))
        s.execute(delete(CaseEscalation))
        s.execute(delete(CaseFact))
    with db.transaction() as s:
        assert facts.rebuild(s, now=NOW) == 12
    with db.transaction() as s:
        after = [tuple(r) for r in s.execute(select(CaseFact.__table__).order_by(CaseFact.instance_id))]
        assert s.scalar(select(CaseEscalation.kind)) == "support"
    # when the escalation was requested is only known at the time it happened: the rebuild says "now"
    assert after == before
