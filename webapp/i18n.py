"""Language and time: German by default, English per user (User.locale); Europe/Berlin; German formats.

Messages are written in German in the code and templates (German is the source language); the English
catalogue is webapp/translations/en/LC_MESSAGES/messages.po, compiled to messages.mo, which is committed
(a test checks that it is up to date; see docs/webapp.md for the pybabel commands).
"""

from __future__ import annotations

from datetime import date, datetime

from flask import Flask
from flask_babel import format_datetime, format_decimal, get_locale
from flask_login import current_user

LANGUAGES = {"de": "Deutsch", "en": "English"}
TIMEZONE = "Europe/Berlin"
_DATETIME = {"de": "dd.MM.yyyy, HH:mm 'Uhr'", "en": "d MMM yyyy, HH:mm"}
_DATE = {"de": "dd.MM.yyyy", "en": "d MMM yyyy"}


def select_locale() -> str:
    if current_user and current_user.is_authenticated:
        locale = current_user.row.locale
        if locale in LANGUAGES:
            return locale
    return "de"


def select_timezone() -> str:
    return TIMEZONE


def _lang() -> str:
    return str(get_locale() or "de")[:2]


def fmt_datetime(value: datetime | None) -> str:
    if value is None:
        return ""
    return format_datetime(value, _DATETIME.get(_lang(), _DATETIME["de"]))


def fmt_date(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_datetime(value, _DATE.get(_lang(), _DATE["de"]))
    from flask_babel import format_date

    return format_date(value, _DATE.get(_lang(), _DATE["de"]))


def fmt_number(value) -> str:
    return "" if value is None else format_decimal(value)


def init_app(app: Flask) -> None:
    from .extensions import babel

    app.config.setdefault("BABEL_DEFAULT_LOCALE", "de")
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", TIMEZONE)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    app.add_template_filter(fmt_datetime, "datetime")
    app.add_template_filter(fmt_date, "date")
    app.add_template_filter(fmt_number, "number")
    app.jinja_env.globals["current_language"] = _lang
