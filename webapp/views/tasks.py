"""A task: its form with the case context; save a draft, complete; claim, release, hand over."""

from __future__ import annotations

import json

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required

from engine import policy
from engine.errors import FallwerkError, PermissionDenied, StaleTask, ValidationFailed
from engine.forms import deep_merge
from engine.forms.wtf import field_name
from engine.policy import Permission
from engine.runtime import DraftTooLarge

from .. import database
from ..auth import me
from ..errors import engine_message, stale_reason
from ..forms import ProcessForm
from ..services import casework
from . import safe_next

bp = Blueprint("tasks", __name__, url_prefix="/tasks")
#: task forms carry the page's token (the csrf() macro) and CSRFProtect checks every post before the view:
#: a token field of their own would only be signed, never rendered or checked
NO_CSRF_FIELD = {"csrf": False}


def _load(task_id: str, permission: Permission = Permission.TASK_READ):
    return casework.load_task(database.session(), me(), task_id, permission)


def _context(task_id: str) -> casework.TaskContext:
    return casework.task_page(database.session(), database.runtime(), me(), task_id)


def _form(ctx: casework.TaskContext, *, draft: dict | None = None):
    if ctx.form is None:
        return None
    cls = casework.wtforms_class(ctx.instance.definition, ctx.form, ctx.task.element_id, ProcessForm)
    context = deep_merge(ctx.data, draft) if draft else ctx.data
    return cls(context=context, meta=NO_CSRF_FIELD)


def _apply_errors(form, exc: ValidationFailed) -> None:
    for key, messages in exc.errors.items():
        name = field_name(key)
        if name in form:
            form[name].errors = list(messages)
        else:
            form.form_errors.append(" ".join(messages))


def _page(ctx: casework.TaskContext, form, *, status: int = 200, problem: str | None = None, draft: bool = False,
          kept: bool = False):
    user, session = me(), database.session()
    task, instance = ctx.task, ctx.instance
    runtime = database.runtime()
    personal = policy.can(user, Permission.CASE_READ_PERSONAL, instance)
    steps = casework.completed_steps(session, runtime, instance, ctx.workflow, include_personal=personal,
                                     tasks=ctx.tasks)
    done, active = casework.markers(instance, ctx.workflow)
    hand_over, people = None, [user]
    if policy.can(user, Permission.TASK_HAND_OVER, task):  # whom it can be handed to: (user name, name shown)
        people += casework.colleagues(session, task, user)
        hand_over = [(u.username, u.display_name or u.username) for u in people[1:]]
    return render_template(
        "task.html", task=task, instance=instance, form=form, steps=steps, problem=problem, draft=draft,
        may_work=policy.can(user, Permission.TASK_WORK, task) and problem is None,
        case_visible=policy.can(user, Permission.CASE_READ, instance), done=done, kept=kept,
        active=[task.element_id] if task.state == "open" else active, hand_over=hand_over,
        names=casework.display_names(session, [task.assignee, task.completed_by], known=people),
        now=database.clock().now()), status


@bp.route("/<task_id>")
@login_required
def show(task_id: str):
    ctx = _context(task_id)
    task = ctx.task
    draft = json.loads(task.draft_json) if task.draft_json and task.state == "open" else None
    problem = None
    if task.state != "open" or task.assignee not in (None, me().username):
        problem = stale_reason(task, me().username)
    return _page(ctx, _form(ctx, draft=draft), problem=problem, draft=bool(draft), status=200)


@bp.route("/<task_id>", methods=["POST"])
@login_required
def submit(task_id: str):
    user, session, runtime = me(), database.session(), database.runtime()
    action = request.form.get("action", "complete")
    if action != "complete":
        return _work_on(task_id, action)

    def submitted(task, version) -> dict:
        """The posted values, parsed against the task's form; asked under the completion's lock."""
        if not policy.can(user, Permission.TASK_WORK, task):
            raise PermissionDenied(f"{user.username} may not work on task {task.id}")
        form_definition = casework.element_form(runtime, version, task.element_id)
        if form_definition is None:
            return {}
        cls = casework.wtforms_class(version, form_definition, task.element_id, ProcessForm)
        return cls(context={}, meta=NO_CSRF_FIELD).submitted_values()

    try:
        instance = runtime.complete(task_id, user=user.username, data=submitted)
    except ValidationFailed as exc:
        return _again(task_id, errors=exc)
    except (StaleTask, PermissionDenied):  # the page says why, or answers 404 to whom may not see the task
        return _again(task_id, stale=True)
    flash(_("Aufgabe erledigt."), "success")
    following = casework.next_task(session, user, instance.id, opened=runtime.tasks_opened(instance.id))
    if following is not None:
        return redirect(url_for("tasks.show", task_id=following.id), code=303)
    return redirect(url_for("inbox.index"), code=303)


def _work_on(task_id: str, action: str):
    """A post that is not a completion: action "draft" saves the values entered, "refresh" (and anything
    else) shows the form again with fields shown or hidden for them."""
    user, runtime = me(), database.runtime()
    ctx = _context(task_id)
    task = ctx.task
    if not policy.can(user, Permission.TASK_WORK, task):
        return _again(task_id, stale=True)
    form = _form(ctx)
    if action == "draft" and form is not None:
        try:
            runtime.save_draft(task.id, user=user.username, data=form.draft_values())
        except (StaleTask, PermissionDenied):
            return _again(task_id, stale=True)
        except DraftTooLarge:
            database.rollback()
            flash(_("Der Entwurf ist zu lang, um ihn zu speichern. Bitte kürzen Sie die Eingaben; nichts wurde "
                    "gespeichert."), "error")
            return _page(ctx, form, status=422)
        flash(_("Entwurf gespeichert."), "success")
        return redirect(url_for("tasks.show", task_id=task.id), code=303)
    return _page(ctx, form)  # "refresh": show or hide fields for the values entered so far


def _again(task_id: str, *, errors: ValidationFailed | None = None, stale: bool = False):
    """The page again, with what was entered: after invalid input (422) or a stale task (409)."""
    database.rollback()
    ctx = _context(task_id)
    task = ctx.task
    form = _form(ctx)
    if errors is not None:
        if form is not None:
            _apply_errors(form, errors)
        return _page(ctx, form, status=422, kept=True)
    return _page(ctx, form, status=409, problem=stale_reason(task, me().username), kept=True)


def _action(task_id: str, permission: Permission, act, done_message: str):
    user = me()
    task = _load(task_id)
    target = safe_next(request.form.get("next"), url_for("tasks.show", task_id=task.id))
    if not policy.can(user, permission, task):
        blocked = task.state != "open" or task.assignee not in (None, user.username)
        flash(stale_reason(task, user.username) if blocked else _("Das ist bei dieser Aufgabe nicht möglich."),
              "error")
        return redirect(target, code=303)
    try:
        act(task)
    except FallwerkError as exc:
        database.rollback()
        flash(engine_message(exc), "error")
        return redirect(target, code=303)
    flash(done_message, "success")
    return redirect(target, code=303)


@bp.route("/<task_id>/claim", methods=["POST"])
@login_required
def claim(task_id: str):
    return _action(task_id, Permission.TASK_CLAIM,
                   lambda t: database.runtime().claim(t.id, user=me().username), _("Aufgabe übernommen."))


@bp.route("/<task_id>/release", methods=["POST"])
@login_required
def release(task_id: str):
    return _action(task_id, Permission.TASK_RELEASE,
                   lambda t: database.runtime().unclaim(t.id, user=me().username), _("Aufgabe freigegeben."))


@bp.route("/<task_id>/hand-over", methods=["POST"])
@login_required
def hand_over(task_id: str):
    assignee = (request.form.get("assignee") or "").strip()

    def act(task):
        if not assignee:
            raise ValidationFailed("no assignee")
        names = {u.username for u in casework.colleagues(database.session(), task, me())}
        if assignee not in names:
            raise PermissionDenied(f"{assignee} is not a candidate")
        database.runtime().assign(task.id, assignee=assignee, user=me().username)

    return _action(task_id, Permission.TASK_HAND_OVER, act, _("Aufgabe weitergegeben."))
