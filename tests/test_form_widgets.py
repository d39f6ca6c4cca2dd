"""The form widgets of engine.forms.wtf render exactly what WTForms' own widgets render."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import pytest
import wtforms
from markupsafe import Markup
from werkzeug.datastructures import MultiDict
from wtforms import fields, widgets

from engine.forms.wtf import fast_widget, html_params

TRICKY = 'A <b>"quoted"</b> & \'single\''
Choice = fields.SelectChoice
CHOICES = [Choice("", "Bitte wählen …"), Choice("a", "Erste <Wahl>"), Choice("b&c", 'Zweite "Wahl"'),
           Choice("d", "", render_kw={"data_x": "<1>"})]
GROUPED = [Choice("x", "X", optgroup="Gruppe <1>"), Choice("y", "Y", optgroup="Gruppe 2")]


def _fields(fast: bool) -> dict:
    def w(widget):
        return fast_widget(widget) if fast else widget

    kw = {"render_kw": {"required": True, "maxlength": 200, "data_info": TRICKY, "readonly": False}}
    return {
        "text": fields.StringField("Text", widget=w(fields.StringField.widget), **kw),
        "area": fields.TextAreaField("Area", widget=w(fields.TextAreaField.widget), **kw),
        "integer": fields.IntegerField("Int", widget=w(fields.IntegerField.widget), render_kw={"min": "1"}),
        "decimal": fields.DecimalField("Dec", widget=w(fields.DecimalField.widget), places=None),
        "check": fields.BooleanField("Check", widget=w(fields.BooleanField.widget)),
        "day": fields.DateField("Day", widget=w(fields.DateField.widget)),
        "clock": fields.TimeField("Clock", widget=w(fields.TimeField.widget)),
        "moment": fields.DateTimeLocalField("Moment", widget=w(fields.DateTimeLocalField.widget),
                                            format=["%Y-%m-%dT%H:%M"]),
        "select": fields.SelectField("Select", widget=w(fields.SelectField.widget), choices=CHOICES,
                                     validate_choice=False, **kw),
        "radio": fields.RadioField("Radio", choices=CHOICES[1:], validate_choice=False,
                                   option_widget=w(fields.RadioField.option_widget)),
        "many": fields.SelectMultipleField("Many", choices=CHOICES[1:], validate_choice=False,
                                           widget=w(widgets.ListWidget(prefix_label=False)),
                                           option_widget=w(widgets.CheckboxInput())),
        "grouped": fields.SelectField("Grouped", widget=w(fields.SelectField.widget),
                                      choices=GROUPED),
    }


def _form(fast: bool):
    return type("F", (wtforms.Form,), _fields(fast))


DATA = [
    {},
    {"text": TRICKY, "area": f"Zeile 1\n{TRICKY}", "integer": 12, "decimal": Decimal("1.50"), "check": True,
     "day": date(2026, 11, 28), "clock": time(10, 0), "moment": datetime(2026, 11, 28, 10, 0), "select": "b&c",
     "radio": "a", "many": ["a", "d"], "grouped": "y"},
]


@pytest.mark.parametrize("data", DATA)
def test_every_field_renders_as_with_wtforms_widgets(data):
    stock, fast = _form(False)(data=data), _form(True)(data=data)
    for name in _fields(False):
        assert str(fast[name]()) == str(stock[name]()), name
        assert str(fast[name](class_="x", aria_describedby="h e", disabled=True)) == \
            str(stock[name](class_="x", aria_describedby="h e", disabled=True)), name
        if name in ("radio", "many"):
            assert [str(o()) for o in fast[name]] == [str(o()) for o in stock[name]], name


def test_submitted_values_render_the_same():
    formdata = MultiDict([("text", TRICKY), ("area", "<x>"), ("integer", "zwölf"), ("select", "zz"), ("many", "a")])
    stock, fast = _form(False)(formdata), _form(True)(formdata)
    for name in _fields(False):
        assert str(fast[name]()) == str(stock[name]()), name


@pytest.mark.parametrize("kwargs", [
    {},
    {"name": "x", "value": TRICKY, "checked": True, "hidden": False},
    {"class_": "a b", "data_some_thing": 1, "aria_label": None, "for_": "y"},
    {"value": Markup('<b class="safe">ok</b>')},
])
def test_html_params_match_wtforms(kwargs):
    assert str(html_params(**kwargs)) == str(widgets.html_params(**kwargs))
    assert isinstance(html_params(**kwargs), Markup)


def test_wtforms_widgets_are_replaced():
    assert type(fast_widget(fields.SelectField.widget)) is not widgets.Select
    assert type(fast_widget(fields.TextAreaField.widget)) is not widgets.TextArea
    assert fast_widget(fields.StringField.widget).html_params is html_params
    assert fields.StringField.widget.html_params is not html_params  # WTForms' own instance is not changed


def test_other_widgets_are_left_alone():
    listing = widgets.ListWidget()
    assert fast_widget(listing) is listing
