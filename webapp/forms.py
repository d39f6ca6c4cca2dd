"""The app's own forms (sign-in, account, comments, uploads, case actions). Form definitions of
tasks come from the engine (engine.forms)."""

from __future__ import annotations

import functools

from babel import support
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import HiddenField, PasswordField, RadioField, StringField, TextAreaField
from wtforms.i18n import messages_path
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from .i18n import translations

MIN_PASSWORD = 10


def choices(pairs) -> list:
    """WTForms choices from (value, label) pairs: `SelectChoice` where WTForms has it (3.3+)."""
    from wtforms import fields

    select_choice = getattr(fields, "SelectChoice", None)
    return [select_choice(value, label) for value, label in pairs] if select_choice else list(pairs)


@functools.cache
def _wtforms_catalogue(locale: str) -> support.Translations:
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


class AppForm(FlaskForm):
    """Base of the app's own forms: WTForms' messages in the user's language, from a catalogue read once per
    language (Flask-WTF reads it from disk again in every request that builds a form)."""

    class Meta(FlaskForm.Meta):
        def get_translations(self, form):
            return _wtforms_catalogue(str(get_locale() or "de"))


class ProcessForm(FlaskForm):
    """Base of the forms the engine builds from form definitions (`casework.wtforms_class`): their texts
    that come from the engine (the blank choice) are translated with the app's catalogue (the request's,
    as `i18n.translations` keeps it)."""

    class Meta(FlaskForm.Meta):
        def get_translations(self, form):
            return translations()


class LoginForm(AppForm):
    username = StringField(_l("Benutzername"),
                           validators=[DataRequired(_l("Bitte geben Sie Ihren Benutzernamen ein."))],
                           render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"})
    password = PasswordField(_l("Passwort"), validators=[DataRequired(_l("Bitte geben Sie Ihr Passwort ein."))],
                             render_kw={"autocomplete": "current-password"})
    next = HiddenField()


class PasswordChangeForm(AppForm):
    current = PasswordField(_l("Aktuelles Passwort"), validators=[DataRequired(_l("Bitte geben Sie Ihr aktuelles "
                                                                                   "Passwort ein."))],
                            render_kw={"autocomplete": "current-password"})
    new = PasswordField(_l("Neues Passwort"), description=_l("Mindestens 10 Zeichen, nicht Ihr Benutzername."),
                        validators=[DataRequired(_l("Bitte geben Sie ein neues Passwort ein.")),
                                    Length(min=MIN_PASSWORD,
                                           message=_l("Das neue Passwort muss mindestens 10 Zeichen lang sein.")),
                                    Length(max=200, message=_l("Das neue Passwort darf höchstens 200 Zeichen "
                                                               "lang sein."))],
                        render_kw={"autocomplete": "new-password"})
    repeat = PasswordField(_l("Neues Passwort wiederholen"),
                           validators=[EqualTo("new", _l("Die beiden neuen Passwörter stimmen nicht überein."))],
                           render_kw={"autocomplete": "new-password"})

    def __init__(self, *args, username: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.username = username

    def validate_new(self, field):
        if field.data and field.data.strip().lower() == self.username.lower():
            raise ValidationError(_l("Das neue Passwort darf nicht Ihr Benutzername sein."))


class LanguageForm(AppForm):
    locale = RadioField(_l("Sprache der Oberfläche"), choices=choices([("de", "Deutsch"), ("en", "English")]),
                        validators=[DataRequired(_l("Bitte wählen Sie eine Sprache."))])


def strip(value):
    """What a person typed, without the spaces around it (which would count towards a minimum length)."""
    return value.strip() if isinstance(value, str) else value


class CommentForm(AppForm):
    body = TextAreaField(_l("Kommentar"), filters=[strip], validators=[
        DataRequired(_l("Bitte schreiben Sie einen Kommentar.")),
        Length(max=5000, message=_l("Ein Kommentar darf höchstens 5.000 Zeichen lang sein."))])


class AttachmentForm(AppForm):
    file = FileField(_l("Datei"), description=_l("PDF, PNG, JPEG, DOCX, ODT oder TXT, höchstens 10 MB."),
                     validators=[FileRequired(_l("Bitte wählen Sie eine Datei aus."))])


class CancelForm(AppForm):
    reason = TextAreaField(_l("Begründung"), filters=[strip], validators=[
        DataRequired(_l("Bitte begründen Sie den Abbruch.")),
        Length(min=5, max=2000, message=_l("Die Begründung muss zwischen 5 und 2.000 Zeichen lang sein."))])


class EscalationForm(AppForm):
    kind = RadioField(_l("Art der Unterstützung"), choices=choices([
        ("support", _l("Unterstützung durch das landesweite Beratungsnetzwerk")),
        ("statewide", _l("Fall von landesweiter Bedeutung"))]),
        validators=[DataRequired(_l("Bitte wählen Sie die Art der Unterstützung."))])
    reason = TextAreaField(_l("Begründung"), filters=[strip], validators=[
        DataRequired(_l("Bitte begründen Sie die Anfrage.")),
        Length(max=2000, message=_l("Die Begründung darf höchstens 2.000 Zeichen lang sein."))])


class SavedFilterForm(AppForm):
    name = StringField(_l("Name des Filters"), filters=[strip], validators=[
        DataRequired(_l("Bitte geben Sie dem Filter einen Namen.")),
        Length(max=80, message=_l("Der Name darf höchstens 80 Zeichen lang sein."))])
    query = HiddenField()


class EmptyForm(AppForm):
    """Buttons that only need the CSRF token (claim, release, sign out, delete)."""
