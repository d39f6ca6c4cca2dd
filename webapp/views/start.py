"""Verfahren starten: the procedures this user may start, each with its start form."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _

from engine import policy
from engine.deploy import latest_definition
from engine.errors import ValidationFailed
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


@bp.route("/<key>", methods=["GET", "POST"])
@requires(Permission.PROCESS_START)
def begin(key: str):
    definition, form = _definition(key)
    button = EmptyForm()
    if not (form or button).is_submitted():
        return render_template("start/form.html", definition=definition, form=form, button=button)
    data = {}
    if form is not None:
        if not form.validate():
            return render_template("start/form.html", definition=definition, form=form, button=button), 422
        data = form.cleaned_data or {}
    try:  # start data defaults are declared in the model (camunda:property default.*), not here
        instance = database.runtime().start(key, user=me().username, data=data)
    except ValidationFailed:
        database.rollback()
        return render_template("start/form.html", definition=definition, form=form, button=button), 422
    flash(_("„%(name)s“ gestartet. Fallnummer: %(number)s", name=definition.name, number=instance.case_number),
          "success")
    return redirect(url_for("cases.show", case_id=instance.id), code=303)
