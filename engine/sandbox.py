"""Sandboxed script engine: every expression and script of a model runs here, never in plain eval/exec.

Use ``BpmnWorkflow(spec, subprocess_specs, script_engine=SandboxScriptEngine())`` and re-attach the engine
after deserialising (the serializer drops it).  Code is compiled once per source text by
:mod:`engine.sandbox_policy` (RestrictedPython plus budget instrumentation) and runs with the small
whitelist of builtins and modules below, RestrictedPython's guards, and bounds on time, size,
recursion and memory (:class:`SandboxLimits`).

Which exception does a caller catch?
    :class:`engine.errors.SandboxViolation` when the code tried something forbidden or hit a bound, and
    :class:`engine.errors.ExpressionError` for ordinary failures (syntax, NameError, ZeroDivisionError,
    TypeError, ...).  Both are FallwerkErrors with ``element_id`` (the BPMN id of the task) and
    ``expression`` set, raised directly from ``evaluate``/``execute``; SpiffWorkflow's task machinery
    lets them through unchanged.  Where SpiffWorkflow wraps errors itself (the DMN engine turns every
    error into a ``WorkflowTaskException``) the FallwerkError is the wrapper's ``exception`` and
    ``__context__``: :func:`find_expression_error` digs it out of any exception.

Bounds are checked at every loop iteration, comprehension item and function call and before
operations that could build a huge value in one step (``*``, ``**``, ``<<``, ``%``, ``str()``,
f-strings, ``join``, ``replace``, padding, ``range``, ``sum``, ``int()`` of a Decimal).  One C-level
operation on values within the size bounds is not interrupted; it is bounded by those sizes instead.
Regular expressions get a hard time bound only when the ``regex`` package is installed; without it,
patterns that nest repetitions are refused and repeating patterns only run on texts up to 10,000
characters.  The memory bound (growth of the process's resident set during one evaluation, Linux only)
is a backstop and can, rarely, be tripped by another thread allocating at the same time.
"""

from __future__ import annotations

import ast
import datetime as _dt
import json
import math
import re
import reprlib
import time
from collections.abc import Iterator
from decimal import Decimal
from functools import lru_cache

from SpiffWorkflow.bpmn.script_engine.python_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

from engine.clock import _ClockedDatetime
from engine.errors import ExpressionError, FallwerkError, SandboxViolation
from engine.sandbox_policy import (
    GUARDS,
    SandboxLimits,
    Violation,
    _getattr_,
    _pow_,
    check_expression,
    check_int_source,
    check_printable,
    compile_sandboxed,
    current_budget,
    enter_budget,
    leave_budget,
    measure,
    refuse,
)
from engine.serialization import data_problems, describe_problems

try:  # optional: the `regex` package can time out a running match, the standard `re` cannot
    import regex as _regex
except ImportError:  # pragma: no cover - depends on the installation
    _regex = None

__all__ = ["SandboxEnvironment", "SandboxLimits", "SandboxScriptEngine", "check_expression",
           "find_expression_error"]


# --- builtins with bounds ---------------------------------------------------------------------------
class _GuardedType(type):
    """Metaclass of the stand-ins for `str` and `int`: isinstance() works, calls are size-checked."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, cls._wrapped)

    def __subclasscheck__(cls, sub):
        return issubclass(sub, cls._wrapped)

    def __call__(cls, *args, **kwargs):
        if args or "object" in kwargs:
            cls._check(args[0] if args else kwargs["object"])
        return cls._wrapped(*args, **kwargs)

    def __getattr__(cls, name):
        return _getattr_(cls._wrapped, name)

    def __repr__(cls):
        return repr(cls._wrapped)


class _Str(metaclass=_GuardedType):
    _wrapped, _check = str, staticmethod(check_printable)


class _Int(metaclass=_GuardedType):
    _wrapped, _check = int, staticmethod(check_int_source)


def _range(*args):
    numbers = range(*args)
    limit = current_budget().limits.max_range
    try:
        too_long = len(numbers) > limit
    except OverflowError:
        too_long = True
    if too_long:
        refuse(f"range() with more than {limit:,} numbers is not allowed (size bound)")
    return numbers


def _sum(iterable, start=0):
    if not isinstance(start, (int, float, Decimal, _dt.timedelta)):
        refuse("sum() adds numbers and durations only; use '+' or join() for lists and strings")
    budget, total = current_budget(), start
    for index, item in enumerate(iterable):
        if not index & 1023:
            budget.check()
        total = total + item
    return total


def _round(number, ndigits=None):
    if ndigits is None:
        check_int_source(number)
        return round(number)
    return round(number, ndigits)


def _pow(base, exp, mod=None):
    if mod is None:
        return _pow_(base, exp)
    if any(isinstance(v, int) and v.bit_length() > 4096 for v in (exp, mod)):
        refuse("pow() with a modulus is limited to 4096-bit numbers (size bound)")
    return pow(base, exp, mod)


def _repr(obj):
    check_printable(obj)
    return repr(obj)


def _to_int(function):
    def rounded(x):
        check_int_source(x)
        return function(x)

    return rounded


def json_dumps(obj, sort_keys=False):
    measure(obj, current_budget().limits.max_length)
    return json.dumps(obj, sort_keys=sort_keys, default=str, ensure_ascii=False)


def json_loads(text):
    return json.loads(text)


class _Namespace:
    """A read-only, module-like bag of names; asking for anything else is a violation."""

    def __init__(self, label: str, **members):
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_members", members)

    def __getattr__(self, name):
        if name in self._members:
            return self._members[name]
        refuse(f"'{self._label}' offers only {', '.join(sorted(self._members))}; "
               f"'{self._label}.{name}' is not available")

    def __setattr__(self, name, value):
        raise TypeError(f"'{self._label}' cannot be changed")

    def __repr__(self):
        return f"<{self._label}>"


# --- regular expressions: `regex` with a timeout when installed, else `re` with static checks ------------
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}


def _risky(items, in_repeat: bool) -> bool:
    """True if a parsed pattern nests a repetition, or an alternation, inside a repetition."""
    for op, arg in items:
        kind = str(op)
        if kind in _REPEATS:
            if (arg[1] > 1 and in_repeat) or _risky(arg[2], in_repeat or arg[1] > 1):
                return True
        elif kind == "BRANCH":
            if in_repeat or any(_risky(alt, in_repeat) for alt in arg[1]):
                return True
        elif kind in ("SUBPATTERN", "ASSERT", "ASSERT_NOT") and _risky(arg[-1], in_repeat):
            return True
    return False


@lru_cache(maxsize=512)
def _compile_pattern(pattern, flags):
    """(compiled pattern, or None if refused; whether it repeats anything).  Same refusals with or without
    `regex`, so a model behaves alike on every installation."""
    try:
        risky = _risky(re._parser.parse(pattern, flags), False)
    except re.error:
        if _regex is None:
            raise
        risky = False  # syntax only `regex` understands: rely on its timeout
    if risky:
        return None, True
    if _regex is not None:
        return _regex.compile(pattern, flags), True
    return re.compile(pattern, flags), any(c in pattern for c in "*+{")


class _Match:
    _ALLOWED = frozenset({"group", "groups", "groupdict", "start", "end", "span", "string", "lastindex",
                          "lastgroup"})

    def __init__(self, match):
        self._m = match

    def __getattr__(self, name):
        if name in _Match._ALLOWED:
            return getattr(self._m, name)
        refuse(f"a regular-expression match offers only {', '.join(sorted(_Match._ALLOWED))}")

    def __getitem__(self, group):
        return self._m[group]

    def __repr__(self):
        return f"<match {reprlib.repr(self._m.group(0))}>"


class _Pattern:
    def __init__(self, pattern, flags=0):
        self.pattern = pattern
        self._p, self._repeats = _compile_pattern(pattern, flags)
        if self._p is None:
            refuse(f"regular expression {pattern!r} nests repetitions and could run for ever; simplify it")

    def _run(self, method, *args):
        if not isinstance(args[1 if method == "sub" else 0], str):
            raise TypeError("regular expressions work on strings only")
        if _regex is None:
            if self._repeats and len(args[1 if method == "sub" else 0]) > 10_000:
                refuse("repeating regular expressions on texts over 10,000 characters need the 'regex' package")
            return getattr(self._p, method)(*args)
        budget = current_budget()
        try:
            return getattr(self._p, method)(*args, timeout=max(budget.deadline - time.monotonic(), 0.001))
        except TimeoutError:
            budget.trip(f"regular expression ran longer than {budget.limits.timeout:g} s (time bound)")

    def match(self, string):
        found = self._run("match", string)
        return found and _Match(found)

    def search(self, string):
        found = self._run("search", string)
        return found and _Match(found)

    def fullmatch(self, string):
        found = self._run("fullmatch", string)
        return found and _Match(found)

    def findall(self, string):
        return self._run("findall", string)

    def split(self, string, maxsplit=0):
        return self._run("split", string, maxsplit)

    def sub(self, repl, string, count=0):
        produced, limit = [0], current_budget().limits.max_length

        def replace(match):
            if isinstance(repl, str):
                produced[0] += len(repl) + repl.count("\\") * (match.end() - match.start())
                out = ("" if produced[0] > limit else match.expand(repl) if "\\" in repl else repl)
            else:
                out = repl(_Match(match))
                if not isinstance(out, str):
                    raise TypeError("the replacement function must return a string")
                produced[0] += len(out)
            if produced[0] > limit:
                refuse(f"re.sub() would build more than {limit:,} characters (size bound)")
            return out

        return self._run("sub", replace, string, count)


def _re_function(method):
    def call(pattern, *args, flags=0):
        return getattr(_Pattern(pattern, flags), method)(*args)

    call.__name__ = method
    return call


_RE = _Namespace(
    "re", compile=_Pattern, escape=re.escape,
    **{name: _re_function(name) for name in ("match", "search", "fullmatch", "findall", "split", "sub")},
    **{name: getattr(re, name) for name in ("I", "IGNORECASE", "M", "MULTILINE", "S", "DOTALL", "X",
                                            "VERBOSE", "A", "ASCII")},
)
_MATH = _Namespace(
    "math", floor=_to_int(math.floor), ceil=_to_int(math.ceil), trunc=_to_int(math.trunc),
    **{name: getattr(math, name) for name in (
        "pi", "e", "tau", "inf", "nan", "sqrt", "isqrt", "exp", "log", "log10", "log2", "pow", "fabs",
        "fsum", "isclose", "isfinite", "isinf", "isnan", "gcd", "copysign", "fmod", "hypot", "sin", "cos",
        "tan", "asin", "acos", "atan", "atan2", "radians", "degrees")},
)
# `datetime.datetime.now()` in a model is the engine's clock (engine/clock.py), so that a worker run
# with `--now` and the tests see the same time in scripts as in timers.
_DATETIME = _Namespace("datetime", date=_dt.date, datetime=_ClockedDatetime, time=_dt.time,
                       timedelta=_dt.timedelta, timezone=_dt.timezone)

#: values that are a script's tools, not data (besides anything callable): a script's variable holding one
#: is not kept in the task data
_TOOLS = (_Namespace, _Pattern, _Match, range, Iterator, _dt.tzinfo)


def _tool_kind(value) -> str:
    for kind, name in ((_Pattern, "regular expression"), (_Match, "match"), (_Namespace, "module")):
        if isinstance(value, kind):
            return name
    return "function" if callable(value) else type(value).__name__


_INTERNAL_IMPORTS = frozenset({"time", "_strptime", "calendar", "locale", "unicodedata"})


def _internal_import(name, globals=None, locals=None, fromlist=(), level=0):
    """C code (e.g. strftime imports `time`) imports through the caller's builtins; model code cannot
    name `__import__` at all, so this only serves those internal imports."""
    if level == 0 and name in _INTERNAL_IMPORTS:
        return __import__(name, globals, locals, fromlist, level)
    refuse(f"importing {name!r} is not allowed")


#: Everything model code can name besides task data and data objects.
SAFE_BUILTINS = {
    "__import__": _internal_import,
    **{f.__name__: f for f in (abs, all, any, bool, chr, divmod, enumerate, filter, float, hex, isinstance,
                               len, list, dict, set, frozenset, tuple, map, max, min, oct, ord, reversed,
                               sorted, zip, callable)},
    **{e.__name__: e for e in (Exception, ArithmeticError, AssertionError, AttributeError, IndexError,
                               KeyError, LookupError, NameError, OverflowError, RuntimeError, TypeError,
                               ValueError, ZeroDivisionError)},
    "str": _Str, "int": _Int, "range": _range, "sum": _sum, "round": _round, "pow": _pow, "repr": _repr,
    "datetime": _DATETIME, "Decimal": Decimal, "math": _MATH, "re": _RE,
    "json_dumps": json_dumps, "json_loads": json_loads,
}


# --- environment and engine ----------------------------------------------------------------------------
def _snippet(source: str) -> str:
    lines = source.strip().splitlines() or [""]
    return lines[0] if len(lines) == 1 and len(lines[0]) <= 80 else lines[0][:77] + "..."


def _violation_message(problems, source: str) -> str:
    text = problems[0] if "\n" in source.strip() else problems[0].split(": ", 1)[-1]
    return text + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


def _describe(err: Exception, source: str, mode: str) -> str:
    """'NameError: ... (in expression 'x > 1')' without printing anything big the code put in the error."""
    shorten = reprlib.repr if isinstance(err, KeyError) else (lambda a: a[:300] if isinstance(a, str)
                                                              else reprlib.repr(a))
    detail = ", ".join(shorten(arg) for arg in err.args)
    tb, line = err.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<sandbox>":
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f"in expression '{_snippet(source)}'"
    if mode == "exec":
        where = f"in script line {line or '?'}"
        if line and line <= len(source.splitlines()):
            where += f": '{_snippet(source.splitlines()[line - 1])}'"
    return f"{type(err).__name__}: {detail} ({where})" if detail else f"{type(err).__name__} ({where})"


class SandboxEnvironment(BasePythonScriptEngineEnvironment):
    """Runs sandbox-compiled code against task data.  ``environment_globals`` are extra, trusted names."""

    def __init__(self, environment_globals=None, limits: SandboxLimits | None = None):
        super().__init__(environment_globals)
        self.limits = limits or SandboxLimits()
        self.builtins = {**SAFE_BUILTINS, **{k: v for k, v in self.globals.items() if not k.startswith("_")}}

    def evaluate(self, expression, context, external_context=None):
        return self._run(expression, "eval", context, external_context or {})

    def execute(self, script, context, external_context=None):
        external_context = external_context or {}
        clash = set(external_context) & set(context)
        if clash:
            raise ExpressionError(f"task data overwrites data objects: {', '.join(sorted(map(str, clash)))}")
        self._run(script, "exec", context, external_context)
        return True

    def call_service(self, context, **kwargs):
        raise ExpressionError("service tasks are not supported by the sandboxed script engine")

    def _run(self, source, mode, context, external_context):
        compiled = compile_sandboxed(source, mode)
        if compiled.syntax_error:
            raise ExpressionError(f"{compiled.syntax_error} in '{_snippet(source)}'")
        if compiled.violations:
            raise SandboxViolation(_violation_message(compiled.violations, source))
        namespace = dict(external_context)
        namespace.update(context)
        namespace.update(GUARDS)  # last: data cannot shadow a guard
        namespace["__builtins__"] = self.builtins
        previous = enter_budget(self.limits)
        try:
            if mode == "eval":
                result = eval(compiled.code, namespace)  # noqa: S307 - RestrictedPython-compiled and guarded
                measure(result, self.limits.max_stored)
                return result
            exec(compiled.code, namespace)  # noqa: S102 - RestrictedPython-compiled and guarded
            self._store(namespace, context, external_context)
        except Violation as violation:
            raise SandboxViolation(str(violation)) from None
        except RecursionError:
            raise SandboxViolation("calls nested too deeply (recursion bound)") from None
        except MemoryError:
            raise SandboxViolation("expression ran out of memory (memory bound)") from None
        except FallwerkError:
            raise
        except Exception as err:  # noqa: BLE001 - any error of model code becomes an ExpressionError
            plain = all(type(arg) in (str, int, float) for arg in err.args)  # else printing it may be costly
            raise ExpressionError(_describe(err, source, mode)) from (err if plain else None)
        finally:
            leave_budget(previous)

    def _store(self, namespace, context, external_context):
        """Write the script's variables back to task data. Functions and the script's other tools are not
        data: a new variable holding one is not kept, and a data variable cannot become one. Data that could
        not be stored as it is (also changed in place) stops the script."""
        updates = {}
        removed = [k for k in context if isinstance(k, str) and not k.startswith("_") and k not in namespace]
        for key, value in namespace.items():
            if key.startswith("_") or key in external_context or (key in context and context[key] is value):
                continue
            if callable(value) or isinstance(value, _TOOLS):
                if key in context:
                    raise ExpressionError(f"the data variable '{key}' cannot hold a {_tool_kind(value)}, "
                                          "which is not data; use another name")
                continue
            measure(value, self.limits.max_stored)
            updates[key] = value
        problems = data_problems({**{k: v for k, v in context.items() if k not in removed}, **updates})
        if problems:
            raise ExpressionError(f"the script's variables cannot be stored: {describe_problems(problems)}")
        for key in removed:
            del context[key]
        context.update(updates)


def _element_id(task) -> str | None:
    spec = getattr(task, "task_spec", None)
    return getattr(spec, "bpmn_id", None) or getattr(spec, "name", None)


class SandboxScriptEngine(PythonScriptEngine):
    """Drop-in replacement for SpiffWorkflow's PythonScriptEngine (see the module docstring)."""

    def __init__(self, environment=None, *, limits: SandboxLimits | None = None):
        super().__init__(environment or SandboxEnvironment(limits=limits))

    def validate(self, expression):
        """Raise SyntaxError where ast.parse would (the DMN engine relies on it); SandboxViolation if forbidden."""
        ast.parse(expression)
        problems = check_expression(expression, mode="exec")
        if problems:
            raise SandboxViolation(_violation_message(problems, expression))

    def evaluate(self, task, expression, external_context=None):
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except FallwerkError as err:
            self._attach(err, task, expression)
            raise

    def execute(self, task, script, external_context=None):
        try:
            return self.environment.execute(script, task.data, external_context or {})
        except FallwerkError as err:
            self._attach(err, task, script)
            raise

    def call_service(self, task, **kwargs):
        raise ExpressionError("service tasks are not supported by the sandboxed script engine",
                              element_id=_element_id(task))

    @staticmethod
    def _attach(err, task, source):
        err.element_id = err.element_id or _element_id(task)
        err.expression = source


def find_expression_error(exc: BaseException | None) -> ExpressionError | None:
    """The ExpressionError (or SandboxViolation) behind *exc*, following wrappers and exception chains."""
    seen, todo = set(), [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ExpressionError):
            return current
        todo += [getattr(current, "exception", None), current.__cause__, current.__context__]
    return None
