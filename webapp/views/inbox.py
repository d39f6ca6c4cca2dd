"""The start page: Aufgaben (my tasks, my team's tasks), filters, saved filters."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from engine.models import SavedFilter
from engine.policy import Permission

from .. import database
from ..auth import me, requires
from ..forms import EmptyForm, SavedFilterForm
from ..services import inbox as service

bp = Blueprint("inbox", __name__)


@bp.route("/")
@requires(Permission.INBOX_READ)
def index():
    user, session = me(), database.session()
    f = service.InboxFilter.from_args(request.args)
    page = service.inbox(session, user, f, now=database.clock().now(), after=request.args.get("after"),
                         size=current_app.config["INBOX_PAGE_SIZE"], soon_days=current_app.config["DUE_SOON_DAYS"])
    saved = session.scalars(select(SavedFilter).where(SavedFilter.user_id == user.id).order_by(SavedFilter.name)).all()
    return render_template("inbox.html", f=f, page=page, saved=saved, processes=page.processes,
                           units=service.unit_options(session, user),
                           filter_form=SavedFilterForm(query=f.query_string()), action_form=EmptyForm())


@bp.route("/filters", methods=["POST"])
@requires(Permission.INBOX_READ)
def save_filter():
    user, session = me(), database.session()
    form = SavedFilterForm()
    if not form.validate_on_submit():
        flash(" ".join(str(e) for e in form.name.errors) or _("Der Filter konnte nicht gespeichert werden."), "error")
        return redirect(url_for("inbox.index"), code=303)
    from urllib.parse import parse_qsl

    f = service.InboxFilter.from_args(dict(parse_qsl(form.query.data or "")))
    existing = session.scalar(select(SavedFilter).where(SavedFilter.user_id == user.id,
                                                        SavedFilter.name == form.name.data))
    if existing is None:
        existing = SavedFilter(user_id=user.id, name=form.name.data, created_at=database.clock().now())
        session.add(existing)
    existing.query = f.query_string()
    flash(_("Filter „%(name)s“ gespeichert.", name=existing.name), "success")
    return redirect(url_for("inbox.index", **f.args()), code=303)


@bp.route("/filters/<int:filter_id>/delete", methods=["POST"])
@requires(Permission.INBOX_READ)
def delete_filter(filter_id: int):
    session = database.session()
    row = session.get(SavedFilter, filter_id)
    if row is None or row.user_id != me().id or not EmptyForm().validate_on_submit():
        abort(404)
    session.delete(row)
    flash(_("Filter „%(name)s“ gelöscht.", name=row.name), "success")
    return redirect(url_for("inbox.index"), code=303)
