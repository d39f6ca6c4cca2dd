"""Coercion and constraint checks for single form values, with form-js semantics and German messages.

`coerce()` turns what a browser or a script sent into the stored, JSON-friendly value (or raises
`Invalid`); `check()` applies the field's constraints to a coerced value and returns messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import regex as _regex

if TYPE_CHECKING:
    from engine.forms.model import FormField, Option

#: seconds a form's `validate.pattern` may search one value; patterns that nest repetitions are refused
#: before (`risky_pattern`), this bounds the rest (e.g. `\d*\d*\d*x` on a long text)
PATTERN_TIMEOUT = 0.25


def risky_pattern(pattern: str) -> bool:
    """True for a pattern that the sandbox refuses in scripts: a repetition or alternation nested in a
    repetition (`(a+)+`, `(a|aa)*`), whose backtracking can take exponential time."""
    from engine.sandbox import _risky  # the sandbox's own check, so forms and scripts refuse the same

    try:
        return _risky(re._parser.parse(pattern), False)
    except re.error:
        return True

# Messages shown to the person filling in the form: plain, short, German.
class Message(str):
    """A validation message: German text (the source language) that keeps its template and values, so
    that a user interface can show it in the user's language (the web app's catalogue has them;
    `pybabel extract -k Message` finds the templates)."""

    def __new__(cls, template: str, **values):
        message = super().__new__(cls, template % values if values else template)
        message.template, message.values = template, values
        return message


MSG_REQUIRED = Message("Bitte füllen Sie dieses Feld aus.")
MSG_REQUIRED_CHOICE = Message("Bitte wählen Sie einen Wert aus.")
MSG_REQUIRED_CHOICES = Message("Bitte wählen Sie mindestens einen Wert aus.")
MSG_REQUIRED_CHECKBOX = Message("Bitte kreuzen Sie dieses Feld an.")
MSG_NOT_OFFERED = Message("Bitte wählen Sie einen der angebotenen Werte.")
MSG_TEXT = Message("Bitte geben Sie einen Text ein.")
MSG_NUMBER = Message("Bitte geben Sie eine Zahl ein.")
MSG_BOOLEAN = Message("Bitte geben Sie ja oder nein an.")
MSG_DATE = Message("Bitte geben Sie ein gültiges Datum ein, zum Beispiel 31.12.2026.")
MSG_TIME = Message("Bitte geben Sie eine gültige Uhrzeit ein, zum Beispiel 14:30.")
MSG_DATETIME = Message("Bitte geben Sie Datum und Uhrzeit ein, zum Beispiel 31.12.2026 14:30.")
MSG_PATTERN = Message("Die Eingabe hat nicht das erwartete Format.")
MSG_PATTERN_UNCHECKED = Message("Die Eingabe kann nicht geprüft werden. Bitte wenden Sie sich an die Koordination.")
MSG_EMAIL = Message("Bitte geben Sie eine gültige E-Mail-Adresse ein.")
MSG_PHONE = Message("Bitte geben Sie eine Telefonnummer mit Ländervorwahl ein, zum Beispiel +49385123456.")
MSG_UNDECLARED = Message("Dieses Feld gibt es im Formular nicht.")

TEXT_TYPES = frozenset({"textfield", "textarea"})
CHOICE_TYPES = frozenset({"select", "radio"})
MULTI_TYPES = frozenset({"checklist", "taglist"})
VALUE_TYPES = TEXT_TYPES | CHOICE_TYPES | MULTI_TYPES | {"number", "checkbox", "datetime"}

_TRUE = frozenset({"true", "on", "1", "yes", "y", "ja"})
_FALSE = frozenset({"false", "off", "0", "no", "n", "nein", ""})
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_GERMAN_DATE = re.compile(r"(\d{1,2})[./](\d{1,2})[./](\d{4})")
_EMAIL = re.compile(
    r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"
)
# form-js checks a long list of country codes; we check the shape only: + or 00, then 7 to 20 digits
_PHONE = re.compile(r"^(?:\+|00)[1-9]\d{6,19}$")


class Invalid(ValueError):
    """A value cannot be coerced to the field's type; the message is for the person."""


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def parse_number(raw: Any) -> Decimal:
    if isinstance(raw, bool):
        raise Invalid(MSG_NUMBER)
    if isinstance(raw, int | Decimal):
        number = Decimal(raw)
    elif isinstance(raw, float):
        number = Decimal(repr(raw))
    elif isinstance(raw, str):
        text = raw.strip().replace("\u2212", "-")
        if "," in text and "." not in text:
            text = text.replace(",", ".")  # German decimal comma
        if not _NUMBER.fullmatch(text):
            raise Invalid(MSG_NUMBER)
        number = Decimal(text)
    else:
        raise Invalid(MSG_NUMBER)
    if not number.is_finite():
        raise Invalid(MSG_NUMBER)
    return number


def number_value(number: Decimal) -> int | float:
    """Stored form of a number: int when integral, else float (task data must stay JSON)."""
    if number == number.to_integral_value():
        return int(number)
    return float(number)


def decimal_places(number: Decimal) -> int:
    exponent = number.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def parse_date(raw: Any) -> str:
    if isinstance(raw, datetime):
        return raw.date().isoformat()
    if isinstance(raw, date):
        return raw.isoformat()
    if not isinstance(raw, str):
        raise Invalid(MSG_DATE)
    text = raw.strip()
    try:
        german = _GERMAN_DATE.fullmatch(text)
        if german:
            day, month, year = (int(part) for part in german.groups())
            return date(year, month, day).isoformat()
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise Invalid(MSG_DATE)


def _time_text(value: time) -> str:
    return value.isoformat(timespec="minutes" if not value.second else "seconds")


def parse_time(raw: Any) -> str:
    if isinstance(raw, time):
        return _time_text(raw.replace(microsecond=0, tzinfo=None))
    match = _TIME.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match:
        hour, minute, second = (int(part or 0) for part in match.groups())
        try:
            return _time_text(time(hour, minute, second))
        except ValueError:
            pass
    raise Invalid(MSG_TIME)


def parse_datetime(raw: Any) -> str:
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, str):
        text = raw.strip()
        german = re.fullmatch(r"(\d{1,2}\.\d{1,2}\.\d{4})[ ,]+(\d{1,2}:\d{2}(?::\d{2})?)", text)
        try:
            if german:
                value = datetime.combine(
                    date.fromisoformat(parse_date(german.group(1))),
                    time.fromisoformat(parse_time(german.group(2))),
                )
            elif len(text) >= 16 and text[10] in "T ":
                value = datetime.fromisoformat(text)
            else:
                raise Invalid(MSG_DATETIME)
        except (ValueError, Invalid):
            raise Invalid(MSG_DATETIME) from None
    else:
        raise Invalid(MSG_DATETIME)
    value = value.replace(microsecond=0)
    return value.isoformat(timespec="minutes" if not value.second else "seconds")


def parse_boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if raw is None:
        return False
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise Invalid(MSG_BOOLEAN)


def match_option(raw: Any, options: Iterable[Option]) -> Any:
    """The declared value that `raw` selects (a browser sends every value as text)."""
    for option in options:
        if option.value == raw and type(option.value) is type(raw):
            return option.value
    if isinstance(raw, str):
        for option in options:
            if option_text(option.value) == raw:
                return option.value
    raise Invalid(MSG_NOT_OFFERED)


def option_text(value: Any) -> str:
    """How an option value appears in HTML (`true`, not `True`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def coerce(field: FormField, raw: Any, options: tuple[Option, ...]) -> Any:
    """The stored value for `raw`, or raises `Invalid`. Empty input gives None ([] and False for
    checklists/taglists and checkboxes)."""
    kind = field.type
    if kind == "checkbox":
        return parse_boolean(raw)
    if kind in MULTI_TYPES:
        if raw is None or raw == "":
            return []
        items = [raw] if isinstance(raw, str | int | float | bool) else raw
        if not isinstance(items, list | tuple):
            raise Invalid(MSG_NOT_OFFERED)
        chosen = {match_option(item, options) for item in items if item != ""}
        # stored in the order the form offers them, without duplicates
        return [option.value for option in options if option.value in chosen]
    if is_empty(raw):
        return None
    if kind in TEXT_TYPES:
        if isinstance(raw, int | float | Decimal) and not isinstance(raw, bool):
            return str(raw)
        if not isinstance(raw, str):
            raise Invalid(MSG_TEXT)
        return raw.replace("\r\n", "\n")
    if kind == "number":
        return number_value(parse_number(raw))
    if kind in CHOICE_TYPES:
        return match_option(raw, options)
    if kind == "datetime":
        if field.subtype == "time":
            return parse_time(raw)
        if field.subtype == "datetime":
            return parse_datetime(raw)
        return parse_date(raw)
    raise Invalid(MSG_TEXT)  # pragma: no cover - the schema only builds the types above


def _plain(number: Decimal) -> str:
    text = format(number.normalize(), "f")
    return text.replace(".", ",")


def check(field: FormField, value: Any) -> list[str]:
    """Constraint messages for a coerced value (form-js semantics: empty values only fail `required`)."""
    rules = field.constraints
    kind = field.type
    if rules.required:
        if kind == "checkbox" and value is not True:
            return [MSG_REQUIRED_CHECKBOX]
        if kind in MULTI_TYPES and not value:
            return [MSG_REQUIRED_CHOICES]
        if value is None:
            return [MSG_REQUIRED_CHOICE if kind in CHOICE_TYPES else MSG_REQUIRED]
    if value is None or value == [] or isinstance(value, bool):
        return []
    messages: list[str] = []
    if kind in TEXT_TYPES:
        length = len(value.strip())
        if rules.min_length is not None and length < rules.min_length:
            messages.append(Message("Mindestens %(n)s Zeichen.", n=rules.min_length))
        if rules.max_length is not None and length > rules.max_length:
            messages.append(Message("Höchstens %(n)s Zeichen.", n=rules.max_length))
        if rules.pattern_refused:
            messages.append(MSG_PATTERN_UNCHECKED)
        elif rules.pattern is not None:
            try:
                if not _regex.search(rules.pattern, value, timeout=PATTERN_TIMEOUT):
                    messages.append(MSG_PATTERN)
            except TimeoutError:
                messages.append(MSG_PATTERN_UNCHECKED)
        if rules.validation_type == "email" and not _EMAIL.match(value.strip()):
            messages.append(MSG_EMAIL)
        if rules.validation_type == "phone" and not _PHONE.match(re.sub(r"[\s/-]", "", value)):
            messages.append(MSG_PHONE)
    if kind == "number":
        number = parse_number(value)
        if rules.decimal_digits is not None and decimal_places(number) > rules.decimal_digits:
            messages.append(
                Message("Bitte geben Sie eine ganze Zahl ein.")
                if rules.decimal_digits == 0
                else Message("Höchstens %(n)s Nachkommastellen.", n=rules.decimal_digits)
            )
        if rules.increment:
            offset = number % rules.increment
            if offset:
                below = number - offset if number >= 0 else number - offset - rules.increment
                messages.append(Message("Bitte wählen Sie einen gültigen Wert, zum Beispiel %(low)s oder %(high)s.",
                                        low=_plain(below), high=_plain(below + rules.increment)))
        if rules.minimum is not None and number < rules.minimum:
            messages.append(Message("Der Wert darf nicht kleiner als %(n)s sein.", n=_plain(rules.minimum)))
        if rules.maximum is not None and number > rules.maximum:
            messages.append(Message("Der Wert darf nicht größer als %(n)s sein.", n=_plain(rules.maximum)))
    return messages
