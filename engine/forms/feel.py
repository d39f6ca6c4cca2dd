"""A small, documented subset of FEEL for `conditional.hide` in forms.

Grammar (lowest precedence first)::

    expression := disjunction
    disjunction := conjunction ("or" conjunction)*
    conjunction := comparison ("and" comparison)*
    comparison := operand [ ("=" | "!=" | "<" | "<=" | ">" | ">=") operand
                          | "in" ( "[" list "]" | "(" list ")" ) ]
    operand := number | "-" number | string | "true" | "false" | "null"
             | "not" "(" expression ")" | "(" expression ")" | name ("." name)*

Expressions compile to Python closures; nothing is ever passed to `eval`. Evaluation follows FEEL's
three-valued logic: a comparison whose operands have different types, or an ordering with `null`,
gives `null`; `and`/`or`/`not` treat anything that is not a boolean as `null`. A condition holds only
when the result is exactly `true`. Unknown names are `null`, as in FEEL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.errors import ExpressionError

__all__ = ["FeelError", "FeelExpression", "compile_feel"]

Scope = Mapping[str, Any]
Evaluator = Callable[[Scope], Any]


class FeelError(ExpressionError):
    """The expression is outside the supported FEEL subset (or is not FEEL at all)."""

    code = "feel_error"


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+(?:\.\d+)?|\.\d+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<punct>[()\[\],.\-])
  | (?P<name>[^\W\d]\w*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "true", "false", "null", "in"}
_STRING_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, op, punct, name, keyword, end
    text: str
    pos: int


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if not match:
            if source[pos] == '"':
                raise FeelError(f"unterminated string at position {pos + 1}")
            raise FeelError(f"unexpected character {source[pos]!r} at position {pos + 1}")
        kind = match.lastgroup or ""
        text = match.group()
        if kind != "ws":
            if kind == "name" and text in _KEYWORDS:
                kind = "keyword"
            tokens.append(_Token(kind, text, pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(source)))
    return tokens


def _unquote(text: str, pos: int) -> str:
    out: list[str] = []
    chars = iter(text[1:-1])
    for char in chars:
        if char == "\\":
            escaped = next(chars)
            if escaped not in _STRING_ESCAPES:
                raise FeelError(f"unknown escape \\{escaped} in the string at position {pos + 1}")
            out.append(_STRING_ESCAPES[escaped])
        else:
            out.append(char)
    return "".join(out)


# ---------------------------------------------------------------------------------------------------
# Evaluation helpers (FEEL semantics)


def _norm(value: Any) -> Any:
    """Numbers compare as Decimal; bool stays bool (it is not a number in FEEL)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _equals(left: Any, right: Any) -> bool | None:
    left, right = _norm(left), _norm(right)
    if left is None or right is None:
        return left is None and right is None
    if _kind(left) != _kind(right) or _kind(left) == "other":
        return None
    return left == right


def _compare(op: str, left: Any, right: Any) -> bool | None:
    if op == "=":
        return _equals(left, right)
    if op == "!=":
        result = _equals(left, right)
        return None if result is None else not result
    left, right = _norm(left), _norm(right)
    if left is None or right is None or _kind(left) != _kind(right) or _kind(left) not in ("number", "string"):
        return None
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _lookup(path: tuple[str, ...]) -> Evaluator:
    def evaluate(scope: Scope) -> Any:
        value: Any = scope
        for part in path:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return evaluate


# ---------------------------------------------------------------------------------------------------
# Parser


MAX_NESTING = 32


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.tokens = _tokenize(source)
        self.index = 0
        self.names: list[str] = []
        self.depth = 0  # parentheses open at the current token

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> _Token | None:
        token = self.token
        if token.kind == kind and (text is None or token.text == text):
            self.index += 1
            return token
        return None

    def expect(self, kind: str, text: str, what: str) -> _Token:
        token = self.accept(kind, text)
        if token is None:
            raise self.error(f"expected {text!r} ({what})")
        return token

    def error(self, detail: str) -> FeelError:
        token = self.token
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        return FeelError(f"{detail}, found {found} at position {token.pos + 1}")

    def parse(self) -> Evaluator:
        if self.token.kind == "end":
            raise FeelError("the expression is empty")
        evaluate = self.disjunction()
        if self.token.kind != "end":
            raise self.error("expected the end of the expression")
        return evaluate

    def disjunction(self) -> Evaluator:
        parts = [self.conjunction()]
        while self.accept("keyword", "or"):
            parts.append(self.conjunction())
        if len(parts) == 1:
            return parts[0]

        def evaluate(scope: Scope) -> bool | None:
            results = [_as_bool(part(scope)) for part in parts]
            if True in results:
                return True
            return False if all(r is False for r in results) else None

        return evaluate

    def conjunction(self) -> Evaluator:
        parts = [self.comparison()]
        while self.accept("keyword", "and"):
            parts.append(self.comparison())
        if len(parts) == 1:
            return parts[0]

        def evaluate(scope: Scope) -> bool | None:
            results = [_as_bool(part(scope)) for part in parts]
            if False in results:
                return False
            return True if all(r is True for r in results) else None

        return evaluate

    def comparison(self) -> Evaluator:
        left = self.operand()
        op_token = self.accept("op")
        if op_token:
            right = self.operand()
            op = op_token.text
            if self.token.kind == "op":
                raise self.error("comparisons cannot be chained; use 'and'")
            return lambda scope: _compare(op, left(scope), right(scope))
        if self.accept("keyword", "in"):
            items = self.in_list()

            def evaluate(scope: Scope) -> bool | None:
                value = left(scope)
                results = [_equals(value, item(scope)) for item in items]
                if True in results:
                    return True
                return False if all(r is False for r in results) else None

            return evaluate
        return left

    def in_list(self) -> list[Evaluator]:
        if self.accept("punct", "["):
            closing = "]"
        elif self.accept("punct", "("):
            closing = ")"
        else:
            raise self.error("expected a list such as [\"a\", \"b\"] after 'in'")
        items: list[Evaluator] = []
        if not self.accept("punct", closing):
            items.append(self.operand())
            while self.accept("punct", ","):
                items.append(self.operand())
            self.expect("punct", closing, "end of the list")
        return items

    def operand(self) -> Evaluator:
        token = self.token
        if token.kind == "number" or (token.kind == "punct" and token.text == "-"):
            negative = bool(self.accept("punct", "-"))
            number = self.accept("number")
            if number is None:
                raise self.error("expected a number")
            value = Decimal(number.text)
            value = -value if negative else value
            return lambda scope: value
        if token.kind == "string":
            self.advance()
            text = _unquote(token.text, token.pos)
            return lambda scope: text
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self.advance()
            constant = {"true": True, "false": False, "null": None}[token.text]
            return lambda scope: constant
        if self.accept("keyword", "not"):
            self.expect("punct", "(", "not(...) needs parentheses")
            inner = self.nested()
            self.expect("punct", ")", "closing not(...)")

            def negate(scope: Scope) -> bool | None:
                value = _as_bool(inner(scope))
                return None if value is None else not value

            return negate
        if self.accept("punct", "("):
            inner = self.nested()
            self.expect("punct", ")", "closing parenthesis")
            return inner
        if token.kind == "name":
            return self.path()
        if token.kind == "punct" and token.text == "[":
            raise self.error("lists are only supported after 'in'")
        raise self.error("expected a value, a field name or '('")

    def nested(self) -> Evaluator:
        """The expression inside parentheses; nesting is limited, so that neither parsing nor evaluating
        it can exhaust Python's stack."""
        if self.depth >= MAX_NESTING:
            raise self.error(f"the expression nests parentheses more than {MAX_NESTING} deep")
        self.depth += 1
        try:
            return self.disjunction()
        finally:
            self.depth -= 1

    def path(self) -> Evaluator:
        first = self.advance()
        parts = [first.text]
        while self.accept("punct", "."):
            part = self.accept("name")
            if part is None:
                raise self.error("expected a field name after '.'")
            parts.append(part.text)
        if self.token.kind == "punct" and self.token.text in ("(", "["):
            if self.token.text == "(":
                raise FeelError(
                    f"function {'.'.join(parts)!r} is not supported (only not(...) is), "
                    f"at position {first.pos + 1}"
                )
            raise FeelError(f"filters and indexes ('[...]') are not supported, at position {self.token.pos + 1}")
        self.names.append(".".join(parts))
        return _lookup(tuple(parts))


@dataclass(frozen=True)
class FeelExpression:
    """A compiled FEEL expression. `source` is the text without the leading `=`."""

    source: str
    names: tuple[str, ...]
    _evaluate: Evaluator = field(repr=False, compare=False)

    def evaluate(self, scope: Scope) -> Any:
        """The FEEL value (bool, Decimal, str or None) in `scope` (the task data)."""
        return self._evaluate(scope)

    def holds(self, scope: Scope) -> bool:
        """True only when the expression evaluates to exactly `true`."""
        return self._evaluate(scope) is True


def compile_feel(text: str) -> FeelExpression:
    """Compile `=<expression>` (the leading `=` marks FEEL in form-js) or raise `FeelError`."""
    if not isinstance(text, str):
        raise FeelError("a FEEL expression must be text")
    stripped = text.strip()
    if not stripped.startswith("="):
        raise FeelError(f"a FEEL expression starts with '=', for example '={stripped}'")
    source = stripped[1:].strip()
    parser = _Parser(source)
    evaluate = parser.parse()
    return FeelExpression(source, tuple(dict.fromkeys(parser.names)), evaluate)
