"""Sign-in, sign-out, the account page (password, language)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import login_required, login_user, logout_user

from engine.identity import hash_password
from engine.policy import Permission

from .. import database
from ..auth import SignedIn, authenticate, is_locked, me, password_matches, requires
from ..forms import EmptyForm, LanguageForm, LoginForm, PasswordChangeForm
from . import safe_next

bp = Blueprint("auth", __name__)

@bp.route("/login", methods=["GET", "POST"])
def login():
    if me() is not None:
        return redirect(url_for("inbox.index"))
    form = LoginForm(next=request.args.get("next", ""))
    status = 200
    if form.validate_on_submit():
        user = authenticate(form.username.data, form.password.data)
        if user is not None:
            target = safe_next(form.next.data, url_for("inbox.index"))
            session.clear()
            login_user(SignedIn(user))
            session.permanent = True
            return redirect(target, code=303)
        # one message for an unknown user, a wrong password and a locked account
        form.password.errors.append(_("Anmeldung fehlgeschlagen. Benutzername oder Passwort sind falsch, oder das "
                                      "Konto ist nach mehreren Fehlversuchen für 15 Minuten gesperrt."))
        status = 401
    elif request.method == "POST":
        status = 422
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    logout_user()
    session.clear()
    flash(_("Sie haben sich abgemeldet."), "success")
    return redirect(url_for("auth.login"), code=303)


@bp.route("/account")
@requires(Permission.ACCOUNT_EDIT)
def account():
    user = me()
    return render_template("auth/account.html", password_form=PasswordChangeForm(username=user.username),
                           language_form=LanguageForm(locale=user.locale), logout_form=EmptyForm())


@bp.route("/account/password", methods=["POST"])
@requires(Permission.ACCOUNT_EDIT)
def change_password():
    user = me()
    form = PasswordChangeForm(username=user.username)
    if form.validate_on_submit():
        if password_matches(user, form.current.data):
            user.password_hash = hash_password(form.new.data)
            database.session().flush()
            login_user(SignedIn(user))  # the session id carries the password's fingerprint
            flash(_("Ihr Passwort wurde geändert."), "success")
            return redirect(url_for("auth.account"), code=303)
        if is_locked(user):
            logout_user()
            flash(_("Zu viele falsche Versuche: Ihr Konto ist für 15 Minuten gesperrt."), "error")
            return redirect(url_for("auth.login"), code=303)
        form.current.errors.append(_("Das aktuelle Passwort ist nicht richtig."))
    return render_template("auth/account.html", password_form=form, language_form=LanguageForm(locale=user.locale),
                           logout_form=EmptyForm()), 422


@bp.route("/account/language", methods=["POST"])
@requires(Permission.ACCOUNT_EDIT)
def change_language():
    user = me()
    form = LanguageForm()
    if form.validate_on_submit():
        user.locale = form.locale.data
        database.session().flush()
        from flask_babel import refresh

        refresh()
        flash(_("Die Sprache wurde geändert."), "success")
        return redirect(url_for("auth.account"), code=303)
    return render_template("auth/account.html", password_form=PasswordChangeForm(username=user.username),
                           language_form=form, logout_form=EmptyForm()), 422
