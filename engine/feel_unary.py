"""DMN input entries ("unary tests") translated to sandbox expressions when a decision is parsed.

SpiffWorkflow evaluates an input entry as Python: ``input == (cell)`` when the cell is an expression,
``input cell`` when it starts with an operator. FEEL's common unary tests read differently as Python
(``50,60,70`` would compare with a tuple, ``not(50)`` with ``False``) or not at all (``[50..90[``). So
every cell is translated here, once, into a Python expression over ``dmninputexpr`` (the name under
which SpiffWorkflow's DMN engine passes the input value), and what is neither FEEL we support nor
unambiguous Python is a :class:`~engine.errors.ExpressionError` for the model checker.

Supported FEEL (``v`` is the input value)::

    -  or empty              any value
    "a", 5, true, null, x    v == "a" (… v is None for null)
    < 5, <= 5, > 5, >= 5     comparisons (the end point may be a literal or a variable name)
    [1..5] ]1..5[ (1..5)     intervals; [ ] include the end point, ] [ ( ) exclude it
    "a", "b", > 9            a list: any of them
    not("a", "b")            none of them

Python cells that are not FEEL keep their meaning (``in ["a", "b"]``, ``!= 5``, ``== x * 2``), except
those that look like FEEL with another meaning, which are refused: top-level ``and``/``or``/``not``,
tuples, list or set literals.
"""

from __future__ import annotations

import ast
import re

from engine.errors import ExpressionError

__all__ = ["INPUT_NAME", "translate_input_entry"]

#: the name SpiffWorkflow's DMNEngine binds the input value to in a match expression containing it
INPUT_NAME = "dmninputexpr"

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<number>\d+(?:\.\d+)?|\.\d+)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<name>[^\W\d]\w*)
    | (?P<op>\.\.|<=|>=|<|>|,|\(|\)|\[|\]|-)
    )""", re.VERBOSE)
_LITERALS = {"true": "True", "false": "False", "null": "None"}


class _NotFeel(Exception):
    """The cell is not FEEL this module understands (it may still be a Python cell)."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _TOKEN.match(text, pos)
        if not match:
            raise _NotFeel(f"unexpected {text[pos:].strip()[:20]!r}")
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise _NotFeel(f"expected {value!r}" if value else "unexpected end")
        self.pos += 1
        return token

    def cell(self) -> str:
        token = self.peek()
        if token == ("name", "not") and self.peek(1) == ("op", "("):
            self.take()
            self.take("(")
            tests = self.tests()
            self.take(")")
            if self.peek() is not None:
                raise _NotFeel("text after not(...)")
            return f"not ({tests})"
        tests = self.tests()
        if self.peek() is not None:
            raise _NotFeel(f"unexpected {self.peek()[1]!r}")
        return tests

    def tests(self) -> str:
        parts = [self.test()]
        while self.peek() == ("op", ","):
            self.take()
            parts.append(self.test())
        return parts[0] if len(parts) == 1 else " or ".join(f"({p})" for p in parts)

    def test(self) -> str:
        token = self.peek()
        if token is None:
            raise _NotFeel("empty test")
        if token[0] == "op" and token[1] in ("<", "<=", ">", ">="):
            self.take()
            return f"{INPUT_NAME} {token[1]} {self.endpoint()}"
        if token[0] == "op" and token[1] in ("[", "]", "("):
            return self.interval()
        value = self.endpoint()
        if self.peek() == ("op", ".."):
            raise ExpressionError("a range needs brackets: write [a..b] (both ends included), "
                                  "[a..b[ (end excluded) or ]a..b] (start excluded)")
        return f"{INPUT_NAME} is None" if value == "None" else f"{INPUT_NAME} == {value}"

    def interval(self) -> str:
        opening = self.take()[1]
        low = self.endpoint()
        self.take("..")
        high = self.endpoint()
        closing = self.take()
        if closing[0] != "op" or closing[1] not in ("]", "[", ")"):
            raise _NotFeel("an interval ends with ], [ or )")
        if "None" in (low, high):
            raise ExpressionError("null cannot be the end of a range")
        low_op = "<=" if opening == "[" else "<"
        high_op = "<=" if closing[1] == "]" else "<"
        return f"{low} {low_op} {INPUT_NAME} {high_op} {high}"

    def endpoint(self) -> str:
        kind, value = self.take()
        if kind == "op" and value == "-":
            kind, value = self.take()
            if kind != "number":
                raise _NotFeel("'-' before something that is not a number")
            return f"-{value}"
        if kind == "number":
            return value
        if kind == "string":  # no `?` in the text: SpiffWorkflow would take it for the input value
            return repr(ast.literal_eval(value)).replace("?", "\\x3f")
        if kind == "name":
            if self.peek() in (("op", "("), ("op", "[")) or value in ("and", "or", "not", "in"):
                raise _NotFeel("not a simple value")
            return _LITERALS.get(value, value)
        raise _NotFeel(f"unexpected {value!r}")


_AMBIGUOUS = (ast.Tuple, ast.List, ast.Set, ast.BoolOp, ast.Compare)
_FEEL_FUNCTIONS = re.compile(r"^\s*(date and time|date|time|duration|years and months duration)\s*\(")
_STRINGS = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")


def _python_cell(text: str) -> str:
    """A cell that is not FEEL: Python as SpiffWorkflow reads it, made explicit, or ExpressionError."""
    if _FEEL_FUNCTIONS.match(text):
        raise ExpressionError(f"input entry {text!r}: FEEL functions are not supported; compare ISO dates "
                              "as text (\"2026-01-01\") or use datetime.date(...)")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        pass
    else:
        if isinstance(tree, _AMBIGUOUS) or (isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.Not)):
            raise ExpressionError(f"input entry {text!r} is not supported: as FEEL and as Python it means "
                                  "different things; list values with commas (\"a\", \"b\"), negate with "
                                  "not(...), give ranges as [a..b], compare with > 5 or ? > 5")
        return f"{INPUT_NAME} == ({text})"
    try:
        tree = ast.parse(f"{INPUT_NAME} {text}", mode="eval").body
    except SyntaxError:
        if re.search(r"\b(and|or)\b", text):
            raise ExpressionError(f"input entry {text!r} is not supported: write a range such as [50..90[ "
                                  "instead of combining comparisons with and/or") from None
        raise ExpressionError(f"input entry {text!r} is neither a supported FEEL unary test (values, "
                              "comparisons such as >= 5, ranges such as [1..5[, comma lists, not(...)) nor "
                              "a Python expression") from None
    if isinstance(tree, ast.BoolOp):
        raise ExpressionError(f"input entry {text!r} is not supported: write a range such as [50..90[ "
                              "instead of combining comparisons with and/or")
    return f"{INPUT_NAME} {text}"


def translate_input_entry(text: str | None) -> str | None:
    """The Python match expression for one input entry, or None for "any value" (``-`` or empty).
    Raises ExpressionError for a cell that cannot be evaluated or would be read ambiguously."""
    text = (text or "").strip()
    if text in ("", "-"):
        return None
    if "?" in _STRINGS.sub("", text):  # SpiffWorkflow's double-ended test (`4 < ? < 6`): `?` is the input
        try:
            ast.parse(re.sub(r"\?", INPUT_NAME, text), mode="eval")
        except SyntaxError:
            raise ExpressionError(f"input entry {text!r} is not a valid expression") from None
        return text
    try:
        return _Parser(text).cell()
    except _NotFeel:
        return _python_cell(text)
