"""What the monitor pages show: German labels for the engine's codes, the figures as labelled tables with
bar charts (geometry for server-rendered SVG), and the rows of the list export.

The numbers come from `engine.reporting`; nothing here counts. Suppressed cells stay suppressed: a chart
draws no bar for them and prints the same mark as the table ("<5" or "x").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flask_babel import format_decimal, get_locale
from flask_babel import lazy_gettext as _l

from engine.reporting import figures as fig
from engine.reporting import suppression
from engine.reporting.instances import InstanceRow
from engine.reporting.labels import Labels
from engine.reporting.periods import TZ, Periods

STATUS = {"running": _l("laufend"), "completed": _l("abgeschlossen"), "cancelled": _l("abgebrochen"),
          "incident": _l("mit Störung")}
ROLES = {"counsellor": _l("Beratung"), "lead": _l("Leitung"), "coordinator": _l("Koordination"),
         "supervisor": _l("Aufsicht"), "admin": _l("Administration")}
ACTIONS = {"start": _l("gestartet"), "complete": _l("erledigt"), "claim": _l("übernommen"),
           "unclaim": _l("freigegeben"), "assign": _l("weitergegeben"), "message": _l("Nachricht erhalten"),
           "timer": _l("Frist abgelaufen"), "cancel": _l("abgebrochen"), "end": _l("abgeschlossen"),
           "incident": _l("Störung"), "retry": _l("erneut versucht"), "comment": _l("Kommentar geschrieben"),
           "attach": _l("Datei hochgeladen"), "download": _l("Datei heruntergeladen"),
           "migrate": _l("auf eine andere Version umgestellt"), "read": _l("Fall angesehen"),
           "data": _l("Daten korrigiert")}
METRICS = {"new": _l("neu"), "running": _l("laufend am Ende des Zeitraums"), "closed": _l("beendet")}
METRIC_TITLES = {"new": _l("Neue Fälle"), "running": _l("Laufende Fälle"), "closed": _l("Beendete Fälle")}
GRANULARITIES = {"month": _l("Monate"), "quarter": _l("Quartale"), "year": _l("Jahr")}
MONTHS = [_l("Januar"), _l("Februar"), _l("März"), _l("April"), _l("Mai"), _l("Juni"), _l("Juli"), _l("August"),
          _l("September"), _l("Oktober"), _l("November"), _l("Dezember")]
FIXED = {
    fig.TOTAL: _l("Insgesamt"), fig.NONE: _l("ohne Angabe"), "open": _l("noch offen"),
    "yes": _l("ja"), "no": _l("nein"), "count": _l("Anzahl"), "rate": _l("Quote"),
    "mean": _l("Durchschnitt (Tage)"), "median": _l("Median (Tage)"), "p90": _l("90-%-Wert (Tage)"),
    "on_time": _l("fristgerecht erledigt"), "late": _l("verspätet erledigt"), "withdrawn": _l("zurückgezogen"),
    "overdue": _l("offen, überfällig"), "pending": _l("offen, in der Frist"),
}
COMMISSION = {"yes": _l("mit Beauftragung"), "no": _l("ohne Beauftragung"), fig.TOTAL: _l("entschieden")}
EXPERTS = {"yes": _l("mit weiteren Fachleuten"), "no": _l("ohne weitere Fachleute")}
TITLES = {
    "cases_period": _l("Fälle im Zeitverlauf"),
    "cases_unit": _l("%(metric)s nach Stelle"),
    "cases_territory": _l("%(metric)s nach Landkreis und kreisfreier Stadt"),
    "cases_client_type": _l("%(metric)s nach Art der Beratungsnehmenden"),
    "cases_topic": _l("%(metric)s nach Thema"),
    "commission": _l("Beauftragungsquote: Anfragen, die zu einer Beratung wurden"),
    "escalations": _l("Übergaben an das landesweite Beratungsnetzwerk nach Anlass und Entscheidung"),
    "experts": _l("Hinzuziehung weiterer Fachleute"),
    "indicators": _l("Die sechs Erfolgsindikatoren"),
    "durations": _l("Dauer abgeschlossener Beratungen nach Stelle"),
    "proactive": _l("Proaktives Tätigwerden nach Stelle und Entscheidung"),
    "deadlines": _l("Fristen der Schritte"),
}
NOTES = {
    "cases_period": _l("Fälle sind Anfragen und Beratungen. Beendet: abgeschlossen oder abgebrochen."),
    "cases_topic": _l("Ein Fall kann mehrere Themen haben; die Zeilen ergeben deshalb keine Summe."),
    "commission": _l("Anfragen nach dem Monat ihres Eingangs, bei denen über die Beauftragung entschieden ist."),
    "escalations": _l("Gezählt werden Übergaben (ein Fall kann mehrmals übergeben werden), nach dem Tag der "
                      "Anforderung."),
    "experts": _l("Im Jahr abgeschlossene Beratungen."),
    "indicators": _l("Im Jahr abgeschlossene Beratungen; Anteile nur, wo die Anzahl veröffentlicht ist."),
    "durations": _l("Von der Anfrage bis zum Abschluss. Durchschnitt, Median und 90-%-Wert nur für mindestens "
                    "5 Beratungen."),
    "proactive": _l("Nach dem Tag, an dem das Tätigwerden erfasst wurde."),
    "deadlines": _l("Schritte, deren Frist im Jahr ablief oder abläuft."),
}
#: which codes a table's rows and columns are, and where their labels come from
OPTION_KEYS = {"client_type": "client_type", "topic": "topics", "escalation_kind": "escalation_kind",
               "escalation_decision": "escalation_decision", "approval_decision": "approval_decision"}


def period_label(periods: Periods, key: str) -> str:
    if key == "y":
        return str(periods.year)
    if key.startswith("q"):
        return str(_l("%(q)s. Quartal %(year)s", q=key[1:], year=periods.year))
    return f"{MONTHS[int(key[1:]) - 1]} {periods.year}"


def role_label(role_unit: tuple[str, str] | None, labels: Labels) -> str:
    if role_unit is None:
        return str(_l("eine Person"))
    role, unit = role_unit
    return f"{ROLES.get(role, role)}, {labels.units.get(unit, unit)}"


def group_label(group: str, labels: Labels) -> str:
    unit, _, role = group.partition(":")
    name = labels.units.get(unit, unit)
    return f"{name} ({ROLES.get(role, role)})" if role else str(name)


def local_date(value: datetime | None) -> str:
    return value.astimezone(TZ).strftime("%d.%m.%Y") if value else ""


# --- figures as labelled tables -----------------------------------------------------------------------------
@dataclass
class Bar:
    y: float
    width: float
    series: int
    text: str
    text_x: float


@dataclass
class ChartRow:
    lines: list[str]  # the label, wrapped
    y: float
    bars: list[Bar]


@dataclass
class Chart:
    series: list[str]
    rows: list[ChartRow]
    height: float
    width: int = 720
    label_width: int = 260
    plot_width: int = 400


@dataclass
class Shown:
    """One figure table as the page and the CSV show it."""

    id: str
    title: str
    note: str
    row_header: str
    columns: list[tuple[str, str]]  # (key, label)
    rows: list[tuple[str, str, bool]]  # (key, label, is a total)
    cells: dict[tuple[str, str], fig.Value] = field(default_factory=dict)
    chart: Chart | None = None

    def text(self, row: str, column: str) -> str:
        return value_text(self.cells.get((row, column), fig.Value(None, "none")))

    @property
    def suppressed(self) -> bool:
        return any(v.state in (suppression.PRIMARY, suppression.SECONDARY) for v in self.cells.values())


def value_text(value: fig.Value) -> str:
    if value.state == suppression.PRIMARY:
        return suppression.SMALL
    if value.state == suppression.SECONDARY:
        return suppression.HIDDEN
    if value.number is None:
        return "–"
    if value.kind == "percent":
        return f"{format_decimal(value.number, '0')} %"
    if value.kind == "days":
        return format_decimal(value.number, "0.0")
    return whole_number(value.number)


def whole_number(number: float) -> str:
    """A count with the locale's thousands separator (Babel's formatter is slow for thousands of cells)."""
    if number != int(number):
        return format_decimal(number)
    separator = "," if str(get_locale() or "de").startswith("en") else "."
    return f"{int(number):,}".replace(",", separator)


def _code_label(dim: str, key: str, labels: Labels, periods: Periods) -> str:
    if key in FIXED and dim not in ("experts", "commission"):
        return str(FIXED[key])
    if dim == "period":
        return period_label(periods, key)
    if dim == "unit":
        return labels.units.get(key, key)
    if dim == "territory":
        return labels.territories.get(key, key)
    if dim == "element":
        return labels.elements.get(key, key)
    if dim == "indicator":
        return labels.fields.get(f"indicator_{key}", key)
    if dim == "mark":
        return labels.option("indicator_problem_clarity", key)
    if dim == "metric":
        return str(METRICS.get(key, key))
    if dim == "commission":
        return str(COMMISSION.get(key, FIXED.get(key, key)))
    if dim == "experts":
        return str(EXPERTS.get(key, FIXED.get(key, key)))
    if dim in OPTION_KEYS:
        return labels.option(OPTION_KEYS[dim], key)
    return str(FIXED.get(key, key))


def present(figures: fig.Figures, labels: Labels) -> list[Shown]:
    shown = []
    metric_title = str(METRIC_TITLES.get(figures.metric, figures.metric))
    row_headers = {"period": _l("Zeitraum"), "unit": _l("Stelle"), "territory": _l("Landkreis / kreisfreie Stadt"),
                   "client_type": _l("Art der Beratungsnehmenden"), "topic": _l("Thema"),
                   "escalation_kind": _l("Anlass"), "experts": _l("Fachleute"), "indicator": _l("Indikator"),
                   "element": _l("Schritt")}
    for table_id, table in figures.tables.items():
        title = str(TITLES.get(table_id, table_id)) % {"metric": metric_title}
        columns = []
        for key in table.columns:
            if key.endswith(":share"):
                continue
            columns.append((key, _code_label(table.column_dim, key, labels, figures.periods)))
            if table_id == "indicators" and key != fig.TOTAL:
                columns.append((f"{key}:share", str(_l("Anteil"))))
        rows = [(key, _code_label(table.row_dim, key, labels, figures.periods), key in table.totals)
                for key in table.rows]
        item = Shown(table_id, title, str(NOTES.get(table_id, "")), str(row_headers.get(table.row_dim, "")),
                     columns, rows, dict(table.cells))
        item.chart = _chart(item, figures)
        shown.append(item)
    return shown


#: table -> the columns drawn as bar series (None: the table has no chart)
CHART_SERIES = {
    "cases_period": ["new", "closed"],
    "commission": ["yes", "no"],
    "escalations": [fig.TOTAL],
    "experts": ["count"],
    "indicators": list(fig.INDICATOR_VALUES),
    "durations": ["mean"],
    "proactive": list(fig.APPROVALS),
}


def _chart(item: Shown, figures: fig.Figures) -> Chart | None:
    if item.id.startswith("cases_") and item.id != "cases_period":
        series = ["y"] if any(k == "y" for k, _ in item.columns) else [item.columns[-1][0]] if item.columns else []
    else:
        series = CHART_SERIES.get(item.id, [])
    series = [s for s in series if any(k == s for k, _ in item.columns)]
    rows = [(key, label) for key, label, total in item.rows if not total]
    if not series or not rows:
        return None
    labels = dict(item.columns)
    numbers = [v.number for key, _ in rows for s in series
               if (v := item.cells.get((key, s))) is not None and v.number is not None and v.state == "shown"]
    top = max(numbers, default=0) or 1
    bar_height, gap = 14, 10
    chart = Chart([labels[s] for s in series], [], 0)
    y = 24.0 if len(series) > 1 else 4.0
    for key, label in rows:
        bars = []
        for i, s in enumerate(series):
            value = item.cells.get((key, s), fig.Value(None, "none"))
            number = value.number if value.state == "shown" and value.number is not None else 0
            width = chart.plot_width * number / top
            bars.append(Bar(y + i * bar_height, width, i, value_text(value), chart.label_width + width + 6))
        lines = wrap(label)
        chart.rows.append(ChartRow(lines, y, bars))
        y += max(len(series) * bar_height, len(lines) * 13) + gap
    chart.height = y
    return chart


def wrap(label: str, width: int = 38, lines: int = 2) -> list[str]:
    """A chart label in at most `lines` lines of about `width` characters."""
    out: list[str] = []
    for word in label.split():
        if out and len(out[-1]) + 1 + len(word) <= width:
            out[-1] += " " + word
        else:
            out.append(word)
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][: width - 1] + "…"
    return out or [""]


def csv_rows(shown: list[Shown], *, year: int, granularity: str) -> list[list]:
    """All tables one after the other: a title line, the header, the rows, a blank line."""
    out: list[list] = [[str(_l("Kennzahlen %(year)s", year=year)), str(GRANULARITIES.get(granularity, ""))],
                       [str(_l("<5: weniger als 5 Fälle; x: gesperrt, damit kleine Zahlen nicht errechnet werden "
                               "können"))], []]
    for item in shown:
        out.append([item.title])
        out.append([item.row_header, *(label for _, label in item.columns)])
        for key, label, _ in item.rows:
            out.append([label, *(item.text(key, c) for c, _ in item.columns)])
        out.append([])
    return out


# --- the list export -----------------------------------------------------------------------------------
def list_header() -> list[str]:
    return [str(h) for h in (_l("Fallnummer"), _l("Verfahren"), _l("Version"), _l("Status"), _l("Störung"),
                             _l("Aktueller Schritt"), _l("Stelle"), _l("Landkreis / kreisfreie Stadt"),
                             _l("Begonnen"), _l("Beendet"), _l("Dauer (Tage)"), _l("Überfällig seit"))]


def list_row(row: InstanceRow, labels: Labels, now: datetime) -> list:
    return [row.case_number, labels.processes.get(row.process_key, row.process_name), row.version,
            str(STATUS.get(row.status, row.status)), str(_l("ja")) if row.has_incident else "",
            ", ".join(labels.elements.get(e, e) for e in row.active),
            labels.units.get(row.unit, row.unit) if row.unit else "",
            labels.territories.get(row.territory, row.territory) if row.territory else "",
            local_date(row.started_at), local_date(row.ended_at), row.age_days(now), local_date(row.overdue_since)]


def format_duration(seconds: float | None) -> str:
    """A duration for people: minutes, hours or days."""
    if seconds is None:
        return "–"
    if seconds < 3600:
        return str(_l("%(n)s Min.", n=format_decimal(round(seconds / 60))))
    if seconds < 2 * 86400:
        return str(_l("%(n)s Std.", n=format_decimal(round(seconds / 3600, 1))))
    return str(_l("%(n)s Tage", n=format_decimal(round(seconds / 86400, 1))))
