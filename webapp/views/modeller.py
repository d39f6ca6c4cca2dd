"""Der Modeller (coordinators only): procedures and drafts, the BPMN modeller, check and publish, versions
and their diff, migration of running cases, forms and decision tables. Engine services do the work
(engine.drafts, engine.versions, engine.migration, engine.decisions); the JSON endpoints serve the
modeller page's script."""

from __future__ import annotations

import json
import re

from flask import Blueprint, Response, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.exceptions import RequestEntityTooLarge

from engine import db as enginedb
from engine import decisions, drafts, migration, versions
from engine.deploy import FORM_SUFFIX
from engine.errors import Conflict, FallwerkError, ModelError, NotFound
from engine.forms import check_form, load_form
from engine.models import Draft
from engine.policy import Permission

from .. import database
from .. import modeller_support as support
from ..auth import me, requires
from ..errors import render_error
from ..forms import EmptyForm, ProcessForm

bp = Blueprint("modeller", __name__, url_prefix="/modeller")
EDIT, DEPLOY, MIGRATE = Permission.PROCEDURE_EDIT, Permission.PROCEDURE_DEPLOY, Permission.INSTANCE_MIGRATE
TITLE_LENGTH = Draft.__table__.c.title.type.length
_SURROGATE = re.compile("[\ud800-\udfff]")


def _draft(draft_id: int):
    try:
        return drafts.get_draft(database.session(), draft_id)
    except NotFound:
        abort(404)


def _definition(key: str, version: int):
    definition = versions.get_version(database.session(), key, version)
    if definition is None:
        abort(404)
    return definition


def _body() -> dict:
    """The JSON object the modeller's script posted; {} when the body is not JSON (a plain form post)."""
    if not request.is_json:
        return {}
    try:
        data = json.loads(request.get_data())
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        data = None
    if not isinstance(data, dict):
        abort(_json_error(400, _("Unvollständige Anfrage.")))
    strings = list(_strings(data))
    if any("\x00" in text for text in strings):  # no model or form has one, and PostgreSQL cannot store it
        abort(_json_error(400, _("Die Anfrage enthält ein unzulässiges Zeichen (NUL); nichts wurde gespeichert.")))
    if any(_SURROGATE.search(text) for text in strings):  # JSON may escape half a character; UTF-8 cannot hold it
        abort(_json_error(400, _("Die Anfrage enthält ein Zeichen, das nicht gespeichert werden kann; nichts wurde "
                                 "gespeichert.")))
    return data


def _strings(data):
    """Every string in parsed JSON, keys included."""
    todo = [data]
    while todo:  # not recursive: the parser accepts deeper nesting than a recursive walk would
        item = todo.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            todo += item
            todo += item.values()
        elif isinstance(item, list):
            todo += item


def _json_error(status: int, message: str, **extra) -> Response:
    response = jsonify({"message": message, **extra})
    response.status_code = status
    return response


def _refused(draft_id: int, exc: FallwerkError) -> Response:
    database.rollback()
    status, message, code = support.refusal(_draft(draft_id), exc)
    return _json_error(status, message, code=code)


@bp.errorhandler(RequestEntityTooLarge)
def too_large(exc: RequestEntityTooLarge):
    if request.is_json:
        return _json_error(413, support.too_large_text())
    return render_error(413, support.too_large_text())


# --- procedures and drafts -----------------------------------------------------------------------------
@bp.route("/")
@requires(EDIT)
def index():
    session = database.session()
    return render_template("modeller/index.html", procedures=versions.procedures(session),
                           drafts=drafts.list_drafts(session), button=EmptyForm())


@bp.route("/new", methods=["POST"])
@requires(EDIT)
def new_procedure():
    if not EmptyForm().validate_on_submit():
        abort(400)
    key, name = request.form.get("key", "").strip(), request.form.get("name", "").strip()
    if len(name) > TITLE_LENGTH:
        flash(_("Der Name darf höchstens %(n)d Zeichen lang sein.", n=TITLE_LENGTH), "error")
        return redirect(url_for(".index"), code=303)
    if versions.versions(database.session(), key):
        flash(_("Ein Verfahren mit dem Schlüssel „%(key)s“ gibt es schon.", key=key), "error")
        return redirect(url_for(".index"), code=303)
    try:
        draft = drafts.new_draft(database.session(), user=me().username, now=database.clock().now(), key=key,
                                 name=name or key, title=name)
    except FallwerkError:
        flash(_("Der Schlüssel muss mit einem Buchstaben beginnen und darf nur Buchstaben, Ziffern, „_“, „-“ "
                "und „.“ enthalten."), "error")
        return redirect(url_for(".index"), code=303)
    return redirect(url_for(".edit", draft_id=draft.id), code=303)


@bp.route("/procedures/<key>/drafts", methods=["POST"])
@requires(EDIT)
def new_draft(key: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    version = request.form.get("version", type=int)
    from_draft = request.form.get("from_draft", type=int)
    session = database.session()
    if from_draft is not None and _draft(from_draft).process_key != key:
        abort(404)
    if from_draft is None and not versions.versions(session, key):
        abort(404)
    try:
        draft = drafts.new_draft(session, user=me().username, now=database.clock().now(), key=key, version=version,
                                 from_draft=from_draft)
    except NotFound:
        abort(404)
    return redirect(url_for(".edit", draft_id=draft.id), code=303)


@bp.route("/drafts/<int:draft_id>")
@requires(EDIT)
def edit(draft_id: int):
    draft = _draft(draft_id)
    session = database.session()
    return render_template("modeller/edit.html", draft=draft, button=EmptyForm(),
                           forms=support.draft_forms(session, draft),
                           decisions=support.decision_files(session, draft),
                           warnings=[support.staleness_text(w) for w in drafts.staleness(session, draft)])


@bp.route("/drafts/<int:draft_id>/model.bpmn")
@requires(EDIT)
def draft_xml(draft_id: int):
    return Response(_draft(draft_id).bpmn, mimetype="application/xml")


@bp.route("/drafts/<int:draft_id>/save", methods=["POST"])
@requires(EDIT)
def save(draft_id: int):
    data, draft = _body(), _draft(draft_id)
    if not isinstance(data.get("bpmn"), str) or not isinstance(data.get("revision"), int):
        return _json_error(400, _("Unvollständige Anfrage."))
    try:
        saved = drafts.save_draft(database.session(), draft.id, bpmn=data["bpmn"], revision=data["revision"],
                                  user=me().username, now=database.clock().now(),
                                  overwrite=data.get("overwrite") is True)
    except FallwerkError as exc:
        return _refused(draft_id, exc)
    return jsonify({"revision": saved.draft.revision, "warnings": support.warnings_payload(saved.warnings)})


@bp.route("/drafts/<int:draft_id>/check", methods=["POST"])
@requires(EDIT)
def check(draft_id: int):
    draft = _draft(draft_id)
    result = drafts.check_draft(database.session(), draft)
    return jsonify({"ok": result.ok, "summary": support.summary(result.findings),
                    "findings": support.findings_payload(draft, result.findings)})


@bp.route("/drafts/<int:draft_id>/deploy", methods=["POST"])
@requires(DEPLOY)
def deploy(draft_id: int):
    data, draft = _body(), _draft(draft_id)
    revision = data.get("revision") if isinstance(data.get("revision"), int) else None
    try:
        outcome = drafts.deploy_draft(database.session(), draft.id, user=me().username, now=database.clock().now(),
                                      revision=revision, force=data.get("force") is True)
    except ModelError as exc:
        return _json_error(422, support.summary(exc.findings) + " " + _("Nichts wurde veröffentlicht."),
                           findings=support.findings_payload(draft, exc.findings))
    except FallwerkError as exc:
        if type(exc) is Conflict:  # closed, or a newer version was published since the draft was started
            database.rollback()
            current = _draft(draft_id)
            newer = [w for w in drafts.staleness(database.session(), current) if w.code == "newer_version"]
            if current.status == "open" and newer:
                return _json_error(409, support.staleness_text(newer[0]), code="newer_version")
        return _refused(draft_id, exc)
    created = [{"key": d.key, "version": d.version, "name": d.name} for d in outcome.created]
    next_url = url_for(".procedure", key=outcome.created[0].key) if outcome.created else None
    if created:
        flash(_("Veröffentlicht: %(what)s.", what=", ".join(f"{d['name']} – Version {d['version']}"
                                                             for d in created)), "success")
    return jsonify({"created": created, "unchanged": [{"key": d.key, "version": d.version} for d in outcome.unchanged],
                    "findings": support.findings_payload(draft, outcome.findings), "next": next_url})


@bp.route("/drafts/<int:draft_id>/discard", methods=["POST"])
@requires(EDIT)
def discard(draft_id: int):
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        drafts.discard_draft(database.session(), _draft(draft_id).id, user=me().username, now=database.clock().now())
    except Conflict:
        abort(409)
    flash(_("Der Entwurf wurde verworfen."), "info")
    return redirect(url_for(".index"), code=303)


@bp.route("/groups.json")
@requires(EDIT)
def groups():
    return jsonify(support.candidate_groups(database.session()))


# --- versions, diff, migration -------------------------------------------------------------------------
@bp.route("/procedures/<key>")
@requires(EDIT)
def procedure(key: str):
    session = database.session()
    rows = versions.versions(session, key)
    if not rows:
        abort(404)
    return render_template("modeller/versions.html", key=key, rows=rows, drafts=drafts.list_drafts(session, key),
                           button=EmptyForm())


@bp.route("/procedures/<key>/versions/<int:version>/model.bpmn")
@requires(EDIT)
def version_xml(key: str, version: int):
    xml = drafts.version_xml(database.session(), _definition(key, version))
    if xml is None:
        abort(404)
    return Response(xml, mimetype="application/xml")


def _pair(key: str):
    old, new = request.args.get("from", type=int), request.args.get("to", type=int)
    if old is None or new is None:
        rows = versions.versions(database.session(), key)
        if len(rows) < 2:
            abort(404)
        old, new = rows[1].definition.version, rows[0].definition.version
    return _definition(key, old), _definition(key, new)


@bp.route("/procedures/<key>/diff")
@requires(EDIT)
def diff(key: str):
    old, new = _pair(key)
    session = database.session()
    result = versions.diff_models(drafts.version_xml(session, old) or "", drafts.version_xml(session, new) or "")
    return render_template("modeller/diff.html", key=key, old=old, new=new, diff=result, diff_data=result.to_dict())


@bp.route("/procedures/<key>/migrate")
@requires(MIGRATE)
def migrate_plan(key: str):
    old, new = _pair(key)
    if old.version == new.version:
        abort(400)
    plan = migration.plan_migration(database.session(), key, old.version, new.version, clock=database.clock())
    return render_template("modeller/migrate.html", key=key, old=old, new=new, plan=plan, button=EmptyForm(),
                           names=support.element_names(drafts.version_xml(database.session(), old) or ""))


@bp.route("/procedures/<key>/migrate", methods=["POST"])
@requires(MIGRATE)
def migrate(key: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    old, new = _definition(key, request.form.get("from", type=int) or 0), \
        _definition(key, request.form.get("to", type=int) or 0)
    if old.version == new.version:
        abort(400)
    only = [int(i) for i in request.form.getlist("instance") if i.isdigit()] or None
    database.session().commit()  # nothing written yet; frees SQLite's lock for the per-instance transactions
    factory = current_app.extensions["fallwerk.sessions"]
    report = migration.migrate_instances(lambda: enginedb.transaction(factory), key, old.version, new.version,
                                         user=me().username, clock=database.clock(), only=only)
    return render_template("modeller/migrated.html", key=key, old=old, new=new, report=report)


# --- forms and decision tables -------------------------------------------------------------------------
def _form_id(form_id: str) -> str:
    if not drafts._FILE.match(f"{form_id}{FORM_SUFFIX}"):
        abort(404)
    return form_id


@bp.route("/drafts/<int:draft_id>/forms/<form_id>")
@requires(EDIT)
def form_editor(draft_id: int, form_id: str):
    draft = _draft(draft_id)
    schema = support.form_schema(database.session(), draft, _form_id(form_id))
    return render_template("modeller/form.html", draft=draft, form_id=form_id, schema=schema)


@bp.route("/drafts/<int:draft_id>/forms/<form_id>/save", methods=["POST"])
@requires(EDIT)
def save_form(draft_id: int, form_id: str):
    data, draft = _body(), _draft(draft_id)
    if not isinstance(data.get("form"), dict) or not isinstance(data.get("revision"), int):
        return _json_error(400, _("Unvollständige Anfrage."))
    schema = {**data["form"], "id": _form_id(form_id)}
    content = json.dumps(schema, ensure_ascii=False, indent=2)
    files = {**drafts.draft_files(draft), f"{form_id}{FORM_SUFFIX}": content}
    try:
        saved = drafts.save_draft(database.session(), draft.id, bpmn=draft.bpmn, files=files,
                                  revision=data["revision"], user=me().username, now=database.clock().now(),
                                  overwrite=data.get("overwrite") is True)
    except FallwerkError as exc:
        return _refused(draft_id, exc)
    findings = check_form(content.encode(), file=f"{form_id}{FORM_SUFFIX}")
    return jsonify({"revision": saved.draft.revision, "ok": not any(f.severity == "error" for f in findings),
                    "summary": support.summary(findings), "findings": [f.to_dict() for f in findings]})


@bp.route("/drafts/<int:draft_id>/forms/<form_id>/preview", methods=["GET", "POST"])
@requires(EDIT)
def form_preview(draft_id: int, form_id: str):
    draft = _draft(draft_id)
    schema = support.form_schema(database.session(), draft, _form_id(form_id))
    try:
        definition = load_form(schema)
    except FallwerkError as exc:
        return render_template("modeller/preview.html", draft=draft, form_id=form_id, form=None, problem=str(exc))
    form = definition.wtforms_class(base=ProcessForm)(context={})
    valid = form.validate() if request.method == "POST" else None
    return render_template("modeller/preview.html", draft=draft, form_id=form_id, form=form, valid=valid,
                           problem=None), (422 if valid is False else 200)


@bp.route("/drafts/<int:draft_id>/decisions/<name>", methods=["GET", "POST"])
@requires(EDIT)
def decision(draft_id: int, name: str):
    draft = _draft(draft_id)
    files = support.decision_files(database.session(), draft)
    if name not in files:
        abort(404)
    table = decisions.read_table(files[name])
    errors, status = [], 422
    if request.method == "POST":
        if not EmptyForm().validate_on_submit():
            abort(400)
        table, errors = _table_from_form(table, files[name])
        revision = request.form.get("revision", type=int)
        if not errors and revision is None:
            abort(400)
        if not errors:
            try:
                xml = decisions.write_table(files[name], table)
                drafts.save_draft(database.session(), draft.id, bpmn=draft.bpmn,
                                  files={**drafts.draft_files(draft), name: xml}, revision=revision,
                                  user=me().username, now=database.clock().now())
            except FallwerkError as exc:
                database.rollback()
                status, message, _code = support.refusal(_draft(draft_id), exc)
                errors.append(message)
        if not errors:
            flash(_("Die Entscheidungstabelle wurde im Entwurf gespeichert."), "success")
            return redirect(url_for(".decision", draft_id=draft.id, name=name), code=303)
    return render_template("modeller/decision.html", draft=_draft(draft_id), name=name, table=table,
                           errors=errors, button=EmptyForm()), (status if errors else 200)


def _table_from_form(table: decisions.DecisionTable, xml: str):
    """Rules from the posted rows (`rule-N-id`, `rule-N-in-I`, `rule-N-out-J`, `rule-N-description`,
    `rule-N-delete`); an extra empty row adds a rule."""
    rules, rows, errors = [], [], []
    count = request.form.get("rows", type=int)
    if count is None or count < 1:  # the page always sends its rows and the empty one
        return table, [_("Die Tabelle kam unvollständig an. Bitte laden Sie die Seite neu.")]
    for n in range(min(count, 500)):
        if request.form.get(f"rule-{n}-delete"):
            continue
        inputs = [request.form.get(f"rule-{n}-in-{i}", "") for i in range(len(table.inputs))]
        outputs = [request.form.get(f"rule-{n}-out-{j}", "") for j in range(len(table.outputs))]
        rule_id = request.form.get(f"rule-{n}-id", "")
        if not rule_id and not any(c.strip() for c in inputs + outputs):
            continue  # the empty row for a new rule
        if not all(c.strip() for c in outputs):
            errors.append(_("Zeile %(n)d: Bitte geben Sie ein Ergebnis an.", n=n + 1))
        rules.append(decisions.Rule(rule_id, inputs, outputs, request.form.get(f"rule-{n}-description", "")))
        rows.append(n + 1)
    table.rules = rules
    for index, problem in decisions.rule_problems(xml, table):
        errors.append(_rule_problem_text(problem, rows[index], rules[index].id))
    return table, errors


def _rule_problem_text(problem: str, n: int, rule_id: str) -> str:
    if problem == "character":
        return _("Zeile %(n)d enthält ein Steuerzeichen, das nicht gespeichert werden kann.", n=n)
    if problem == "id":
        return _("Zeile %(n)d: „%(id)s“ ist keine gültige Regel-ID (ein Buchstabe oder „_“, dann Buchstaben, "
                 "Ziffern, „_“, „-“ oder „.“).", n=n, id=rule_id)
    return _("Zeile %(n)d: Die Regel-ID „%(id)s“ gibt es in der Datei schon.", n=n, id=rule_id)
