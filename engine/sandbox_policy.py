"""Compile-time half of the expression sandbox: which Python a model may contain, and how it is rewritten.

Source text is parsed, checked and rewritten by :class:`SandboxPolicy` (a RestrictedPython
``RestrictingNodeTransformer``) and compiled with ``compile_restricted_eval``/``compile_restricted_exec``.
Besides RestrictedPython's own guards (attribute, item, iteration, write and unpack guards) the policy

* refuses imports, class definitions, ``global``, ``yield``, ``with``, bare ``except:`` and a list of
  names that open a way out of the sandbox (``__import__``, ``eval``, ``getattr``, ``type``, ...);
* injects a budget check ``_tick_()`` at the top of every loop body and into every comprehension;
* wraps every ``def`` and ``lambda`` in ``_fn_`` (time check and recursion depth);
* routes ``+``, ``*``, ``**``, ``<<`` and ``%`` through size-checking guards and every f-string value through
  ``_fmt_`` (the runtime guards live in :mod:`engine.sandbox`).

The second half of this module holds those runtime guards and the per-evaluation budget (time,
size, recursion depth, memory).  :func:`check_expression` reports problems without running anything.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Literal, NamedTuple

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr_raise,
)
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

Mode = Literal["eval", "exec"]

#: Names that are never available, whatever the task data holds.  Using one is a violation.
FORBIDDEN_NAMES = frozenset(
    {
        "eval", "exec", "compile", "open", "input", "breakpoint", "help", "globals", "locals", "vars", "dir",
        "getattr", "setattr", "delattr", "hasattr", "type", "object", "super", "classmethod",
        "staticmethod", "property", "memoryview", "bytearray", "iter", "id", "issubclass",
        "importlib", "sys", "os", "subprocess", "builtins", "exit", "quit", "copyright", "credits",
        "license", "BaseException", "SystemExit", "KeyboardInterrupt", "GeneratorExit",
        # the key the stored case state marks typed values with (engine.serialization.RESERVED_KEY)
        "typename",
    }
)

#: Attributes that are never readable (besides every name starting with "_").
FORBIDDEN_ATTRIBUTES = frozenset(INSPECT_ATTRIBUTES | {"format", "format_map", "mro", "translate", "maketrans"})

#: BinOp operators whose result can be huge; each is replaced by a call of the named runtime guard.
GUARDED_OPERATORS = {ast.Add: "_add_", ast.Mult: "_mul_", ast.Pow: "_pow_", ast.LShift: "_lshift_", ast.Mod: "_mod_"}

#: Widths and precisions in f-string format specs above this are refused (they allocate that much).
MAX_FORMAT_WIDTH = 1000


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Name(name, ast.Load()), args=list(args), keywords=[])


def _located(new: ast.AST, old: ast.AST) -> ast.AST:
    return ast.fix_missing_locations(ast.copy_location(new, old))


class SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython policy with Fallwerk's extra refusals and budget instrumentation."""

    def error(self, node: ast.AST, info: str) -> None:
        message = f"line {getattr(node, 'lineno', '?')}: {info}"
        if message not in self.errors:
            self.errors.append(message)

    def refuse(self, node: ast.AST, what: str) -> None:
        self.error(node, f"{what} not allowed")

    # names and attributes
    def visit_Name(self, node: ast.Name):
        if node.id in FORBIDDEN_NAMES or (node.id.startswith("_") and node.id != "_"):
            self.error(node, f"expression uses a forbidden name '{node.id}'")
            return node
        return super().visit_Name(node)

    def visit_Attribute(self, node: ast.Attribute):
        if node.attr.startswith("_") or node.attr in FORBIDDEN_ATTRIBUTES:
            self.error(node, f"expression uses a forbidden attribute '{node.attr}'")
            self.node_contents_visit(node)
            return node
        return super().visit_Attribute(node)

    # statements the expression language does not have
    def visit_Import(self, node):
        self.refuse(node, "import statements are")

    visit_ImportFrom = visit_Import

    def visit_ClassDef(self, node):
        self.refuse(node, "class definitions are")

    def visit_Global(self, node):
        self.refuse(node, "global statements are")

    def visit_Yield(self, node):
        self.refuse(node, "generator functions (yield) are")

    visit_YieldFrom = visit_Yield

    def visit_With(self, node):
        self.refuse(node, "with statements are")

    def visit_ExceptHandler(self, node: ast.ExceptHandler):
        if node.type is None:
            self.error(node, "a bare 'except:' is not allowed; name the exception, e.g. 'except ValueError:'")
        return super().visit_ExceptHandler(node)

    # budget instrumentation
    def _tick(self, node: ast.AST) -> ast.Expr:
        return _located(ast.Expr(_call("_tick_")), node)

    def visit_While(self, node: ast.While):
        node = super().visit_While(node)
        node.body.insert(0, self._tick(node))
        return node

    def visit_For(self, node: ast.For):
        node = super().visit_For(node)
        node.body.insert(0, self._tick(node))
        return node

    def visit_comprehension(self, node: ast.comprehension):
        node = super().visit_comprehension(node)
        node.ifs.insert(0, _located(_call("_tick_"), node.iter))
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef):
        if node.name.startswith("_"):
            self.error(node, f"expression uses a forbidden name '{node.name}'")
        node = super().visit_FunctionDef(node)
        node.decorator_list.append(_located(ast.Name("_fn_", ast.Load()), node))
        return node

    def visit_Lambda(self, node: ast.Lambda):
        node = super().visit_Lambda(node)
        return _located(_call("_fn_", node), node)

    def visit_BinOp(self, node: ast.BinOp):
        node = super().visit_BinOp(node)
        guard = GUARDED_OPERATORS.get(type(node.op))
        if guard is None:
            return node
        return _located(_call(guard, node.left, node.right), node)

    def visit_FormattedValue(self, node: ast.FormattedValue):
        node = super().visit_FormattedValue(node)
        spec = node.format_spec
        if spec is not None:
            for part in getattr(spec, "values", []):
                if not isinstance(part, ast.Constant):
                    self.error(node, "computed format specifications in f-strings are not allowed")
                elif any(int(n) > MAX_FORMAT_WIDTH for n in re.findall(r"\d+", str(part.value))):
                    self.error(node, f"format widths above {MAX_FORMAT_WIDTH} are not allowed")
        node.value = _located(_call("_fmt_", node.value), node.value)
        return node


class Compiled(NamedTuple):
    code: object | None
    #: syntax error message, if the source does not parse
    syntax_error: str | None
    #: policy violations ("line N: ..."), empty when the code compiled
    violations: tuple[str, ...]


def _syntax_message(err: SyntaxError) -> str:
    return f"line {err.lineno}: invalid syntax ({err.msg})"


@lru_cache(maxsize=4096)
def compile_sandboxed(source: str, mode: Mode) -> Compiled:
    """Parse, check and compile *source*; cached by (source, mode).  Never raises for bad source."""
    if mode not in ("eval", "exec"):
        raise ValueError(f"mode must be 'eval' or 'exec', not {mode!r}")
    try:
        tree = ast.parse(source, "<sandbox>", mode)
    except SyntaxError as err:
        return Compiled(None, _syntax_message(err), ())
    except ValueError as err:  # e.g. null bytes in the source
        return Compiled(None, f"line 1: invalid source ({err})", ())
    compiler = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    result = compiler(tree, filename="<sandbox>", policy=SandboxPolicy)
    if result.errors or result.code is None:
        return Compiled(None, None, tuple(result.errors) or ("line 1: expression could not be compiled",))
    return Compiled(result.code, None, ())


def check_expression(source: str, *, mode: Mode) -> list[str]:
    """Return human-readable problems of *source* without running it (empty list: fine).

    Reports syntax errors, forbidden names, dunder and other forbidden attributes, import statements
    and the other constructs the sandbox refuses.  ``mode`` is ``"eval"`` for expressions (conditions,
    timer values, DMN cells) and ``"exec"`` for script tasks.
    """
    compiled = compile_sandboxed(source, mode)
    if compiled.syntax_error:
        return [compiled.syntax_error]
    return list(compiled.violations)


# === runtime: bounds and guards ====================================================================
@dataclass(frozen=True)
class SandboxLimits:
    timeout: float = 1.0  #: seconds per evaluation
    max_length: int = 1_000_000  #: characters/items of one value built by an operation
    max_int_bits: int = 100_000  #: size of integers (about 30,000 decimal digits)
    max_range: int = 1_000_000  #: numbers in one range()
    max_depth: int = 100  #: nested calls of functions defined in the code
    max_memory: int = 256 * 2**20  #: bytes the process may grow during one evaluation
    max_stored: int = 10_000_000  #: estimated serialised size of one value written to task data


class Violation(BaseException):
    """Raised inside the sandbox; a BaseException so that `except Exception` in model code cannot catch it."""


def refuse(message: str):
    raise Violation(message)


def _rss() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * 4096
    except (OSError, ValueError, IndexError):
        return None


class Budget:
    __slots__ = ("base_rss", "deadline", "depth", "limits", "next_memory_check", "tripped")

    def __init__(self, limits: SandboxLimits):
        now = time.monotonic()
        self.limits, self.deadline, self.next_memory_check = limits, now + limits.timeout, now + 0.002
        self.depth, self.tripped, self.base_rss = 0, None, None

    def check(self) -> bool:
        if self.tripped:  # sticky: once a bound is hit, every later check fails again
            raise Violation(self.tripped)
        now = time.monotonic()
        if now > self.deadline:
            self.trip(f"expression ran longer than {self.limits.timeout:g} s (time bound)")
        if now > self.next_memory_check:
            self.next_memory_check = now + 0.002
            rss = _rss()
            if rss is None:
                self.next_memory_check = math.inf
            elif self.base_rss is None:
                self.base_rss = rss
            elif rss - self.base_rss > self.limits.max_memory:
                self.trip(f"expression used more than {self.limits.max_memory >> 20} MiB (memory bound)")
        return True

    def trip(self, message: str):
        self.tripped = message
        raise Violation(message)


_local = threading.local()


def current_budget() -> Budget:
    """The budget of the evaluation running in this thread."""
    budget = getattr(_local, "budget", None)
    return budget if budget is not None else Budget(SandboxLimits())


def enter_budget(limits: SandboxLimits) -> Budget | None:
    """Start a fresh budget for this thread; returns the previous one for :func:`leave_budget`."""
    previous = getattr(_local, "budget", None)
    _local.budget = Budget(limits)
    return previous


def leave_budget(previous: Budget | None) -> None:
    _local.budget = previous


# --- size estimates -------------------------------------------------------------------------------
def check_length(size: int) -> None:
    limit = current_budget().limits.max_length
    if size > limit:
        refuse(f"expression would build a value of {size:,} characters or items (size bound {limit:,})")


def _check_bits(bits: float) -> None:
    limit = current_budget().limits.max_int_bits
    if bits > limit:
        refuse(f"expression would compute a number of about {int(bits):,} bits (size bound {limit:,})")


def check_int_source(value) -> None:
    if isinstance(value, Decimal) and value.is_finite() and abs(value.adjusted()) * 3.33 > \
            current_budget().limits.max_int_bits:
        refuse(f"Decimal {value} is too large to convert (size bound)")


def measure(value, limit: int) -> None:
    """Estimate the printed size of *value*; refuse above *limit*."""
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bytes:
            total += len(item) * (1 if kind is str else 4) + 2
        elif kind is int:
            total += item.bit_length() // 3 + 2
        elif kind is list or kind is tuple or kind is set or kind is frozenset:
            total += len(item) + 2
            if total <= limit:
                stack.extend(item)
        elif kind is dict:
            total += 2 * len(item) + 2
            if total <= limit:
                stack.extend(item)
                stack.extend(item.values())
        elif kind is Decimal:
            check_int_source(item)
            total += 32
        else:
            total += 64
        if total > limit:
            refuse(f"value is too large: more than {limit:,} characters when printed or stored (size bound)")


def check_printable(value) -> None:
    if type(value) not in (str, int, float, bool):
        measure(value, current_budget().limits.max_length)


# --- operator and builtin guards (the policy rewrites code to call these) --------------------------
_SEQUENCES = (str, bytes, list, tuple)


def _add_(a, b):
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
        check_length(len(a) + len(b))
    return a + b


def _iadd_(a, b):
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
        check_length(len(a) + len(b))
    return operator.iadd(a, b)


def _mul_(a, b):
    if isinstance(a, int) and isinstance(b, int):
        _check_bits(a.bit_length() + b.bit_length())
    elif isinstance(a, _SEQUENCES) and isinstance(b, int):
        check_length(len(a) * b)
    elif isinstance(b, _SEQUENCES) and isinstance(a, int):
        check_length(len(b) * a)
    return a * b


def _pow_(a, b):
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        _check_bits(math.log2(abs(a)) * b)
    return a**b


def _lshift_(a, b):
    if isinstance(a, int) and isinstance(b, int) and a and b > 0:
        _check_bits(a.bit_length() + b)
    return a << b


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _mod_(a, b):
    if isinstance(a, (str, bytes)):
        text = a if isinstance(a, str) else a.decode("latin-1")
        for width, precision in _PERCENT_SPEC.findall(text):
            if "*" in (width, precision) or int(width or 0) > 1000 or int(precision or 0) > 1000:
                refuse("'%' formatting with '*' or widths above 1000 is not allowed")
        measure(b, max(current_budget().limits.max_length - len(a), 0))
    return a % b


def _fmt_(value):
    check_printable(value)
    return value


def _tick_():
    return current_budget().check()


def _fn_(func):
    def sandboxed_function(*args, **kwargs):
        budget = current_budget()
        budget.check()
        budget.depth += 1
        try:
            if budget.depth > budget.limits.max_depth:
                budget.trip(f"functions called each other more than {budget.limits.max_depth} deep "
                            "(recursion bound)")
            return func(*args, **kwargs)
        finally:
            budget.depth -= 1

    return sandboxed_function


_SIZED_METHODS = frozenset({"join", "replace", "ljust", "rjust", "center", "zfill", "expandtabs"})


def _sized_method(text, name):
    method = getattr(text, name)

    def call(*args, **kwargs):
        try:
            if name == "join":
                items = list(args[0])
                args = (items,)
                size = sum(len(i) for i in items if isinstance(i, (str, bytes))) + len(text) * len(items)
            elif name == "replace":
                old, new = args[0], args[1]
                count = args[2] if len(args) > 2 else kwargs.get("count", -1)
                hits = text.count(old) if old else len(text) + 1
                size = len(text) + (min(hits, count) if count >= 0 else hits) * max(len(new) - len(old), 0)
            elif name == "expandtabs":
                tab = "\t" if isinstance(text, str) else b"\t"
                size = len(text) + text.count(tab) * (args[0] if args else kwargs.get("tabsize", 8))
            else:
                size = args[0] if args else kwargs.get("width", 0)
        except (TypeError, IndexError, AttributeError):
            size = 0  # malformed call: let the method raise its own error
        check_length(size)
        return method(*args, **kwargs)

    return call


def _getattr_(obj, name):
    if not isinstance(name, str) or name.startswith("_") or name in FORBIDDEN_ATTRIBUTES:
        refuse(f"expression uses a forbidden attribute '{name}'")
    if name in _SIZED_METHODS:
        if isinstance(obj, (str, bytes)):
            return _sized_method(obj, name)
        if isinstance(obj, type):
            refuse(f"call .{name}() on a value, not on a type")
    return safer_getattr_raise(obj, name)


class _NoPrint:
    """print() is accepted and does nothing (there is nowhere to print to)."""

    def __init__(self, _getattr_=None):
        pass

    def _call_print(self, *args, **kwargs):
        return None

    def __call__(self):
        return ""


_INPLACE = {"+=": _iadd_, "-=": operator.isub, "*=": _mul_, "/=": operator.itruediv,
            "//=": operator.ifloordiv, "%=": _mod_, "**=": _pow_, "<<=": _lshift_, ">>=": operator.irshift,
            "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor, "@=": operator.imatmul}

#: Guards referenced by the rewritten code; put into every namespace last, so data cannot shadow them.
GUARDS = {
    "_getattr_": _getattr_, "_getitem_": operator.getitem, "_getiter_": iter, "_write_": full_write_guard,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence, "_unpack_sequence_": guarded_unpack_sequence,
    "_inplacevar_": lambda op, x, y: _INPLACE[op](x, y), "_apply_": lambda f, *a, **k: f(*a, **k),
    "_print_": _NoPrint, "_print": _NoPrint(), "_tick_": _tick_, "_fn_": _fn_,
    "_add_": _add_, "_mul_": _mul_, "_pow_": _pow_, "_lshift_": _lshift_, "_mod_": _mod_, "_fmt_": _fmt_,
}
