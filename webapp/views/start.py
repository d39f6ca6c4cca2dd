"""Verfahren starten: the procedures this user may start, each with its start form."""

from __future__ import annotations

import re
import secrets

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from engine import policy
from engine.deploy import latest_definition
from engine.errors import ValidationFailed
from engine.models import ProcessInstance, StartSubmission
from engine.policy import Permission

from .. import database
from ..auth import me, requires
from ..forms import EmptyForm, ProcessForm
from ..services import casework

bp = Blueprint("start", __name__, url_prefix="/procedures")


@bp.route("/")
@requires(Permission.PROCESS_START)
def index():
    return render_template("start/index.html", definitions=policy.startable(database.session(), me()))


def _definition(key: str):
    definition = latest_definition(database.session(), key)
    if definition is None or not policy.can(me(), Permission.PROCESS_START, definition):
        abort(404)
    loaded = database.runtime().specs.get(definition)
    found = casework.start_form(definition, loaded)
    if found is None:
        return definition, None
    element, form = found
    return definition, casework.wtforms_class(definition, form, element, ProcessForm)(context={})


_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


@bp.route("/<key>", methods=["GET", "POST"])
@requires(Permission.PROCESS_START)
def begin(key: str):
    """The start form carries a random token: the same form sent again (a double click, a reload) leads to
    the case it started, even while the first request is still running."""
    definition, form = _definition(key)
    button = EmptyForm()
    token = request.form.get("submission", "")
    token = token if _TOKEN.fullmatch(token) else secrets.token_urlsafe(24)

    def page(status: int = 200):
        return render_template("start/form.html", definition=definition, form=form, button=button,
                               submission=token), status

    if not (form or button).is_submitted():
        return page()
    if (earlier := _started_with(token)) is not None:
        return _already_started(earlier)
    data = {}
    if form is not None:
        if not form.validate():
            return page(422)
        data = form.cleaned_data or {}
    session = database.session()
    try:  # start data defaults are declared in the model (camunda:property default.*), not here
        instance = database.runtime().start(key, user=me().username, data=data)
        session.add(StartSubmission(token=token, username=me().username, instance_id=instance.id,
                                    created_at=database.clock().now()))
        session.flush()  # a concurrent request with the same token waits here for the first to end
    except ValidationFailed:
        database.rollback()
        return page(422)
    except IntegrityError:
        database.rollback()
        earlier = _started_with(token)
        if earlier is None:
            abort(409)
        return _already_started(earlier)
    flash(_("„%(name)s“ gestartet. Fallnummer: %(number)s", name=definition.name, number=instance.case_number),
          "success")
    return redirect(url_for("cases.show", case_id=instance.id), code=303)


def _started_with(token: str) -> ProcessInstance | None:
    return database.session().scalar(
        select(ProcessInstance).join(StartSubmission, StartSubmission.instance_id == ProcessInstance.id)
        .where(StartSubmission.token == token, StartSubmission.username == me().username))


def _already_started(instance: ProcessInstance):
    flash(_("Dieses Formular wurde bereits abgeschickt: der Fall %(number)s ist angelegt.",
            number=instance.case_number), "info")
    return redirect(url_for("cases.show", case_id=instance.id), code=303)
