"""The figures (Kennzahlen) of one year, from the facts tables, with small cells suppressed.

    figures = compute(session, year=2026, now=clock.now(), granularity="quarter", metric="new")
    figures.tables["cases_unit"].cells[("rz-rostock", "q1")]   # Value(number=12, state="shown")

Families of tables that share cells are protected together (suppression.protect): all case counts of
the year (by period, unit, territory, client type and topic; months, quarters and the year at once, so
every period view shows the same protected numbers); commission; escalations; closed consultations
(experts, indicators, durations share their total); proactive interventions; deadlines of steps.
Codes are returned as keys; the web app turns them into German labels.
"""

from __future__ import annotations

import functools
import statistics as stats
import threading
import weakref
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from ..models import CaseEscalation, CaseFact, CaseFactTopic, ProcessInstance, Task
from . import suppression
from .durations import seconds_between
from .facts import INDICATORS
from .periods import Periods, periods

METRICS = ("new", "running", "closed")
DIMENSIONS = ("unit", "territory", "client_type", "topic")
ADDITIVE = ("unit", "territory", "client_type")  # a case has exactly one value (or none): rows add up
NONE, TOTAL = "none", "total"
INDICATOR_VALUES = ("achieved", "partly", "not_achieved")
DECISIONS = ("takeover", "support", "declined")
APPROVALS = ("approved", "rejected")
DEADLINES = ("on_time", "late", "withdrawn", "overdue", "pending")
CLOSED_OUTCOME = "consultation_closed"
MIN_STATS = suppression.THRESHOLD  # averages and percentiles only over at least this many cases


@dataclass
class Value:
    number: float | None  # None when suppressed or not applicable
    state: str = suppression.SHOWN  # shown, primary ("<5"), secondary ("x"), none (not applicable)
    kind: str = "count"  # count, percent, days


@dataclass
class Table:
    id: str
    row_dim: str
    column_dim: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Value] = field(default_factory=dict)
    totals: frozenset[str] = frozenset({TOTAL})

    def value(self, row: str, column: str) -> Value:
        return self.cells.get((row, column), Value(None, "none"))


@dataclass
class Figures:
    year: int
    granularity: str
    metric: str
    periods: Periods
    tables: dict[str, Table]


#: figures of one database (engine), by (year, view, data stamp, hour): a page asks again without recounting
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
CACHE_SIZE = 64


def compute_cached(session: Session, *, year: int, now: datetime, granularity: str = "quarter",
                   metric: str = "new") -> Figures:
    """`compute`, remembered while the data does not change: the stamp is the newest change of any case and
    the number of cases (one indexed query); the hour is part of the key because deadlines depend on now."""
    stamp = tuple(session.execute(select(func.max(ProcessInstance.updated_at), func.count(ProcessInstance.id))).one())
    key = (year, granularity, metric, stamp, now.replace(minute=0, second=0, microsecond=0))
    bind = session.get_bind()
    with _cache_lock:
        entries = _cache.setdefault(bind, OrderedDict())
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
    figures = compute(session, year=year, now=now, granularity=granularity, metric=metric)
    with _cache_lock:
        entries[key] = figures
        while len(entries) > CACHE_SIZE:
            entries.popitem(last=False)
    return figures


def compute(session: Session, *, year: int, now: datetime, granularity: str = "quarter", metric: str = "new",
            threshold: int = suppression.THRESHOLD) -> Figures:
    """The figures of `year` as of `now`. `threshold` is for tests (1: nothing is suppressed)."""
    p = periods(year, now)
    tables: dict[str, Table] = {}
    protect = functools.partial(suppression.protect, threshold=threshold)
    if p.begun:
        tables.update(_cases(session, p, granularity, metric, protect))
        tables.update(_commission(session, p, granularity, protect))
        tables.update(_closings(session, p, protect, threshold))
        tables.update(_escalations(session, p, protect))
        tables.update(_proactive(session, p, protect))
        tables.update(_deadlines(session, p, now, protect))
    return Figures(year, granularity, metric, p, tables)


# --- helpers ------------------------------------------------------------------------------------------
def _month_bucket(column, p: Periods):
    """Of a YYYYMM column: 0 before the year, 1..12 the month, 13 after the year or NULL (still open)."""
    first, last = p.year * 100 + 1, p.year * 100 + 12
    return case((column.is_(None), 13), (column < first, 0), (column > last, 13), else_=column - p.year * 100)


def _months_of_year(column, p: Periods):
    return column.between(p.year * 100 + 1, p.year * 100 + 12)


def _in_year(column, p: Periods):
    return and_(column >= p.bounds[0], column < p.bounds[12])


def _count_table(table_id: str, row_dim: str, column_dim: str, rows, columns, protected, cell_of,
                 totals=frozenset({TOTAL})) -> Table:
    table = Table(table_id, row_dim, column_dim, list(rows), list(columns), totals=frozenset(totals))
    for row in table.rows:
        for column in table.columns:
            cell = cell_of(row, column)
            if cell is None:
                continue
            table.cells[(row, column)] = Value(protected.value(cell), protected.status.get(cell, suppression.SHOWN))
    return table


def _ordered(keys, first=(), last=(NONE,)) -> list[str]:
    keys = set(keys)
    head = [k for k in first if k in keys]
    tail = [k for k in last if k in keys]
    return head + sorted(keys - set(head) - set(tail)) + tail


def _sum_relation(parts, total) -> dict:
    relation: dict = defaultdict(int)
    for part in parts:
        relation[part] += 1
    relation[total] -= 1
    return relation


def _margins(grid: dict[tuple[str, str], int], rows, columns) -> tuple[dict, list[dict]]:
    """A two-way table with row, column and grand totals, and its relations."""
    values = dict(grid)
    relations = []
    for r in rows:
        values[(r, TOTAL)] = sum(grid.get((r, c), 0) for c in columns)
        relations.append(_sum_relation([(r, c) for c in columns], (r, TOTAL)))
    for c in [*columns, TOTAL]:
        values[(TOTAL, c)] = sum(values.get((r, c), 0) for r in rows)
        relations.append(_sum_relation([(r, c) for r in rows], (TOTAL, c)))
    relations.append(_sum_relation([(TOTAL, c) for c in columns], (TOTAL, TOTAL)))
    return values, relations


# --- cases: new, running, closed ------------------------------------------------------------------------
def _case_counts(session: Session, p: Periods) -> dict[str, dict[str, dict[tuple[int, int], int]]]:
    """{dimension: {value: {(start month, end month): cases}}} of the cases open at some time in the year."""
    opened = _month_bucket(CaseFact.opened_month, p).label("sb")
    ended = _month_bucket(CaseFact.ended_month, p).label("eb")
    where = (CaseFact.request.is_(True), CaseFact.opened_month <= p.year * 100 + 12,
             or_(CaseFact.ended_month.is_(None), CaseFact.ended_month >= p.year * 100 + 1))
    rows = select(CaseFact.unit, CaseFact.territory, CaseFact.client_type, opened, ended).where(*where).subquery()
    counts: dict[str, dict] = {d: defaultdict(lambda: defaultdict(int)) for d in DIMENSIONS}
    for unit, territory, client_type, sb, eb, n in session.execute(
            select(rows.c.unit, rows.c.territory, rows.c.client_type, rows.c.sb, rows.c.eb, func.count())
            .group_by(rows.c.unit, rows.c.territory, rows.c.client_type, rows.c.sb, rows.c.eb)):
        for dim, value in (("unit", unit), ("territory", territory), ("client_type", client_type)):
            counts[dim][value or NONE][(sb, eb)] += n
    topic_rows = (select(CaseFactTopic.topic, opened, ended).join(CaseFact, CaseFact.instance_id ==
                                                                   CaseFactTopic.instance_id).where(*where).subquery())
    for topic, sb, eb, n in session.execute(select(topic_rows.c.topic, topic_rows.c.sb, topic_rows.c.eb, func.count())
                                            .group_by(topic_rows.c.topic, topic_rows.c.sb, topic_rows.c.eb)):
        counts["topic"][topic][(sb, eb)] += n
    return counts


def _series(buckets: dict[tuple[int, int], int], p: Periods) -> dict[tuple[str, str], int]:
    """{(metric, period): count} of one row: new and closed per period, the stock at each month's end."""
    k_max = p.begun
    new = [0] * (k_max + 1)
    closed = [0] * (k_max + 1)
    running = [0] * (k_max + 1)
    for (sb, eb), n in buckets.items():
        if sb > k_max:
            continue
        if sb >= 1:
            new[sb] += n
        if eb <= k_max:
            closed[eb] += n
        for k in range(sb, min(eb, k_max + 1)):
            running[k] += n
    out: dict[tuple[str, str], int] = {}
    for k in range(1, k_max + 1):
        out[("new", f"m{k:02d}")], out[("closed", f"m{k:02d}")] = new[k], closed[k]
    for k in range(0, k_max + 1):
        out[("running", f"m{k:02d}")] = running[k]
    for metric in ("new", "closed"):
        for q in p.quarters():
            out[(metric, q)] = sum(out[(metric, m)] for m in p.months_of(q))
        out[(metric, "y")] = sum(out[(metric, q)] for q in p.quarters())
    return out


def _stock_key(p: Periods, period: str) -> str:
    return f"m{p.last_month(period):02d}"


def _cases(session: Session, p: Periods, granularity: str, metric: str, protect) -> dict[str, Table]:
    counts = _case_counts(session, p)
    values: dict = {}
    relations: list[dict] = []
    series_keys = []
    total_series: dict[tuple[int, int], int] = defaultdict(int)
    for buckets in counts["unit"].values():
        for key, n in buckets.items():
            total_series[key] += n
    all_series = {("*", TOTAL): total_series}
    for dim in DIMENSIONS:
        for value, buckets in counts[dim].items():
            all_series[(dim, value)] = buckets
    for (dim, value), buckets in all_series.items():
        series_keys.append((dim, value))
        for (m, period), n in _series(buckets, p).items():
            values[(dim, value, m, period)] = n
        for m in ("new", "closed"):
            for q in p.quarters():
                relations.append({**{(dim, value, m, month): 1 for month in p.months_of(q)}, (dim, value, m, q): -1})
            relations.append({**{(dim, value, m, q): 1 for q in p.quarters()}, (dim, value, m, "y"): -1})
        for k in range(1, p.begun + 1):
            relations.append({(dim, value, "running", f"m{k:02d}"): 1, (dim, value, "running", f"m{k - 1:02d}"): -1,
                              (dim, value, "new", f"m{k:02d}"): -1, (dim, value, "closed", f"m{k:02d}"): 1})
    flows = [*p.months(), *p.quarters(), "y"]
    stocks = [f"m{k:02d}" for k in range(0, p.begun + 1)]
    for dim in ADDITIVE:
        members = [v for d, v in series_keys if d == dim]
        for m, keys in (("new", flows), ("closed", flows), ("running", stocks)):
            for period in keys:
                relations.append(_sum_relation([(dim, v, m, period) for v in members], ("*", TOTAL, m, period)))
    # the stock at the start of the year is published on last year's page: assume the reader knows it
    fixed = {(d, v, "running", "m00") for d, v in series_keys}

    def cost(cell) -> float:
        dim, _, _, period = cell
        return values.get(cell, 0) * (3 if dim == "*" else 1) * {"m": 1, "q": 1.5, "y": 2}[period[0]]

    protected = protect(values, relations, fixed=fixed, cost=cost)

    def cell(dim, value, m, period):
        return (dim, value, m, _stock_key(p, period) if m == "running" else period)

    tables = {}
    period_rows = p.keys(granularity) + (["y"] if granularity != "year" else [])
    tables["cases_period"] = _count_table(
        "cases_period", "period", "metric", period_rows, METRICS, protected,
        lambda r, c: cell("*", TOTAL, c, r), totals={"y"})
    columns = p.keys(granularity) + (["y"] if granularity != "year" else [])
    for dim in DIMENSIONS:
        rows = _ordered(counts[dim].keys()) + ([TOTAL] if dim in ADDITIVE else [])
        tables[f"cases_{dim}"] = _count_table(
            f"cases_{dim}", dim, "period", rows, columns, protected,
            lambda r, c, dim=dim: cell("*", TOTAL, metric, c) if r == TOTAL else cell(dim, r, metric, c))
    return tables


# --- commission rate ------------------------------------------------------------------------------------
def _commission(session: Session, p: Periods, granularity: str, protect) -> dict[str, Table]:
    month = (CaseFact.opened_month - p.year * 100).label("month")
    rows = select(month, CaseFact.commission.label("given")).where(
        CaseFact.request.is_(True), CaseFact.commission.is_not(None),
        _months_of_year(CaseFact.opened_month, p)).subquery()
    values: dict = defaultdict(int)
    for k, given, n in session.execute(select(rows.c.month, rows.c.given, func.count())
                                       .group_by(rows.c.month, rows.c.given)):
        if 1 <= k <= p.begun:
            values[("yes" if given else "no", f"m{k:02d}")] += n
    relations = []
    for outcome in ("yes", "no"):
        for q in p.quarters():
            values[(outcome, q)] = sum(values[(outcome, m)] for m in p.months_of(q))
            relations.append({**{(outcome, m): 1 for m in p.months_of(q)}, (outcome, q): -1})
        values[(outcome, "y")] = sum(values[(outcome, q)] for q in p.quarters())
        relations.append({**{(outcome, q): 1 for q in p.quarters()}, (outcome, "y"): -1})
    for period in p.all_keys():
        values[(TOTAL, period)] = values[("yes", period)] + values[("no", period)]
        relations.append({("yes", period): 1, ("no", period): 1, (TOTAL, period): -1})
        if period.startswith("q"):
            relations.append({**{(TOTAL, m): 1 for m in p.months_of(period)}, (TOTAL, period): -1})
    relations.append({**{(TOTAL, q): 1 for q in p.quarters()}, (TOTAL, "y"): -1})
    protected = protect(values, relations)
    period_rows = p.keys(granularity) + (["y"] if granularity != "year" else [])
    table = _count_table("commission", "period", "commission", period_rows, ("yes", "no", TOTAL), protected,
                         lambda r, c: (c, r), totals={"y"})
    for period in period_rows:
        yes, total = protected.value(("yes", period)), protected.value((TOTAL, period))
        rate = yes / total * 100 if yes is not None and total else None
        table.cells[(period, "rate")] = Value(rate, suppression.SHOWN if rate is not None else "none", "percent")
    table.columns.append("rate")
    return {"commission": table}


# --- closed consultations: experts, indicators, durations ----------------------------------------------
def _closings(session: Session, p: Periods, protect, threshold: int) -> dict[str, Table]:
    closed = (CaseFact.request.is_(True), CaseFact.outcome == CLOSED_OUTCOME, _months_of_year(CaseFact.ended_month, p))
    indicator_columns = [getattr(CaseFact, f"indicator_{name}") for name in INDICATORS]
    experts: dict[str, int] = defaultdict(int)
    indicator: dict[tuple[str, str], int] = defaultdict(int)
    total = 0
    for expert, *marks, n in session.execute(select(CaseFact.experts, *indicator_columns, func.count())
                                             .where(*closed).group_by(CaseFact.experts, *indicator_columns)):
        total += n
        experts["yes" if expert is True else "no" if expert is False else NONE] += n
        for name, mark in zip(INDICATORS, marks, strict=True):
            indicator[(name, mark or NONE)] += n
    durations: dict[str, list[float]] = defaultdict(list)
    days = (seconds_between(session, CaseFact.opened_at, CaseFact.ended_at) / 86400.0).label("days")
    for unit, value in session.execute(select(CaseFact.unit, days).where(*closed)):
        durations[unit or NONE].append(float(value or 0))
    n_closed = ("closed", TOTAL)  # one cell shared by all three tables
    values: dict = {n_closed: total}
    relations = []
    expert_rows = _ordered(experts, first=("yes", "no"))
    for key in expert_rows:
        values[("experts", key)] = experts[key]
    relations.append(_sum_relation([("experts", k) for k in expert_rows], n_closed))
    marks = _ordered({m for _, m in indicator}, first=INDICATOR_VALUES)
    for name in INDICATORS:
        for mark in marks:
            values[("indicator", name, mark)] = indicator[(name, mark)]
        relations.append(_sum_relation([("indicator", name, m) for m in marks], n_closed))
    units = _ordered(durations)
    for unit in units:
        values[("duration", unit)] = len(durations[unit])
    relations.append(_sum_relation([("duration", u) for u in units], n_closed))
    protected = protect(values, relations)
    tables = {
        "experts": _count_table("experts", "experts", "count", [*expert_rows, TOTAL], ["count"], protected,
                                lambda r, c: n_closed if r == TOTAL else ("experts", r)),
        "indicators": _count_table("indicators", "indicator", "mark", list(INDICATORS), [*marks, TOTAL], protected,
                                   lambda r, c: n_closed if c == TOTAL else ("indicator", r, c), totals=frozenset()),
    }
    for name in INDICATORS:  # shares of the cases with this indicator, where the count is published
        for mark in marks:
            count, all_closed = protected.value(("indicator", name, mark)), protected.value(n_closed)
            share = count / all_closed * 100 if count is not None and all_closed else None
            tables["indicators"].cells[(name, f"{mark}:share")] = Value(share, "shown" if share is not None
                                                                         else "none", "percent")
    table = _count_table("durations", "unit", "duration", [*units, TOTAL], ["count"], protected,
                         lambda r, c: n_closed if r == TOTAL else ("duration", r))
    everything = [d for unit in units for d in durations[unit]]
    for unit, values_of_unit in [*((u, durations[u]) for u in units), (TOTAL, everything)]:
        for column, value in zip(("mean", "median", "p90"), _duration_stats(values_of_unit, threshold),
                                 strict=True):
            table.cells[(unit, column)] = Value(value, "shown" if value is not None else "none", "days")
    table.columns += ["mean", "median", "p90"]
    tables["durations"] = table
    return tables


def _duration_stats(days: list[float], minimum: int = MIN_STATS) -> tuple[float | None, float | None, float | None]:
    if not days or len(days) < minimum:
        return None, None, None
    ordered = sorted(days)
    return stats.fmean(ordered), stats.median(ordered), nearest_rank(ordered, 0.9)


def nearest_rank(ordered: list[float], share: float) -> float:
    """The smallest value with at least `share` of the values at or below it."""
    rank = max(1, -(-int(share * 1000) * len(ordered) // 1000))  # ceil(share * n) in integers
    return ordered[rank - 1]


# --- escalations ------------------------------------------------------------------------------------------
def _escalations(session: Session, p: Periods, protect) -> dict[str, Table]:
    grid: dict[tuple[str, str], int] = defaultdict(int)
    for kind, decision, n in session.execute(
            select(CaseEscalation.kind, CaseEscalation.decision, func.count())
            .where(_in_year(CaseEscalation.requested_at, p))
            .group_by(CaseEscalation.kind, CaseEscalation.decision)):
        grid[(kind or NONE, decision or "open")] += n
    kinds = _ordered({k for k, _ in grid}, first=("support", "statewide"))
    decisions = _ordered({d for _, d in grid} | set(DECISIONS), first=DECISIONS, last=("open",))
    values, relations = _margins(grid, kinds, decisions)
    protected = protect(values, relations)
    return {"escalations": _count_table("escalations", "escalation_kind", "escalation_decision", [*kinds, TOTAL],
                                        [*decisions, TOTAL], protected, lambda r, c: (r, c))}


# --- proactive interventions ------------------------------------------------------------------------------
def _proactive(session: Session, p: Periods, protect) -> dict[str, Table]:
    grid: dict[tuple[str, str], int] = defaultdict(int)
    for unit, approval, n in session.execute(
            select(CaseFact.unit, CaseFact.approval, func.count())
            .where(CaseFact.proactive.is_(True), _in_year(CaseFact.started_at, p))
            .group_by(CaseFact.unit, CaseFact.approval)):
        grid[(unit or NONE, approval or "open")] += n
    units = _ordered({u for u, _ in grid})
    decisions = _ordered({d for _, d in grid} | set(APPROVALS), first=APPROVALS, last=("open",))
    values, relations = _margins(grid, units, decisions)
    protected = protect(values, relations)
    return {"proactive": _count_table("proactive", "unit", "approval_decision", [*units, TOTAL],
                                      [*decisions, TOTAL], protected, lambda r, c: (r, c))}


# --- deadlines of steps -----------------------------------------------------------------------------------
def _deadlines(session: Session, p: Periods, now: datetime, protect) -> dict[str, Table]:
    category = case(
        (and_(Task.state == "completed", Task.ended_at <= Task.due_at), "on_time"),
        (Task.state == "completed", "late"),
        (Task.state == "withdrawn", "withdrawn"),
        (Task.due_at < now, "overdue"),
        else_="pending").label("category")
    rows = select(Task.element_id, category).where(Task.state.in_(("open", "completed", "withdrawn")),
                                                   _in_year(Task.due_at, p)).subquery()
    grid: dict[tuple[str, str], int] = defaultdict(int)
    for element, kind, n in session.execute(select(rows.c.element_id, rows.c.category, func.count())
                                            .group_by(rows.c.element_id, rows.c.category)):
        grid[(element, kind)] += n
    elements = _ordered({e for e, _ in grid})
    values, relations = _margins(grid, elements, list(DEADLINES))
    protected = protect(values, relations)
    return {"deadlines": _count_table("deadlines", "element", "deadline", [*elements, TOTAL], [*DEADLINES, TOTAL],
                                      protected, lambda r, c: (r, c))}
