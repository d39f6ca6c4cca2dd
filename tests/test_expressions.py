"""Camunda JUEL -> sandbox translation, templates and timer values."""

import pytest

from engine.errors import ExpressionError
from engine.expressions import (
    TemplateExpression,
    has_expression,
    resolve_template,
    template,
    timer_expression,
    translate,
)


@pytest.mark.parametrize(
    ("juel", "python"),
    [
        ("${approved}", "approved"),
        ("#{approved}", "approved"),
        ("${!approved}", "not approved"),
        ("#{!twitter}", "not twitter"),
        ("${foo != 'bar'}", "foo != 'bar'"),
        ('${foo == "bar"}', "foo == 'bar'"),
        ("${score <= 5}", "score <= 5"),
        ("${score > 5}", "score > 5"),
        ("${invoiceId != null}", "invoiceId != None"),
        ("${flag == true || other == false}", "flag == True or other == False"),
        ("${a && b}", "a and b"),
        ("${a and b or not c}", "a and b or not c"),
        ("${a eq 1 && b ne 2}", "a == 1 and b != 2"),
        ("${a lt 1 || a gt 2 || a le 3 || a ge 4}", "a < 1 or a > 2 or a <= 3 or a >= 4"),
        ("${a && 'x && y || z'}", "a and 'x && y || z'"),
        ("${s == 'it\\'s'}", "s == \"it's\""),
        ("${s == '}'}", "s == '}'"),
        ("${empty x}", "(x is None or x == '' or x == [] or x == {})"),
        ("${not empty x}", "not (x is None or x == '' or x == [] or x == {})"),
        ("${1 + 2 * 3 - 4 / 2 % 3}", "1 + 2 * 3 - 4 / 2 % 3"),
        ("${(1 + 2) * 3}", "(1 + 2) * 3"),
        ("${a - (b - c)}", "a - (b - c)"),
        ("${a div 2 + b mod 3}", "a / 2 + b % 3"),
        ("${-x > 1.5}", "-x > 1.5"),
        ("${!a == b}", "(not a) == b"),
        ("${a < b == c}", "(a < b) == c"),
        ("  ${ x }  ", "x"),
        # plain text is already the sandbox language
        ("x == 1", "x == 1"),
        ("approved and not rejected", "approved and not rejected"),
        ("", ""),
    ],
)
def test_translation_table(juel, python):
    assert translate(juel) == python


def test_translation_is_valid_python_and_evaluates_like_juel():
    env = {"a": True, "b": False, "x": "", "n": 7}
    cases = {"${a && !b}": True, "${empty x}": True, "${n % 4 == 3}": True, "${!a == b}": True,
             "${n gt 3 and n lt 10}": True}
    for juel, expected in cases.items():
        assert eval(translate(juel), {}, env) is expected, juel


@pytest.mark.parametrize(
    ("juel", "named"),
    [
        ("${execution.getVariable('x')}", "execution.getVariable"),
        ("${genderBean.getGenderString(gender)}", "genderBean.getGenderString"),
        ("${gender == 'male' ? 'Mr.' : 'Mrs.'}", "'?:'"),
        ("${SYS.PROCESSINSTANCE_ID}", "property access"),
        ("${items[0]}", "index access"),
        ("${size(x)}", "call"),
        ("${a & b}", "unexpected character"),
        ("${x", "closing"),
        ("${'abc}", "unterminated"),
        ("${}", "empty expression"),
        ("${class}", "'class'"),
        ("Dear ${name}", "literal text"),
        ("${a} and ${b}", "literal text"),
        ("= not(approved)", "FEEL"),
    ],
)
def test_unsupported_constructs_raise_naming_the_construct(juel, named):
    with pytest.raises(ExpressionError) as info:
        translate(juel)
    assert named in str(info.value)


def test_has_expression():
    assert has_expression("${a}") and has_expression("x #{a}")
    assert not has_expression("a == 1") and not has_expression(None)


def test_template_parts_and_resolution():
    parts = template("${unit}:lead, lks")
    assert parts == [TemplateExpression("${unit}", "unit"), ":lead, lks"]
    env = {"unit": "rostock", "initiator": "anna", "nothing": None}
    evaluate = lambda source: eval(source, {}, env)  # noqa: E731
    assert resolve_template("${unit}:lead, lks", evaluate) == "rostock:lead, lks"
    assert resolve_template("${initiator}", evaluate) == "anna"
    assert resolve_template("plain", evaluate) == "plain"
    assert resolve_template("x${nothing}y", evaluate) == "xy"
    assert resolve_template("\\${literal}", evaluate) == "${literal}"
    assert resolve_template("#{unit == 'rostock'}", evaluate) == "True"
    with pytest.raises(ExpressionError):
        template("${bean.call()}")


@pytest.mark.parametrize("juel", ["${x > ²}", "${x == ١٩}", "${x > 1²}"])
def test_digits_other_than_ascii_are_not_numbers(juel):
    with pytest.raises(ExpressionError):
        translate(juel)


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("PT5M", "timeDuration", '"PT5M"'),
        ("P3D", None, '"P3D"'),
        (" PT0.5S \n", "timeDuration", '"PT0.5S"'),
        ("R3/PT1H", "timeCycle", '"R3/PT1H"'),
        ("R/PT1H", "timeCycle", '"R/PT1H"'),
        ("2026-12-01T09:00:00Z", "timeDate", '"2026-12-01T09:00:00Z"'),
        ("R3/2026-12-01T09:00:00Z/PT1H", "timeCycle", '"R3/2026-12-01T09:00:00Z/PT1H"'),
        ('"PT1S"', "timeDuration", '"PT1S"'),
        ("'P1D'", None, "'P1D'"),
        ("${reminder}", "timeDuration", "reminder"),
        ("due_date", "timeDate", "due_date"),
    ],
)
def test_timer_values(value, kind, expected):
    assert timer_expression(value, kind) == expected


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ("0/5 0/1 * 1/1 * ?", "timeCycle", "cron cycles are not supported"),
        ("0 0 12 * * ?", None, "cron"),
        ("", "timeDate", "empty"),
        ("PT5M", "timeDate", "invalid timeDate"),
        ("2026-12-01", "timeCycle", "invalid timeCycle"),
        ("R3/xyz", "timeCycle", "invalid timeCycle"),
        ('"P"', "timeDuration", "invalid"),
        ("${bean.due()}", None, "method call"),
    ],
)
def test_bad_timer_values(value, kind, message):
    with pytest.raises(ExpressionError) as info:
        timer_expression(value, kind)
    assert message in str(info.value)
