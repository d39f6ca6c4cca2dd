"""Language and time: German by default, English per user (User.locale); Europe/Berlin; German formats.

Messages are written in German in the code and templates (German is the source language); the English
catalogue is webapp/translations/en/LC_MESSAGES/messages.po, compiled to messages.mo, which is committed
(a test checks that it is up to date; see docs/webapp.md for the pybabel commands).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from flask import Flask, g
from flask.templating import Environment as FlaskEnvironment
from flask_babel import format_decimal, get_locale, get_translations
from flask_login import current_user
from jinja2 import Template, pass_eval_context
from jinja2.ext import Extension
from jinja2.lexer import Token
from markupsafe import Markup

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
    if type(value) is int and 0 <= value < 1000:  # as Babel writes them in both languages (an inbox has dozens)
        return str(value)
    return "" if value is None else format_decimal(value)


def translations():
    """The request's catalogue, looked up once per request.

    Flask-Babel's own callables find the locale and the catalogue again for every `_()` (a page has
    dozens). The catalogue is kept where Flask-Babel's `refresh()` and `force_locale()` reset it
    (`babel_translations` of its request context), so a language changed within a request still shows.
    """
    try:
        found = g._flask_babel.babel_translations
        if found is not None:
            return found
    except AttributeError:  # no Flask-Babel context yet, or no catalogue kept in it
        pass
    except RuntimeError:  # outside an application context: Flask-Babel's answer
        return get_translations()
    found = get_translations()  # creates Flask-Babel's context if need be
    g._flask_babel.babel_translations = found
    return found


@pass_eval_context
def _translate(eval_ctx, text: str) -> str:
    """The translation of a template's `_("text")`, markup where the template escapes, as Jinja's newstyle
    gettext has it. Jinja calls it when it compiles the template (a filter on a constant): in the language
    of the request that loads it."""
    found = translations().ugettext(text)
    return Markup(found) if eval_ctx.autoescape else found  # noqa: S704 - our catalogue, as Jinja trusts it


def _format(text: str, **variables) -> str:
    """The values put into the translated text (escaped, if it is markup); with none, "%%" becomes "%":
    newstyle gettext always formats."""
    return text % variables


class LiteralGettext(Extension):
    """Compiles `_("text")` as `("text"|_translate)|_format`, which Jinja evaluates at compile time: the
    translated text is in the template's code (`LanguageEnvironment` keeps one compiled template per
    language). `_("text %(name)s", name=value)` becomes `("text %(name)s"|_translate)|_format(name=value)`,
    the values put in at render time. At render
    time each call of `_` cost three `Context.call`s of the i18n extension; a task page has about 40.
    The template's source is unchanged, and so is what pybabel extracts from it.
    """

    def filter_stream(self, stream):
        window: list[Token] = []
        open_calls: list[int] = []  # per rewritten call with values: parentheses open inside it
        for token in self._balanced(stream, open_calls):
            window.append(token)
            if len(window) < 4:
                continue
            name, lparen, text, after = window
            if name.test("name:_") and lparen.type == "lparen" and text.type == "string" and after.type in (
                    "rparen", "comma"):
                line = name.lineno
                yield from (Token(line, "lparen", "("), Token(line, "lparen", "("), text, Token(line, "pipe", "|"),
                            Token(line, "name", "_translate"), Token(line, "rparen", ")"),
                            Token(line, "pipe", "|"), Token(line, "name", "_format"))
                if after.type == "comma":  # the values follow, up to the call's own closing parenthesis
                    yield Token(line, "lparen", "(")
                    open_calls.append(1)
                else:
                    yield Token(line, "rparen", ")")
                window = []
            else:
                yield window.pop(0)
        yield from window

    @staticmethod
    def _balanced(stream, open_calls: list[int]):
        """The tokens, with a ")" added after the closing parenthesis of each rewritten call with values (so
        that `_("text", name=value).upper()` stays one expression)."""
        for token in stream:
            yield token
            if open_calls and token.type in ("lparen", "rparen"):
                open_calls[-1] += 1 if token.type == "lparen" else -1
                if open_calls[-1] == 0:
                    open_calls.pop()
                    yield Token(token.lineno, "rparen", ")")


class LanguageEnvironment(FlaskEnvironment):
    """Flask's template environment, with each template compiled once per language (see
    `LiteralGettext`): a template loaded while the request's language is English is the English one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._by_language: dict[tuple[str, str], Template] = {}
        self.add_extension(LiteralGettext)
        self.filters["_translate"] = _translate
        self.filters["_format"] = _format

    def _load_template(self, name: str, globals):
        key = (name, _lang())
        template = self._by_language.get(key)
        if template is None or (self.auto_reload and not template.is_up_to_date):
            template = self._by_language[key] = self.loader.load(self, name, self.make_globals(globals))
        elif globals:
            template.globals.update(globals)
        return template


def init_app(app: Flask) -> None:
    from .extensions import babel

    app.config.setdefault("BABEL_DEFAULT_LOCALE", "de")
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", TIMEZONE)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    app.add_template_filter(fmt_datetime, "datetime")
    app.add_template_filter(fmt_date, "date")
    app.add_template_filter(fmt_number, "number")
    app.jinja_env.globals["current_language"] = _lang
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: translations().ugettext(s),
        ngettext=lambda s, p, n: translations().ungettext(s, p, n),
        pgettext=lambda c, s: translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: translations().unpgettext(c, s, p, n),
        newstyle=True,
    )
