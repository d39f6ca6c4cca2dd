"""A case (Fall): status, current step, history, answers, comments, attachments, diagram, actions."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_required

from engine import policy
from engine.errors import FallwerkError
from engine.models import CaseAttachment, Unit
from engine.policy import Permission
from engine.reporting.labels import element_names

from .. import database
from ..auth import me
from ..errors import engine_message
from ..forms import AttachmentForm, CancelForm, CommentForm, EscalationForm
from ..services import casefiles, casework

bp = Blueprint("cases", __name__, url_prefix="/cases")


def _load(case_id: int, permission: Permission = Permission.CASE_READ):
    return policy.load_case(database.session(), me(), case_id, permission)


def _page(instance, *, status: int = 200, comment_form=None, attachment_form=None, cancel_form=None,
          escalation_form=None):
    user, session, runtime = me(), database.session(), database.runtime()
    can = lambda permission: policy.can(user, permission, instance)  # noqa: E731
    workflow = runtime.load_workflow(instance)
    names = element_names(instance.definition, specs=runtime.specs)
    done, active = casework.markers(instance, workflow)
    open_tasks = casework.open_tasks(session, instance.id)
    content, personal = can(Permission.CASE_READ_CONTENT), can(Permission.CASE_READ_PERSONAL)
    escalation = (can(Permission.CASE_ESCALATE) and casework.waits_for_message(workflow, casework.ESCALATION_MESSAGE)
                  and not casework.escalation_open(workflow))
    history = casework.history(session, instance, names) if content else []
    return render_template(
        "case.html", instance=instance, names=names, done=done, active=active, open_tasks=open_tasks,
        steps=casework.completed_steps(session, runtime, instance, workflow, include_personal=personal)
        if content else [],
        history=history, content=content, personal=personal,
        people=casework.display_names(session, [e.actor for e in history] + [t.assignee for t in open_tasks]),
        comments=casefiles.comments(session, instance) if personal else [],
        attachments=casefiles.attachments(session, instance) if personal else [],
        comment_form=comment_form or (CommentForm() if can(Permission.CASE_COMMENT) else None),
        attachment_form=attachment_form or (AttachmentForm() if can(Permission.CASE_ATTACH) else None),
        cancel_form=cancel_form or (CancelForm() if can(Permission.CASE_CANCEL) else None),
        escalation_form=escalation_form or (EscalationForm() if escalation else None),
        workable={t.id for t in open_tasks if policy.can(user, Permission.TASK_WORK, t)},
        unit=session.get(Unit, instance.responsible_unit) if instance.responsible_unit else None,
    ), status


@bp.route("/<int:case_id>")
@login_required
def show(case_id: int):
    instance = _load(case_id)
    if policy.can(me(), Permission.CASE_READ_PERSONAL, instance):
        from engine import audit

        # who read a case's personal data is part of the audit trail (not shown in its history)
        audit.record(database.session(), at=database.clock().now(), actor=me().username, action="read",
                     instance_id=instance.id)
    return _page(instance)


@bp.route("/<int:case_id>/diagram.bpmn")
@login_required
def diagram(case_id: int):
    instance = _load(case_id)
    xml = casework.diagram_xml(database.session(), instance.definition)
    if xml is None:
        abort(404)
    return Response(xml, mimetype="application/xml")


@bp.route("/<int:case_id>/comments", methods=["POST"])
@login_required
def comment(case_id: int):
    instance = _load(case_id, Permission.CASE_COMMENT)
    form = CommentForm()
    if not form.validate_on_submit():
        return _page(instance, status=422, comment_form=form)
    casefiles.add_comment(database.session(), instance, author=me().username, body=form.body.data,
                          now=database.clock().now())
    flash(_("Kommentar gespeichert."), "success")
    return redirect(url_for("cases.show", case_id=case_id, _anchor="kommentare"), code=303)


UPLOAD_PROBLEMS = {
    "type": _l("Dieser Dateityp ist nicht erlaubt. Erlaubt sind PDF, PNG, JPEG, DOCX, ODT und TXT."),
    "content": _l("Der Inhalt der Datei passt nicht zu ihrer Endung."),
    "size": _l("Die Datei ist zu groß. Erlaubt sind höchstens 10 MB."),
    "empty": _l("Die Datei ist leer."),
}


@bp.route("/<int:case_id>/attachments", methods=["POST"])
@login_required
def upload(case_id: int):
    instance = _load(case_id, Permission.CASE_ATTACH)
    form = AttachmentForm()
    status = 422
    if form.validate_on_submit():
        upload = form.file.data
        try:
            casefiles.store_attachment(
                database.session(), instance, stream=upload.stream, filename=upload.filename or "",
                folder=Path(current_app.config["UPLOAD_FOLDER"]), uploaded_by=me().username,
                now=database.clock().now(), max_size=current_app.config["MAX_ATTACHMENT_SIZE"])
        except casefiles.Rejected as exc:
            form.file.errors = [str(UPLOAD_PROBLEMS[exc.reason])]
            status = 413 if exc.reason == "size" else 422
        else:
            flash(_("Datei hochgeladen."), "success")
            return redirect(url_for("cases.show", case_id=case_id, _anchor="anhaenge"), code=303)
    return _page(instance, status=status, attachment_form=form)


@bp.route("/<int:case_id>/attachments/<int:attachment_id>")
@login_required
def download(case_id: int, attachment_id: int):
    instance = _load(case_id, Permission.CASE_READ_PERSONAL)
    session = database.session()
    row = session.get(CaseAttachment, attachment_id)
    if row is None or row.instance_id != instance.id:
        abort(404)
    path = casefiles.attachment_path(row, Path(current_app.config["UPLOAD_FOLDER"]))
    if not path.is_file():
        abort(404)
    from engine import audit

    audit.record(session, at=database.clock().now(), actor=me().username, action="download",
                 instance_id=instance.id, attachment=row.id)
    response = send_file(path, as_attachment=True, download_name=row.filename, max_age=0, etag=False,
                         conditional=False)
    response.headers["Content-Type"] = row.content_type  # as stored (send_file would add a second charset)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/<int:case_id>/cancel", methods=["POST"])
@login_required
def cancel(case_id: int):
    instance = _load(case_id, Permission.CASE_CANCEL)
    form = CancelForm()
    if not form.validate_on_submit():
        return _page(instance, status=422, cancel_form=form)
    try:
        database.runtime().cancel(instance.id, user=me().username, reason=form.reason.data)
    except FallwerkError as exc:
        database.rollback()
        flash(engine_message(exc), "error")
        return redirect(url_for("cases.show", case_id=case_id), code=303)
    flash(_("Der Fall wurde abgebrochen."), "success")
    return redirect(url_for("cases.show", case_id=case_id), code=303)


@bp.route("/<int:case_id>/escalate", methods=["POST"])
@login_required
def escalate(case_id: int):
    instance = _load(case_id, Permission.CASE_ESCALATE)
    form = EscalationForm()
    if not form.validate_on_submit():
        return _page(instance, status=422, escalation_form=form)
    try:
        database.runtime().send_message(
            instance.id, casework.ESCALATION_MESSAGE, user=me().username,
            payload={"escalation_kind": form.kind.data, "escalation_reason": form.reason.data},
            precondition=casework.refuse_a_second_escalation)
    except casework.EscalationOpen:  # a second click, or a colleague was quicker
        database.rollback()
        flash(_("Für diesen Fall ist bereits eine Anfrage auf Unterstützung offen."), "info")
        return redirect(url_for("cases.show", case_id=case_id), code=303)
    except FallwerkError as exc:
        database.rollback()
        flash(_("Für diesen Fall kann gerade keine Unterstützung angefordert werden.") if exc.code == "error"
              else engine_message(exc), "error")
        return redirect(url_for("cases.show", case_id=case_id), code=303)
    flash(_("Unterstützung beim landesweiten Beratungsnetzwerk angefordert."), "success")
    return redirect(url_for("cases.show", case_id=case_id), code=303)
