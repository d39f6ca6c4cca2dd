"""The expression sandbox: escape and denial-of-service attempts fail cleanly, normal code keeps working."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.camunda.parser import CamundaParser

from engine.errors import ExpressionError, FallwerkError, SandboxViolation
from engine.sandbox import (
    SandboxLimits,
    SandboxScriptEngine,
    check_expression,
    find_expression_error,
)

ENGINE = SandboxScriptEngine()


def make_task(data=None, bpmn_id="Gateway_1"):
    return SimpleNamespace(data=dict(data or {}), task_spec=SimpleNamespace(bpmn_id=bpmn_id, name="task"))


# --- escapes and denials: every one fails with an error that names the element ---------------------
ESCAPES_EVAL = [
    "__import__('os')",
    "().__class__.__base__.__subclasses__()",
    "[].__class__.__mro__",
    "getattr(x, '__class__')",
    "getattr(x, '__cl' + 'ass__')",
    "'{0.__class__}'.format(1)",
    "'{0.__class__.__base__}'.format_map({})",
    "vars()",
    "globals()",
    "locals()",
    "dir()",
    "type(x).__mro__",
    "type(x)('5')",
    "(y for y in []).gi_frame.f_globals",
    "open('/etc/passwd').read()",
    "exec('1')",
    "eval('1')",
    "compile('1', 'f', 'eval')",
    "breakpoint()",
    "setattr(x, 'a', 1)",
    "delattr(x, 'a')",
    "__builtins__['__import__']",
    "sys.modules",
    "help()",
    "datetime.sys",
    "'{x.__class__}'.format(x=name)",
    "name.format(x)",
    "ValueError.mro()",
    "str.join(',', ['a'])",
    "re.match('a', 'a').re",
    "math.factorial(10)",
    "iter(int, 1)",
]
DENIALS_EVAL = [
    "'a' * 10**10",
    "[0] * 10**9",
    "2 ** 10 ** 10",
    "10 ** 10 ** 10",
    "1 << 10**10",
    "pow(2, 10**10)",
    "range(10**12)",
    "(lambda f: f(f))(lambda f: f(f))",
    "(lambda f: (lambda x: f(lambda v: x(x)(v)))(lambda x: f(lambda v: x(x)(v))))(lambda r: lambda n: r(n + 1))(0)",
    "re.match('(a+)+$', 'a' * 40 + 'b')",
    "re.match('(a|aa)+$', 'a' * 40 + 'b')",
    "str(['a' * 10**6] * 1000)",
    "str(object=['a' * 10**6] * 1000)",
    "''.join(['a' * 10**6] * 1000)",
    "'%s%s%s' % tuple(['a' * 10**6] * 3)",
    "'x'.ljust(10**9)",
    "'ab'.replace('', 'x' * 10**6)",
    "f'{x:>100000000}'",
    "int(Decimal('1e999999'))",
    "sum([[1] * 1000] * 1000, [])",
    "re.sub('', 'x' * 10000, 'a' * 1000)",
]
ESCAPES_EXEC = [
    "import os",
    "import importlib",
    "from os import system",
    "__import__('os').system('echo pwned')",
    "class A:\n    pass",
    "try:\n    x = 1\nexcept:\n    pass",
    "def __init__():\n    pass",
]
DENIALS_EXEC = [
    "while True:\n    pass",
    "for i in range(10**12):\n    pass",
    "def f(n):\n    return f(n + 1)\nf(0)",
    "s = 'ab'\nfor i in range(100):\n    s = s * 2",
    "s = 'a'\nwhile True:\n    s = s + s",
    "s = 'a'\nwhile True:\n    s += s",
    "d = {'n': 1}\nd['n'] += 1",
    "while True:\n    try:\n        while True:\n            pass\n    except Exception:\n        pass",
    "l = []\nwhile True:\n    l.append([0] * 100000)",
    "def f():\n    try:\n        return f()\n    except RuntimeError:\n        return f()\nf()",
]
FAST = SandboxScriptEngine(limits=SandboxLimits(timeout=0.3))


@pytest.mark.parametrize("expression", ESCAPES_EVAL + DENIALS_EVAL)
def test_expression_escape_or_denial_fails(expression):
    task = make_task({"x": 5, "name": "{0.__class__}"})
    with pytest.raises(ExpressionError) as caught:
        FAST.evaluate(task, expression)
    assert caught.value.element_id == "Gateway_1"
    assert str(caught.value).startswith("Gateway_1: ")
    assert caught.value.expression == expression


@pytest.mark.parametrize("script", ESCAPES_EXEC + DENIALS_EXEC)
def test_script_escape_or_denial_fails(script):
    task = make_task({"x": 5}, bpmn_id="Script_1")
    with pytest.raises(SandboxViolation) as caught:
        FAST.execute(task, script)
    assert str(caught.value).startswith("Script_1: ")
    assert task.data == {"x": 5}  # nothing half-written


@pytest.mark.parametrize("expression", [
    "__import__('os')", "().__class__", "getattr(x, 'a')", "'{}'.format(1)", "'a' * 10**10", "2 ** 10 ** 10",
    "open('/etc/passwd')", "datetime.sys", "re.match('(a+)+$', 'a' * 40 + 'b')", "re.match('(ab|cd)*x', 'abx')",
])
def test_forbidden_things_are_violations_not_just_errors(expression):
    with pytest.raises(SandboxViolation):
        ENGINE.evaluate(make_task({"x": 1}), expression)


def test_violation_message_names_element_and_name():
    with pytest.raises(SandboxViolation) as caught:
        ENGINE.evaluate(make_task(), "__import__('os')")
    assert str(caught.value) == "Gateway_1: expression uses a forbidden name '__import__'"


def test_bounds_in_a_worker_thread():
    errors = []

    def run():
        try:
            FAST.execute(make_task(bpmn_id="Script_9"), "while True:\n    pass")
        except SandboxViolation as exc:
            errors.append(str(exc))

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(10)
    assert errors and "time bound" in errors[0] and errors[0].startswith("Script_9")


def test_regex_time_bound_with_regex_package():
    pytest.importorskip("regex")
    engine = SandboxScriptEngine(limits=SandboxLimits(timeout=0.2))
    with pytest.raises(SandboxViolation, match="time bound"):
        engine.evaluate(make_task(), "re.search('(?:a|b)*?c.*?.*?.*?d', 'ac' * 3000)")


def test_process_keeps_serving_after_the_battery():
    for expression in ESCAPES_EVAL + DENIALS_EVAL:
        with pytest.raises(ExpressionError):
            FAST.evaluate(make_task({"x": 5, "name": "n"}), expression)
    assert ENGINE.evaluate(make_task({"amount": 1500, "approved": True}), "amount > 1000 and approved") is True


# --- ordinary errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("expression", "kind"), [
    ("amount > 1000", "NameError"),
    ("1 / 0", "ZeroDivisionError"),
    ("'a' + 1", "TypeError"),
    ("amount >", "invalid syntax"),
])
def test_ordinary_errors_are_expression_errors(expression, kind):
    with pytest.raises(ExpressionError) as caught:
        ENGINE.evaluate(make_task(), expression)
    assert not isinstance(caught.value, SandboxViolation)
    assert kind in str(caught.value)
    assert str(caught.value).startswith("Gateway_1: ")
    assert expression in str(caught.value)


def test_script_error_names_line():
    with pytest.raises(ExpressionError) as caught:
        ENGINE.execute(make_task(bpmn_id="Script_1"), "a = 1\nb = a / 0\n")
    assert "ZeroDivisionError" in str(caught.value) and "line 2: 'b = a / 0'" in str(caught.value)


def test_model_code_cannot_catch_a_bound():
    script = "n = 0\ntry:\n    while True:\n        n += 1\nexcept Exception:\n    caught = True\n"
    task = make_task()
    with pytest.raises(SandboxViolation):
        FAST.execute(task, script)
    assert "caught" not in task.data


def test_find_expression_error_through_spiff_wrapper():
    workflow = run_model("amount = 5")
    task = next(t for t in workflow.get_tasks() if t.task_spec.bpmn_id == "Gateway_1")
    try:
        try:
            workflow.script_engine.evaluate(task, "1 / 0")
        except ExpressionError as exc:  # SpiffWorkflow's DMN engine wraps every error like this
            raise WorkflowTaskException(str(exc), task=task, exception=exc) from None
    except WorkflowTaskException as wrapped:
        found = find_expression_error(wrapped)
    assert isinstance(found, ExpressionError) and found.element_id == "Gateway_1"
    assert find_expression_error(ValueError("unrelated")) is None


# --- what works ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("expression", "expected"), [
    ("amount > 1000 and approved", True),
    ("amount <= 1000 or not approved", False),
    ("datetime.date(2026, 1, 31) + datetime.timedelta(days=1)", dt.date(2026, 2, 1)),
    ("(datetime.datetime(2026, 3, 1) - datetime.datetime(2026, 2, 1)).days", 28),
    ("datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc).strftime('%Y-%m')", "2026-03"),
    ("datetime.datetime.strptime('01.03.2026', '%d.%m.%Y').date()", dt.date(2026, 3, 1)),
    ("datetime.datetime.now(datetime.timezone.utc).year >= 2024", True),
    ("Decimal('0.10') + Decimal('0.20')", Decimal("0.30")),
    ("[i * 2 for i in items if i > 1]", [4, 6]),
    ("{k: v for k, v in person.items() if v}", {"name": "Ada"}),
    ("person['name'] + ' ' + str(len(items))", "Ada 3"),
    ("person.get('missing', 'n/a')", "n/a"),
    ("sum(items) + max(items) - min(items)", 8),
    ("sorted(items, reverse=True)[0]", 3),
    ("round(2.567, 2)", 2.57),
    ("math.floor(2.5) + math.sqrt(16)", 6.0),
    ("re.match(r'(\\d+)-(\\d+)', '12-34').group(2)", "34"),
    ("re.sub(r'(\\d+)', r'<\\1>', 'a1b22')", "a<1>b<22>"),
    ("json_loads(json_dumps({'a': [1, 2]}))", {"a": [1, 2]}),
    ("f'{amount:,}'", "1,500"),
    ("'%05d' % amount", "01500"),
    ("isinstance(amount, int) and isinstance(person['name'], str)", True),
    ("'x' * 3", "xxx"),
    ("print('ignored') is None", True),
    ("re.match('(a|b)*x', 'abx') is not None", True),
    ("2 ** 10", 1024),
    ("list(range(3))", [0, 1, 2]),
    ("any(i > 2 for i in items) and all(i > 0 for i in items)", True),
])
def test_normal_expressions(expression, expected):
    task = make_task({"amount": 1500, "approved": True, "items": [1, 2, 3], "person": {"name": "Ada", "age": 0}})
    assert ENGINE.evaluate(task, expression) == expected


def test_script_assigns_variables_and_drops_its_tools():
    task = make_task({"items": [1, 2, 3], "old": 1, "keep": "k"}, bpmn_id="Script_1")
    script = (
        "total = 0\n"
        "for i in items:\n"
        "    total += i\n"
        "def double(v):\n"
        "    return v * 2\n"
        "doubled = [double(i) for i in items]\n"
        "due = datetime.date(2026, 1, 1) + datetime.timedelta(days=3)\n"
        "m = re.match('a', 'a')\n"
        "pattern = re.compile('a')\n"
        "pairs = zip(items, items)\n"
        "numbers = range(3)\n"
        "utc = datetime.timezone.utc\n"
        "D = Decimal\n"
        "price = Decimal('9.99')\n"
        "del old\n"
    )
    assert ENGINE.execute(task, script) is True
    assert task.data["total"] == 6 and task.data["doubled"] == [2, 4, 6]
    assert task.data["due"] == dt.date(2026, 1, 4) and task.data["price"] == Decimal("9.99")
    assert task.data["keep"] == "k" and "old" not in task.data
    for gone in ("double", "m", "pattern", "pairs", "numbers", "utc", "D", "__builtins__", "_getattr_"):
        assert gone not in task.data


def test_script_keeps_datetimes_it_builds():
    task = make_task({"client": {"name": "Ada"}}, bpmn_id="Script_1")
    ENGINE.execute(task, (
        "deadline = datetime.datetime(2026, 12, 1, 9, 0)\n"
        "parsed = datetime.datetime.fromisoformat('2026-12-01T09:00')\n"
        "read = datetime.datetime.strptime('01.12.2026', '%d.%m.%Y')\n"
        "joined = datetime.datetime.combine(datetime.date(2026, 12, 1), datetime.time(9, 30))\n"
        "meeting = datetime.time(9, 30)\n"
        "client = dict(client)\n"
        "client['checked_at'] = datetime.datetime(2026, 1, 1, 9, 0)\n"
    ))
    assert task.data["deadline"] == task.data["parsed"] == dt.datetime(2026, 12, 1, 9, 0)
    assert task.data["read"] == dt.datetime(2026, 12, 1)
    assert task.data["joined"] == dt.datetime(2026, 12, 1, 9, 30)
    assert task.data["meeting"] == dt.time(9, 30)
    assert task.data["client"] == {"name": "Ada", "checked_at": dt.datetime(2026, 1, 1, 9, 0)}


@pytest.mark.parametrize("script, message", [
    ("tags = {'a', 'b'}", "tags: a value of type 'set' cannot be stored"),
    ("raw = b'abc'", "raw: a value of type 'bytes' cannot be stored"),
    ("big = 10 ** 5000", "big: a whole number of more than 4,300 digits cannot be stored"),
    ("counts = {1: 'one'}", "counts[1]: keys must be text, not int 1"),
    ("x = {'typename': 'Decimal', 'value': '1.5'}", "x.typename: 'typename' is reserved"),
    ("y = [{'a': {'typename': 'x'}}]", "y[0].a.typename: 'typename' is reserved"),
    ("z = json_loads('{\"typename\": \"datetime\", \"value\": \"2026-01-01\"}')", "z.typename: 'typename'"),
    ("s = json_loads('\"\\\\ud800\"')", "s: text with an unpaired surrogate"),
    ("d = {chr(0xdc00): 1}", "d.\\udc00: a key with an unpaired surrogate"),
    ("items = [len]", "items[0]: a value of type 'builtin_function_or_method' cannot be stored"),
    ("keep = lambda: 1", "the data variable 'keep' cannot hold a function"),
    ("keep = re.compile('a')", "the data variable 'keep' cannot hold a regular expression"),
    ("keep = map(str, [1])", "the data variable 'keep' cannot hold a map"),
])
def test_a_value_that_cannot_be_stored_stops_the_script_and_changes_nothing(script, message):
    task = make_task({"keep": "k"}, bpmn_id="Script_1")
    with pytest.raises(ExpressionError) as caught:
        ENGINE.execute(task, script)
    assert caught.value.element_id == "Script_1"
    assert message in str(caught.value)
    assert task.data == {"keep": "k"}


def test_data_objects_are_visible_but_not_copied():
    task = make_task({"a": 1})
    ENGINE.execute(task, "b = a + limit", external_context={"limit": 10})
    assert task.data == {"a": 1, "b": 11}
    assert ENGINE.evaluate(task, "b > limit", external_context={"limit": 10}) is True


def test_validate_behaves_like_ast_parse_for_dmn():
    ENGINE.validate("v == 3")
    ENGINE.validate("'text'")
    with pytest.raises(SyntaxError):
        ENGINE.validate("> 3")  # the DMN engine then tries f"v {text}"
    ENGINE.validate("v > 3")
    with pytest.raises(SandboxViolation):
        ENGINE.validate("__import__('os')")


def test_check_expression_reports_without_running(tmp_path):
    marker = tmp_path / "ran"
    assert check_expression("amount > 1000 and approved", mode="eval") == []
    assert check_expression("x = 1\nfor i in range(3):\n    x += i", mode="exec") == []
    problems = check_expression(f"open({str(marker)!r}, 'w')", mode="eval")
    assert problems == ["line 1: expression uses a forbidden name 'open'"]
    assert not marker.exists()
    assert "invalid syntax" in check_expression("amount >", mode="eval")[0]
    assert "import statements are not allowed" in check_expression("import os", mode="exec")[0]
    assert "forbidden attribute '__class__'" in check_expression("x.__class__", mode="eval")[0]
    assert check_expression("x = 1", mode="eval")  # a statement is not an expression


def test_compiled_code_is_cached():
    from engine.sandbox_policy import compile_sandboxed

    first = compile_sandboxed("amount > 1000", "eval")
    assert compile_sandboxed("amount > 1000", "eval") is first


# --- end to end: SpiffWorkflow runs a Camunda model with the sandbox --------------------------------
BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="Defs" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="sandboxed" isExecutable="true">
    <bpmn:startEvent id="StartEvent_1"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="Script_1" scriptFormat="python">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:exclusiveGateway id="Gateway_1" default="low">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>high</bpmn:outgoing><bpmn:outgoing>low</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:sequenceFlow id="f1" sourceRef="StartEvent_1" targetRef="Script_1"/>
    <bpmn:sequenceFlow id="f2" sourceRef="Script_1" targetRef="Gateway_1"/>
    <bpmn:sequenceFlow id="high" sourceRef="Gateway_1" targetRef="EndHigh">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">amount &gt; 1000</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="low" sourceRef="Gateway_1" targetRef="EndLow"/>
    <bpmn:endEvent id="EndHigh"><bpmn:incoming>high</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="EndLow"><bpmn:incoming>low</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""


def run_model(script: str) -> BpmnWorkflow:
    parser = CamundaParser()
    parser.add_bpmn_str(BPMN.format(script=script).encode())
    workflow = BpmnWorkflow(parser.get_spec("sandboxed"), parser.get_subprocess_specs("sandboxed"),
                            script_engine=SandboxScriptEngine())
    workflow.do_engine_steps()
    return workflow


def test_bpmn_model_runs_in_the_sandbox():
    workflow = run_model("amount = 600 * 2\nlabel = f'Betrag {amount}'")
    assert workflow.is_completed()
    assert workflow.data["amount"] == 1200 and workflow.data["label"] == "Betrag 1200"
    finished = {t.task_spec.bpmn_id for t in workflow.get_tasks() if t.task_spec.bpmn_id}
    assert "EndHigh" in finished and "EndLow" not in finished


def test_bpmn_model_cannot_run_shell_commands():
    pwned = Path("/tmp/pwned")
    pwned.unlink(missing_ok=True)
    with pytest.raises(FallwerkError) as caught:
        run_model("__import__('os').system('touch /tmp/pwned')")
    assert isinstance(caught.value, SandboxViolation)
    assert caught.value.element_id == "Script_1"
    assert not pwned.exists()
