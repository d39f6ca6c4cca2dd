"""Camunda compatibility for expressions, applied when a model is parsed.

Camunda writes JUEL: ``${approved}``, ``#{score <= 5}``. The engine evaluates the sandbox language
(a restricted Python subset). :func:`translate` turns the common JUEL subset into that language; a
text without ``${``/``#{`` is already in the sandbox language and is returned unchanged. Anything
outside the subset raises :class:`~engine.errors.ExpressionError` naming the construct, so that the
model checker reports it before deployment rather than the engine failing at run time.

:func:`resolve_template` evaluates composite values such as ``camunda:candidateGroups="${unit}:lead"``
at run time, and :func:`timer_expression` turns Camunda's bare ISO-8601 timer values into the quoted
Python string SpiffWorkflow evaluates.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from engine.errors import ExpressionError

__all__ = [
    "TemplateExpression",
    "has_expression",
    "resolve_template",
    "template",
    "timer_expression",
    "translate",
]

_OPEN = ("${", "#{")
_KEYWORDS = {"true", "false", "null", "empty", "not", "and", "or", "eq", "ne", "lt", "gt", "le", "ge",
             "div", "mod", "instanceof"}
_WORD_OPS = {"eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=", "ge": ">=", "div": "/", "mod": "%",
             "and": "&&", "or": "||", "not": "!"}
_SYMBOLS = ("==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")",
            ".", "[", "]", "?", ":", ",", "{", "=", ";")
_NUMBER = re.compile(r"\d+(\.\d*)?([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?", re.ASCII)
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")

# Python precedence levels used to decide where parentheses are needed.
_P_OR, _P_AND, _P_NOT, _P_CMP, _P_ADD, _P_MUL, _P_NEG, _P_ATOM = 1, 2, 3, 4, 5, 6, 7, 9


@dataclass(frozen=True)
class _Token:
    kind: str  # "str", "num", "name", "op", "end"
    value: str
    pos: int


def has_expression(text: str | None) -> bool:
    """True when ``text`` contains a Camunda ``${...}`` or ``#{...}`` expression."""
    return bool(text) and any(opener in text for opener in _OPEN)


def _tokenize(text: str, start: int) -> tuple[list[_Token], int]:
    """Tokenize JUEL from ``start`` up to the closing ``}``; return the tokens and the index after it."""
    tokens: list[_Token] = []
    i = start
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "}":
            tokens.append(_Token("end", "}", i))
            return tokens, i + 1
        elif ch in "'\"":
            value, i = _read_string(text, i)
            tokens.append(_Token("str", value, i))
        elif match := _NUMBER.match(text, i):
            tokens.append(_Token("num", match.group(0), i))
            i = match.end()
        elif _IDENT.match(text, i):
            match = _IDENT.match(text, i)
            tokens.append(_Token("name", match.group(0), i))
            i = match.end()
        else:
            for symbol in _SYMBOLS:
                if text.startswith(symbol, i):
                    tokens.append(_Token("op", symbol, i))
                    i += len(symbol)
                    break
            else:
                raise ExpressionError(f"unexpected character {ch!r} in expression {text!r}")
    raise ExpressionError(f"expression {text!r} is missing its closing '}}'")


def _read_string(text: str, i: int) -> tuple[str, int]:
    quote, i, out = text[i], i + 1, []
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise ExpressionError(f"unterminated string literal in expression {text!r}")


class _Parser:
    """Recursive descent over JUEL tokens, producing Python source with its precedence."""

    def __init__(self, tokens: list[_Token], source: str):
        self.tokens = tokens
        self.source = source
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def op(self) -> str | None:
        """The current token as an operator (word forms normalised), or None."""
        tok = self.peek()
        if tok.kind == "op":
            return tok.value
        if tok.kind == "name" and tok.value in _WORD_OPS:
            return _WORD_OPS[tok.value]
        return None

    def fail(self, message: str) -> ExpressionError:
        return ExpressionError(f"{message} in expression {self.source!r}")

    def parse(self) -> str:
        if self.peek().kind == "end":
            raise ExpressionError(f"empty expression {self.source!r}")
        text, _ = self.expr()
        tok = self.peek()
        if tok.kind != "end":
            raise self.fail(self._unsupported(tok))
        return text

    def _unsupported(self, tok: _Token) -> str:
        names = {"?": "the conditional operator '?:'", ":": "the conditional operator '?:'",
                 "[": "index access '[...]'", ".": "property access '.'", "(": "a function call",
                 "=": "assignment '='", ";": "several statements ';'", "{": "a map or set literal",
                 ",": "a list ','"}
        if tok.kind == "op" and tok.value in names:
            return f"{names[tok.value]} is not supported"
        return f"unexpected {tok.value!r}"

    def expr(self) -> tuple[str, int]:
        return self.binary(0)

    _LEVELS = (
        ({"||": "or"}, _P_OR),
        ({"&&": "and"}, _P_AND),
        ({"==": "==", "!=": "!="}, _P_CMP),
        ({"<": "<", ">": ">", "<=": "<=", ">=": ">="}, _P_CMP),
        ({"+": "+", "-": "-"}, _P_ADD),
        ({"*": "*", "/": "/", "%": "%"}, _P_MUL),
    )

    def binary(self, level: int) -> tuple[str, int]:
        if level == len(self._LEVELS):
            return self.unary()
        ops, prec = self._LEVELS[level]
        left, left_prec = self.binary(level + 1)
        while self.op() in ops:
            python_op = ops[self.op()]
            self.i += 1
            right, right_prec = self.binary(level + 1)
            # comparisons never chain in JUEL; parenthesise so Python does not chain them either
            left = self.wrap(left, left_prec, prec + (1 if prec == _P_CMP else 0))
            right = self.wrap(right, right_prec, prec + 1)
            left, left_prec = f"{left} {python_op} {right}", prec
        return left, left_prec

    @staticmethod
    def wrap(text: str, prec: int, needed: int) -> str:
        return text if prec >= needed else f"({text})"

    def unary(self) -> tuple[str, int]:
        tok = self.peek()
        if self.op() == "!":
            self.i += 1
            operand, prec = self.unary()
            return f"not {self.wrap(operand, prec, _P_NOT)}", _P_NOT
        if self.op() == "-":
            self.i += 1
            operand, prec = self.unary()
            return f"-{self.wrap(operand, prec, _P_NEG)}", _P_NEG
        if tok.kind == "name" and tok.value == "empty":
            self.i += 1
            operand, prec = self.unary()
            x = self.wrap(operand, prec, _P_ATOM)
            return f"({x} is None or {x} == '' or {x} == [] or {x} == {{}})", _P_ATOM
        return self.primary()

    def primary(self) -> tuple[str, int]:
        tok = self.peek()
        self.i += 1
        if tok.kind == "str":
            return repr(tok.value), _P_ATOM
        if tok.kind == "num":
            return _number(tok.value), _P_ATOM
        if tok.kind == "op" and tok.value == "(":
            text, _ = self.expr()
            if self.peek().value != ")" or self.peek().kind != "op":
                raise self.fail("missing ')'")
            self.i += 1
            return f"({text})", _P_ATOM
        if tok.kind == "name":
            return self.name(tok), _P_ATOM
        self.i -= 1
        if tok.kind == "end":
            raise self.fail("incomplete expression")
        raise self.fail(self._unsupported(tok))

    def name(self, tok: _Token) -> str:
        value = tok.value
        literals = {"true": "True", "false": "False", "null": "None"}
        if value in literals:
            return literals[value]
        if value in _KEYWORDS:
            raise self.fail(f"the operator {value!r} is not supported here")
        nxt = self.peek()
        if nxt.kind == "op" and nxt.value == "(":
            raise self.fail(f"the function or method call '{value}(...)' is not supported")
        if nxt.kind == "op" and nxt.value == ".":
            after = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else nxt
            call = self.i + 2 < len(self.tokens) and self.tokens[self.i + 2].value == "("
            if after.kind == "name" and call:
                raise self.fail(f"the method call '{value}.{after.value}(...)' is not supported "
                                "(bean and execution methods do not exist here)")
            raise self.fail(f"property access '{value}.{after.value}' is not supported")
        if not value.isidentifier() or keyword.iskeyword(value) or value in {"True", "False", "None"}:
            raise self.fail(f"the variable name {value!r} cannot be used")
        return value


def _number(text: str) -> str:
    if re.fullmatch(r"\d+", text):
        return str(int(text))
    return repr(float(text))


def _translate_at(text: str, start: int) -> tuple[str, int]:
    """Translate the JUEL expression starting after the opener at ``start``; return (python, end)."""
    tokens, end = _tokenize(text, start)
    return _Parser(tokens, text).parse(), end


def translate(text: str) -> str:
    """Translate a Camunda ``${...}``/``#{...}`` expression to the sandbox language.

    A text without ``${``/``#{`` is returned unchanged. Raises ExpressionError for constructs outside
    the supported subset, for FEEL (``=``-prefixed Camunda 8 expressions) and for literal text around
    an expression.
    """
    if text is None:
        return text
    if not has_expression(text):
        if text.lstrip().startswith("=") and not text.lstrip().startswith("=="):
            raise ExpressionError(
                f"FEEL expressions (Camunda 8, leading '=') are not supported: {text.strip()!r}")
        return text
    stripped = text.strip()
    if stripped[:2] not in _OPEN:
        raise ExpressionError(f"literal text around an expression is not supported here: {stripped!r}")
    python, end = _translate_at(stripped, 2)
    if stripped[end:].strip():
        raise ExpressionError(f"literal text around an expression is not supported here: {stripped!r}")
    return python


@dataclass(frozen=True)
class TemplateExpression:
    """One ``${...}`` part of a template: the JUEL source and its sandbox translation."""

    source: str
    python: str


def template(text: str) -> list[str | TemplateExpression]:
    """Split a composite value into literal strings and translated expressions.

    ``"${unit}:lead, lks"`` -> ``[TemplateExpression("${unit}", "unit"), ":lead, lks"]``. A backslash
    before the opener (``\\${``) keeps it literal. Raises ExpressionError for unsupported constructs.
    """
    parts: list[str | TemplateExpression] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith(("\\${", "\\#{"), i):
            literal.append(text[i + 1:i + 3])
            i += 3
        elif text.startswith(_OPEN, i):
            python, end = _translate_at(text, i + 2)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(TemplateExpression(text[i:end], python))
            i = end
        else:
            literal.append(text[i])
            i += 1
    if literal:
        parts.append("".join(literal))
    return parts


def resolve_template(text: str, evaluate: Callable[[str], Any]) -> str:
    """Replace every ``${expr}`` in ``text`` by ``evaluate(translated expr)``; keep the literal text.

    ``None`` results become the empty string, everything else ``str()``.
    """
    out = []
    for part in template(text):
        if isinstance(part, TemplateExpression):
            value = evaluate(part.python)
            out.append("" if value is None else str(value))
        else:
            out.append(part)
    return "".join(out)


_CRON_FIELD = r"([0-9*?/,#LW\-]+|[A-Za-z]{3}([-,][A-Za-z]{3})*)"
_CRON = re.compile(rf"^{_CRON_FIELD}(\s+{_CRON_FIELD}){{4,6}}$")
_ISO = re.compile(
    r"^(R\d*/.+"  # repetition
    r"|P[0-9YMWDTHS.,]+"  # duration
    r"|\d{4}-?W\d{2}.*"  # week date
    r"|\d{4}-\d{2}-\d{2}([T ].*)?)$",  # date / date-time
    re.IGNORECASE,
)
TIMER_KINDS = ("timeDate", "timeDuration", "timeCycle")


#: the longest timer or due date a model may give: SpiffWorkflow counts months one by one and overflows
#: beyond year 9999, so a huge literal must be refused before it is used
MAX_DURATION = timedelta(days=100 * 366)
#: a bare value that is meant as an ISO duration or repetition (not a variable name): P3X, -P1D, R3/PT1X
_ISO_LIKE = re.compile(r"-?[PR]\d[\w.,/:+-]*", re.IGNORECASE)


def _check_duration(value: str) -> None:
    parsed = TimerEventDefinition.parse_iso_duration(value)
    if not parsed:
        raise ValueError("a duration needs at least one number, like PT0S")
    if parsed.get("years", 0) * 12 + parsed.get("months", 0) > 1200:
        raise ValueError("longer than 100 years")
    try:
        delta = TimerEventDefinition.get_timedelta_from_start(dict(parsed))
    except OverflowError:
        delta = None
    if delta is None or delta > MAX_DURATION:
        raise ValueError("longer than 100 years")


def _check_iso(value: str, kind: str | None) -> None:
    """Raise ExpressionError unless SpiffWorkflow accepts ``value`` for a timer of ``kind``."""
    upper = value.upper()
    if upper.startswith("-"):
        raise ExpressionError(f"invalid timer value {value!r}: negative durations are not supported")
    if kind is None:
        kind = ("timeCycle" if upper.startswith("R") else
                "timeDuration" if upper.startswith("P") else "timeDate")
    try:
        if kind == "timeCycle":
            if not upper.startswith("R"):
                raise ValueError("a cycle must be an ISO-8601 repetition like R3/PT1H")
            for part in value.split("/")[1:]:
                if part.upper().startswith("P"):
                    _check_duration(part)
            TimerEventDefinition.parse_iso_recurring_interval(value)
        elif kind == "timeDuration":
            if not upper.startswith("P"):
                raise ValueError("a duration must look like PT5M or P3D")
            _check_duration(value)
        else:
            parsed = TimerEventDefinition.parse_time_or_duration(value)
            if isinstance(parsed, dict):
                raise ValueError("a date must look like 2026-12-01T09:00:00Z")
    except Exception as exc:  # noqa: BLE001 - SpiffWorkflow raises bare Exception here
        raise ExpressionError(f"invalid {kind} timer value {value!r}: {exc}") from None


def timer_expression(text: str, kind: str | None = None) -> str:
    """Turn a Camunda timer value into the Python expression SpiffWorkflow evaluates.

    ``PT5M`` -> ``"PT5M"``; an already-quoted value and any other Python expression stay as they are;
    ``${...}`` is translated. ``kind`` (timeDate, timeDuration, timeCycle) makes the check of a bare
    value exact. Cron cycles raise ExpressionError.
    """
    value = (text or "").strip()
    if not value:
        raise ExpressionError("empty timer value")
    if has_expression(value):
        return translate(value)
    if value[0] in "'\"":
        if len(value) >= 2 and value[-1] == value[0] and value[0] not in value[1:-1]:
            _check_iso(value[1:-1], kind)
        return value
    if _CRON.match(value):
        raise ExpressionError("cron cycles are not supported; use an ISO-8601 repetition like R/PT5M")
    if _ISO.match(value) or _ISO_LIKE.fullmatch(value):
        _check_iso(value, kind)
        return json.dumps(value)
    return value


def check_iso_value(value: str) -> None:
    """ExpressionError unless ``value`` is an ISO-8601 date, date-time or duration a due date may be."""
    value = value.strip()
    if not value:
        raise ExpressionError("empty date or duration")
    _check_iso(value, None)
