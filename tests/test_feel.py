"""The FEEL subset used by `conditional.hide` in forms."""

from decimal import Decimal

import pytest

from engine.errors import ExpressionError
from engine.forms.feel import FeelError, compile_feel

SCOPE = {
    "status": "open",
    "count": 3,
    "ratio": 0.5,
    "consent": True,
    "refused": False,
    "nothing": None,
    "client": {"type": "school", "address": {"city": "Anklam"}},
    "topics": ["racism"],
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('=status = "open"', True),
        ('=status != "open"', False),
        ('=status = "closed"', False),
        ("=count = 3", True),
        ("=count > 2", True),
        ("=count >= 3", True),
        ("=count < 3", False),
        ("=count <= 3", True),
        ("=ratio = 0.5", True),
        ("=ratio < 1", True),
        ("=count > -1", True),
        ("=consent", True),
        ("=consent = true", True),
        ("=refused = false", True),
        ("=not(consent)", False),
        ("=not(refused)", True),
        ('=consent and status = "open"', True),
        ("=consent and refused", False),
        ("=refused or consent", True),
        ("=refused or count < 0", False),
        ('=(count > 5 or consent) and not(status = "closed")', True),
        ('=client.type = "school"', True),
        ('=client.address.city = "Anklam"', True),
        ("=client.address.zip = null", True),
        ("=nothing = null", True),
        ("=missing = null", True),
        ("=missing != null", False),
        ('=status in ["open", "waiting"]', True),
        ('=status in ("closed", "waiting")', False),
        ("=count in [1, 2, 3]", True),
        ('="a\\"b" = "a\\"b"', True),
        ("=  count   >   2  ", True),
    ],
)
def test_supported_expressions_evaluate_like_feel(expression, expected):
    assert compile_feel(expression).evaluate(SCOPE) is expected


@pytest.mark.parametrize(
    "expression",
    [
        "=missing > 3",  # ordering with null is null
        '=count = "3"',  # different types compare to null
        '=status < 3',
        "=not(status)",  # not() of a non-boolean
        "=consent and missing",  # true and null
        "=refused or missing",  # false or null
    ],
)
def test_null_propagates_as_in_feel(expression):
    compiled = compile_feel(expression)
    assert compiled.evaluate(SCOPE) is None
    assert compiled.holds(SCOPE) is False


def test_and_with_false_is_false_even_with_null():
    assert compile_feel("=missing and refused").evaluate(SCOPE) is False
    assert compile_feel("=missing or consent").evaluate(SCOPE) is True


def test_numbers_are_decimal_literals_compared_exactly():
    assert compile_feel("=0.1").evaluate({}) == Decimal("0.1")
    assert compile_feel("=x = 0.1").holds({"x": 0.1})
    assert not compile_feel("=flag = 1").holds({"flag": True})  # a boolean is not a number


def test_referenced_names_are_listed_once():
    assert compile_feel("=a.b > 1 and c = 2 or a.b < 0").names == ("a.b", "c")


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("status = 1", "starts with '='"),
        ("=", "empty"),
        ("=count + 1", "unexpected character '+'"),
        ('=upper case(status) = "A"', "found 'case'"),
        ("=contains(status, \"o\")", "function 'contains' is not supported"),
        ("=date(x) > 1", "function 'date' is not supported"),
        ('=status = "open', "unterminated string"),
        ("=count > 1 > 0", "cannot be chained"),
        ("=(count > 1", "expected ')'"),
        ("=not count", "expected '('"),
        ("=topics[1] = 1", "filters and indexes"),
        ("=[1, 2]", "only supported after 'in'"),
        ("=count in 3", "after 'in'"),
        ("=count = 'open'", "unexpected character"),
        ("=if a then b else c", "found 'a'"),
        ('="a\\q"', "unknown escape"),
        ("=a.", "field name after '.'"),
        ("=x = -y", "expected a number"),
        ("=count >", "found the end of the expression"),
    ],
)
def test_unsupported_constructs_are_rejected_with_a_clear_message(expression, fragment):
    with pytest.raises(FeelError) as caught:
        compile_feel(expression)
    assert fragment in caught.value.message


def test_feel_error_is_an_expression_error():
    assert issubclass(FeelError, ExpressionError)


def test_non_text_is_rejected():
    with pytest.raises(FeelError):
        compile_feel(True)
