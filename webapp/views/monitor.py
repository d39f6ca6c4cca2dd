"""The monitor (Überblick) for supervisors, coordinators and unit leads: the case list with filters and
exports, a case's status with its diagram, the procedures with waiting cases and durations, overdue
work, and the figures (Kennzahlen) with small cells suppressed.

Status and aggregates only: no page here shows a personal field or case content. Names of the people
who acted are shown to viewers with access to the case's content; everybody else sees role and unit.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from engine import audit, policy
from engine.errors import FallwerkError
from engine.models import CaseFact, ProcessDefinition, ProcessInstance, Task, Territory, Unit
from engine.policy import Permission
from engine.reporting import case_view, durations, exports, figures, instances, overdue
from engine.reporting.labels import element_names, waiting_elements
from engine.reporting.labels import labels as load_labels
from engine.reporting.periods import GRANULARITIES, local_year
from engine.reporting.scope import case_scope

from .. import database
from ..auth import me, requires
from ..errors import engine_message
from ..forms import EmptyForm
from ..services import casework
from ..services import monitor as present
from ..templating import DIST

bp = Blueprint("monitor", __name__, url_prefix="/monitor")
EXPORT_LIMIT = 200_000


def _bundle() -> bool:
    return (DIST / "monitor.js").exists()


def _now():
    return database.clock().now()


def _export_audit(kind: str, **detail) -> None:
    audit.record(database.session(), at=_now(), actor=me().username, action="export", element_id=kind, **detail)


# --- the case list ------------------------------------------------------------------------------------------
@bp.route("/")
@requires(Permission.MONITOR_READ)
def index():
    session, user = database.session(), me()
    f = instances.InstanceFilter.from_args(request.args)
    page = instances.list_page(session, user, f, now=_now(), after=request.args.get("after"),
                               before=request.args.get("before"))
    labels = load_labels(session)
    definitions = session.scalars(select(ProcessDefinition).order_by(ProcessDefinition.name,
                                                                     ProcessDefinition.version.desc())).all()
    steps = {}
    for definition in definitions:
        if definition.key not in steps and (not f.process or definition.key == f.process):
            steps[definition.key] = waiting_elements(definition)
    return render_template(
        "monitor/index.html", f=f, page=page, labels=labels, now=_now(), status_labels=present.STATUS,
        versions=[(d.key, d.version) for d in definitions if d.key == f.process], steps=steps,
        units=session.execute(select(Unit.id, Unit.name).where(Unit.kind != "ministry").order_by(Unit.name)).all(),
        territories=session.execute(select(Territory.id, Territory.name).order_by(Territory.name)).all())


def _export_rows(f):
    session, labels, now = database.session(), load_labels(database.session()), _now()
    yield present.list_header()
    for row in instances.all_rows(session, me(), f, now=now, limit=EXPORT_LIMIT):
        yield present.list_row(row, labels, now)


@bp.route("/export.csv")
@requires(Permission.MONITOR_READ)
def export_csv():
    f = instances.InstanceFilter.from_args(request.args)
    _export_audit("instances.csv", filters=f.args())
    rows = list(_export_rows(f))
    return Response(exports.csv_bytes(rows), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="faelle.csv"'})


@bp.route("/export.xlsx")
@requires(Permission.MONITOR_READ)
def export_xlsx():
    f = instances.InstanceFilter.from_args(request.args)
    _export_audit("instances.xlsx", filters=f.args())
    body = exports.xlsx_bytes([(_("Fälle"), _export_rows(f))])
    return Response(body, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": 'attachment; filename="faelle.xlsx"'})


# --- one case -----------------------------------------------------------------------------------------------
def _case(case_id: int) -> ProcessInstance:
    instance = policy.load_case(database.session(), me(), case_id)
    if not policy.can(me(), Permission.MONITOR_READ):
        abort(404)
    return instance


@bp.route("/cases/<int:case_id>")
@requires(Permission.MONITOR_READ)
def case(case_id: int):
    session, user, runtime = database.session(), me(), database.runtime()
    instance = _case(case_id)
    labels = load_labels(session)
    names = element_names(instance.definition, specs=runtime.specs)
    incidents = case_view.incidents(session, instance.id)
    markers = case_view.markers(instance, runtime.load_workflow(instance), incidents)
    tasks = case_view.open_tasks(session, instance.id)
    timeline = case_view.timeline(session, instance.id)
    content = policy.can(user, Permission.CASE_READ_CONTENT, instance)
    people = [e.actor for e in timeline] + [e.assignee for e in timeline] + [t.assignee for t in tasks]
    people += [u for t in tasks for u in (t.candidate_users or "").split(",") if u]
    if content:
        who = casework.display_names(session, people)
    else:
        roles = case_view.role_of(session, people, unit=instance.responsible_unit)
        who = {p: present.role_label(roles.get(p), labels) for p in people if p}
    now = _now()
    overlays = {t.element_id: "overdue" if t.due_at and t.due_at < now else "open" for t in tasks}
    overlays.update(dict.fromkeys(markers.incidents, "incident"))
    territory = session.scalar(select(CaseFact.territory).where(CaseFact.instance_id == instance.id))
    return render_template(
        "monitor/case.html", instance=instance, labels=labels, names=names, markers=markers, tasks=tasks,
        timeline=timeline, incidents=incidents, content=content, who=who, now=now, territory=territory,
        overlays=json.dumps(overlays), bundle=_bundle(), actions=present.ACTIONS, status_labels=present.STATUS,
        group_label=lambda g: present.group_label(g, labels),
        retry_form=EmptyForm() if policy.can(user, Permission.INCIDENT_RETRY, instance) else None,
        case_page=policy.can(user, Permission.CASE_READ_CONTENT, instance))


@bp.route("/cases/<int:case_id>/retry", methods=["POST"])
@requires(Permission.MONITOR_READ)
def retry(case_id: int):
    instance = _case(case_id)
    if not policy.can(me(), Permission.INCIDENT_RETRY, instance) or not EmptyForm().validate_on_submit():
        abort(404)
    target = url_for("monitor.case", case_id=case_id)
    if not instance.has_incident:
        flash(_("Dieser Fall hat keine offene Störung."), "info")
        return redirect(target, code=303)
    try:
        instance = database.runtime().retry(instance.id, user=me().username)
    except FallwerkError as exc:
        database.rollback()
        flash(engine_message(exc), "error")
        return redirect(target, code=303)
    if instance.has_incident:
        flash(_("Der Schritt ist erneut fehlgeschlagen; die Störung bleibt bestehen."), "error")
    else:
        flash(_("Der Schritt wurde erneut ausgeführt; die Störung ist behoben."), "success")
    return redirect(target, code=303)


# --- procedures ---------------------------------------------------------------------------------------------
@bp.route("/procedures")
@requires(Permission.MONITOR_READ)
def procedures():
    session = database.session()
    running = dict(session.execute(
        select(ProcessInstance.definition_id, func.count()).where(ProcessInstance.status == "running",
                                                                  case_scope(session, me()))
        .group_by(ProcessInstance.definition_id)).all())
    definitions = session.scalars(select(ProcessDefinition).order_by(ProcessDefinition.name,
                                                                     ProcessDefinition.version.desc())).all()
    return render_template("monitor/procedures.html", definitions=definitions, running=running)


def _definition(key: str, version: int) -> ProcessDefinition:
    definition = database.session().scalar(select(ProcessDefinition).where(ProcessDefinition.key == key,
                                                                           ProcessDefinition.version == version))
    if definition is None:
        abort(404)
    return definition


@bp.route("/procedures/<key>/<int:version>")
@requires(Permission.MONITOR_READ)
def procedure(key: str, version: int):
    session = database.session()
    definition = _definition(key, version)
    stats = durations.element_stats(session, me(), definition.id)
    heat = durations.heat(stats)
    names = element_names(definition, specs=database.runtime().specs)
    overlays = {e: {"waiting": s.waiting, "heat": heat.get(e, 0),
                    "mean": present.format_duration(s.mean), "p90": present.format_duration(s.p90)}
                for e, s in stats.items()}
    rows = sorted(stats.values(), key=lambda s: (-(s.mean or 0), -s.waiting, names.get(s.element_id, "")))
    versions = session.scalars(select(ProcessDefinition.version).where(ProcessDefinition.key == key)
                               .order_by(ProcessDefinition.version.desc())).all()
    return render_template("monitor/procedure.html", definition=definition, rows=rows, names=names,
                           overlays=json.dumps(overlays), bundle=_bundle(), versions=versions,
                           duration=present.format_duration)


@bp.route("/procedures/<key>/<int:version>/diagram.bpmn")
@requires(Permission.MONITOR_READ)
def procedure_diagram(key: str, version: int):
    xml = casework.diagram_xml(database.session(), _definition(key, version))
    if xml is None:
        abort(404)
    return Response(xml, mimetype="application/xml")


# --- overdue work -------------------------------------------------------------------------------------------
@bp.route("/overdue")
@requires(Permission.MONITOR_READ)
def overdue_work():
    session, user, now = database.session(), me(), _now()
    unit = (request.args.get("unit") or "").strip()
    only_first = request.args.get("first_contact") == "1"
    everything = overdue.overdue_tasks(session, user, now=now)
    shown = [t for t in everything if (not unit or t.unit == unit) and (not only_first or t.first_contact)]
    labels = load_labels(session)
    rows = []
    loaded = {t.id: t for t in session.scalars(select(Task).where(Task.id.in_([t.task_id for t in shown[:200]])))}
    for item in shown[:200]:
        task = loaded.get(item.task_id)
        colleagues = None  # whom the unit's lead may hand the task to
        if task is not None and policy.can(user, Permission.TASK_HAND_OVER, task) and \
                policy.leads_for(user, task, policy.task_candidates(session, task)):
            colleagues = [(u.username, u.display_name or u.username)
                          for u in casework.colleagues(session, task, user)]
        rows.append((item, colleagues))
    content = {item.instance_id for item, _ in rows
               if policy.can(user, Permission.CASE_READ_CONTENT, session.get(ProcessInstance, item.instance_id))}
    assignees = [item.assignee for item, _ in rows if item.assignee]
    names = casework.display_names(session, assignees)
    roles = case_view.role_of(session, assignees)
    who = {item.task_id: (names.get(item.assignee, item.assignee) if item.instance_id in content or lead is not None
                          else present.role_label(roles.get(item.assignee), labels))
           for item, lead in rows if item.assignee}
    return render_template("monitor/overdue.html", lines=overdue.per_unit(everything), rows=rows, labels=labels,
                           unit=unit, only_first=only_first, now=now, who=who, more=len(shown) > len(rows),
                           total=len(shown))


# --- figures ------------------------------------------------------------------------------------------------
def _figures():
    now = _now()
    args = request.args
    asked = args.get("year", "")
    year = int(asked) if asked.isascii() and asked.isdigit() and 2000 <= int(asked) <= 2100 else local_year(now)
    granularity = args.get("period") if args.get("period") in GRANULARITIES else "quarter"
    metric = args.get("metric") if args.get("metric") in figures.METRICS else "new"
    session = database.session()
    computed = figures.compute_cached(session, year=year, now=now, granularity=granularity, metric=metric)
    return computed, present.present(computed, load_labels(session))


@bp.route("/figures")
@requires(Permission.FIGURES_READ)
def figures_page():
    computed, shown = _figures()
    first = database.session().scalar(select(func.min(ProcessInstance.started_at)))
    years = list(range(local_year(_now()), (local_year(first) if first else local_year(_now())) - 1, -1))
    return render_template("monitor/figures.html", figures=computed, shown=shown, years=years,
                           granularities=present.GRANULARITIES, metrics=present.METRIC_TITLES,
                           monitor=policy.can(me(), Permission.MONITOR_READ))


@bp.route("/figures.csv")
@requires(Permission.FIGURES_READ)
def figures_csv():
    computed, shown = _figures()
    _export_audit("figures.csv", year=computed.year, period=computed.granularity, metric=computed.metric)
    body = exports.csv_bytes(present.csv_rows(shown, year=computed.year, granularity=computed.granularity))
    name = f"kennzahlen-{computed.year}.csv"
    return Response(body, mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
