"""Language and time: German by default, English per user (User.locale); Europe/Berlin; German formats.

Messages are written in German in the code and templates (German is the source language); the English
catalogue is webapp/translations/en/LC_MESSAGES/messages.po, compiled to messages.mo, which is committed
(a test checks that it is up to date; see docs/webapp.md for the pybabel commands).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from flask import Flask
from flask_babel import format_decimal, get_locale
from flask_login import current_user

LANGUAGES = {"de": "Deutsch", "en": "English"}
TIMEZONE = "Europe/Berlin"
_BERLIN = ZoneInfo(TIMEZONE)
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


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
    """An instant in German time, "26.11.2026, 14:05 Uhr" ("26 Nov 2026, 14:05" in English).

    Written out rather than through Babel (the same output, see the tests): a page shows many dates,
    and Babel parses the pattern at each call."""
    if value is None:
        return ""
    at = _local(value)
    if _lang() == "en":
        return f"{at.day} {_MONTHS_EN[at.month - 1]} {at.year}, {at:%H:%M}"
    return f"{at:%d.%m.%Y, %H:%M} Uhr"


def fmt_date(value: date | datetime | None) -> str:
    if value is None:
        return ""
    day = _local(value) if isinstance(value, datetime) else value
    if _lang() == "en":
        return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"
    return f"{day:%d.%m.%Y}"


def _local(value: datetime) -> datetime:
    """German time; a naive value is UTC (as Babel takes it)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(_BERLIN)


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
