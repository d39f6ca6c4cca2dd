"""A `FormDefinition` as a WTForms form class: the browser form and the engine validate the same way.

The class's `validate()` hands the submitted values to `FormDefinition.validate()` and puts the
messages onto the fields; WTForms' own (English) conversion errors are never shown. Field names are
the data keys (`user.info.age` for nested keys), except where a key would shadow a `Form` attribute
(`data`, `errors`, ...): those get the prefix `field_`. `form.field_for(key)` finds a field by key.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import wtforms
from markupsafe import Markup, escape
from wtforms import fields as wtf_fields
from wtforms import widgets
from wtforms.widgets.core import clean_key

from engine.errors import ValidationFailed
from engine.forms import values
from engine.forms.model import FormDefinition, FormField, LayoutItem

__all__ = ["build_form_class", "fast_widget", "field_name", "html_params"]

CHOOSE_LABEL = values.Message("Bitte wählen …")
_RESERVED = frozenset(dir(wtforms.Form)) | {
    # set on instances by WTForms, by the class below, or by Flask-WTF's FlaskForm
    "meta", "form_errors", "definition", "context", "cleaned_data", "field_for", "layout",
    "submitted_values", "hidden_keys", "is_hidden", "draft_values", "csrf_token", "is_submitted",
    "validate_on_submit", "hidden_tag",
}


def field_name(key: str) -> str:
    """The WTForms (and HTML) name of the field for data key `key`."""
    if key in _RESERVED or key.startswith("_"):
        return f"field_{key}"
    return key


def _choices(f: FormField, options=None, *, blank: bool = False) -> list:
    """WTForms choices; `SelectChoice` where WTForms has it (3.3+), tuples before."""
    pairs = [(values.option_text(o.value), o.label) for o in (f.options if options is None else options)]
    if blank:
        pairs.insert(0, ("", CHOOSE_LABEL))
    select_choice = getattr(wtf_fields, "SelectChoice", None)
    return [select_choice(value, label) for value, label in pairs] if select_choice else pairs


def _render_kw(f: FormField) -> dict[str, Any]:
    rules = f.constraints
    kw: dict[str, Any] = {}
    # `required` only where the browser's check matches ours: not on fields that a condition may
    # hide (the page re-renders on the server; a stale `required` would block the submission),
    # not on checklists (HTML would demand every box).
    if rules.required and not f.hide and not f.multiple and not f.readonly:
        kw["required"] = True
    if f.type in values.TEXT_TYPES:
        if rules.max_length is not None:
            kw["maxlength"] = rules.max_length
        if rules.min_length is not None:
            kw["minlength"] = rules.min_length
        # validate.pattern is not copied: HTML anchors it and uses JavaScript regex syntax
        if rules.validation_type == "email":
            kw["inputmode"] = "email"
        if rules.validation_type == "phone":
            kw["inputmode"] = "tel"
    if f.type == "number":
        if rules.minimum is not None:
            kw["min"] = str(rules.minimum)
        if rules.maximum is not None:
            kw["max"] = str(rules.maximum)
        if rules.increment:
            kw["step"] = str(rules.increment)
        elif rules.decimal_digits is not None:
            kw["step"] = str(Decimal(1).scaleb(-rules.decimal_digits))
        else:
            kw["step"] = "any"
    if f.readonly is True:
        kw["readonly"] = True
    if f.disabled:
        kw["disabled"] = True
    return kw


def _unbound(f: FormField) -> wtforms.Field:
    field_class, extra = _field_class(f)
    widget = extra.pop("widget", None) or field_class.widget
    option_widget = extra.pop("option_widget", None) or getattr(field_class, "option_widget", None)
    if option_widget is not None:
        extra["option_widget"] = fast_widget(option_widget)
    return field_class(label=f.label, description=f.description, render_kw=_render_kw(f), widget=fast_widget(widget),
                       **extra)


def _field_class(f: FormField) -> tuple[type, dict[str, Any]]:
    if f.type == "textarea":
        return wtf_fields.TextAreaField, {}
    if f.type == "number":
        if f.constraints.decimal_digits == 0:
            return wtf_fields.IntegerField, {}
        return wtf_fields.DecimalField, {"places": None}
    if f.type == "checkbox":
        return wtf_fields.BooleanField, {}
    if f.type == "select":
        return wtf_fields.SelectField, {"choices": _choices(f, blank=True), "validate_choice": False}
    if f.type == "radio":
        return wtf_fields.RadioField, {"choices": _choices(f), "validate_choice": False}
    if f.multiple:
        return wtf_fields.SelectMultipleField, {"choices": _choices(f), "validate_choice": False,
                                                "widget": widgets.ListWidget(prefix_label=False),
                                                "option_widget": widgets.CheckboxInput()}
    if f.type == "datetime":
        if f.subtype == "time":
            return wtf_fields.TimeField, {}
        if f.subtype == "datetime":
            return wtf_fields.DateTimeLocalField, {"format": ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]}
        return wtf_fields.DateField, {}
    return wtf_fields.StringField, {}


# --- widgets: WTForms' own markup, written without Markup.format (a task page renders dozens of inputs) -----
def html_params(**kwargs: Any) -> Markup:
    """`wtforms.widgets.html_params`, the same output several times faster (`Markup.format` parses its
    format string on every call): sorted attributes, `True` as a bare name, `False` left out, values escaped."""
    params = []
    for key, value in sorted(kwargs.items()):
        key = escape(clean_key(key))
        if value is True:
            params.append(key)
        elif value is not False:
            params.append(f'{key}="{str(escape(value)).replace(chr(34), "&quot;")}"')
    return Markup(" ".join(params))  # noqa: S704 - names and values escaped above


class _Select(widgets.Select):
    """`widgets.Select` with `html_params` above; option groups are left to WTForms."""

    def __call__(self, field, **kwargs):
        if field.has_groups():
            return super().__call__(field, **kwargs)
        kwargs.setdefault("id", field.id)
        if self.multiple:
            kwargs["multiple"] = True
        flags = getattr(field, "flags", {})
        for k in dir(flags):
            if k in self.validation_attrs and k not in kwargs:
                kwargs[k] = getattr(flags, k)
        html = [f"<select {html_params(name=field.name, **kwargs)}>"]
        html.extend(self.render_option(_translated(field, choice)) for choice in field._iter_choices_normalized())
        html.append("</select>")
        return Markup("".join(html))  # noqa: S704 - escaped by html_params and render_option

    @classmethod
    def render_option(cls, choice, **kwargs):
        value = choice.value
        if isinstance(value, bool):
            value = str(value)
        options = {"value": value, **(choice.render_kw or {}), **kwargs}
        if choice.selected:
            options["selected"] = True
        label = escape(choice.label or choice.value)
        return Markup(f"<option {html_params(**options)}>{label}</option>")  # noqa: S704 - all escaped


def _translated(field, choice):
    """A choice whose label is a `values.Message` (the blank choice's "Bitte wählen …"), in the language of
    the form's translations (`Meta.get_translations`; WTForms' own catalogue does not have it)."""
    if isinstance(choice.label, values.Message):
        return choice._replace(label=field.gettext(choice.label.template) % choice.label.values)
    return choice


class _TextArea(widgets.TextArea):
    """`widgets.TextArea` with `html_params` above."""

    def __call__(self, field, **kwargs):
        kwargs.setdefault("id", field.id)
        flags = getattr(field, "flags", {})
        for k in dir(flags):
            if k in self.validation_attrs and k not in kwargs:
                kwargs[k] = getattr(flags, k)
        text = escape(field._value())
        return Markup(f"<textarea {html_params(name=field.name, **kwargs)}>\r\n{text}</textarea>")  # noqa: S704


def fast_widget(widget):
    """The same widget rendering through `html_params` above: inputs of every type, selects and text areas
    (WTForms' own classes only; anything else is returned as it is)."""
    if type(widget) is widgets.Select:
        return _Select(multiple=widget.multiple)
    if type(widget) is widgets.TextArea:
        return _TextArea()
    if isinstance(widget, widgets.Input) and type(widget).html_params is widgets.Input.html_params:
        fast = copy.copy(widget)
        fast.html_params = html_params  # an instance attribute: `Input.__call__` asks `self.html_params`
        return fast
    return widget


def _native(f: FormField, value: Any) -> Any:
    """A stored value as the Python object the WTForms field renders (dates, Decimal, text)."""
    if value is None:
        return None
    try:
        if f.type == "datetime" and isinstance(value, str):
            if f.subtype == "time":
                return time.fromisoformat(value)
            if f.subtype == "datetime":
                return datetime.fromisoformat(value)
            return date.fromisoformat(value)
        if f.type == "number" and f.constraints.decimal_digits != 0 and not isinstance(value, bool):
            return values.parse_number(value)
    except ValueError:
        return None
    if f.type in values.CHOICE_TYPES:
        return values.option_text(value)
    if f.multiple and isinstance(value, list):
        return [values.option_text(item) for item in value]
    return value


class _DefinitionForm:
    """Mixed into the generated class (before the WTForms base)."""

    definition: FormDefinition
    _names: dict[str, str]  # field name -> data key

    def __init__(self, *args, context: Mapping[str, Any] | None = None, **kwargs):
        # `formdata` is passed on only when given: Flask-WTF reads the request when it is absent
        self.context = dict(context or {})
        self.cleaned_data: dict[str, Any] | None = None
        if "data" not in kwargs and "obj" not in kwargs:
            initial = self.definition.initial_values(self.context)
            kwargs["data"] = {field_name(k): _native(self.definition.field(k), v) for k, v in initial.items()}
        super().__init__(*args, **kwargs)
        for name, key in self._names.items():
            f = self.definition.field(key)
            if f.options_key is not None:
                options = f.options_in(self.context)
                self[name].choices = _choices(f, options, blank=f.type == "select")

    def field_for(self, key: str) -> wtforms.Field:
        return self[field_name(key)]

    @property
    def layout(self) -> tuple[LayoutItem, ...]:
        return self.definition.layout

    def submitted_values(self) -> dict[str, Any]:
        """What was submitted, by data key, as raw as WTForms keeps it."""
        submitted: dict[str, Any] = {}
        for name, key in self._names.items():
            field = self[name]
            if isinstance(field, wtf_fields.BooleanField):
                submitted[key] = bool(field.data)
            elif isinstance(field, wtf_fields.SelectMultipleField):
                submitted[key] = list(field.raw_data if field.raw_data is not None else field.data or [])
            elif field.raw_data is None:  # not bound to formdata: the current data
                submitted[key] = field.data
            else:
                submitted[key] = field.raw_data[0] if field.raw_data else None
        return submitted

    @property
    def hidden_keys(self) -> frozenset[str]:
        return self.definition.hidden_keys(self.submitted_values(), context=self.context)

    def is_hidden(self, item: LayoutItem | str) -> bool:
        """Whether a layout item (or the field with this key) is hidden for the current values."""
        if isinstance(item, str):
            return item in self.hidden_keys
        if not item.hide:  # most items have no condition: no need to work out the values they would see
            return False
        return item.is_hidden(self.definition.scope(self.submitted_values(), context=self.context))

    def draft_values(self) -> dict[str, Any]:
        """The submitted values as a draft (`partial=True`): never raises for values."""
        return self.definition.validate(self.submitted_values(), partial=True, context=self.context)

    def validate(self, extra_validators=None) -> bool:
        ok = True
        by_key = {key: name for name, key in self._names.items()}
        for name, field in self._fields.items():
            if name in self._names:
                field.errors = []
            elif not field.validate(self, (extra_validators or {}).get(name, ())):
                ok = False  # fields of the base class, such as Flask-WTF's csrf_token
        try:
            self.cleaned_data = self.definition.validate(self.submitted_values(), context=self.context)
        except ValidationFailed as exc:
            self.cleaned_data = None
            for key, messages in exc.errors.items():
                if key in by_key:
                    self[by_key[key]].errors = list(messages)
                else:
                    self.form_errors.append(f"{key}: {' '.join(messages)}")
            return False
        if not ok:
            self.cleaned_data = None
        return ok


def build_form_class(definition: FormDefinition, *, meta: Any = None, base: type | None = None) -> type:
    """A new form class for `definition`; `base` defaults to `wtforms.Form` (Flask-WTF's
    `FlaskForm` works too), `meta` is a dict of `Meta` settings or a `Meta` class."""
    attrs: dict[str, Any] = {"definition": definition}
    names: dict[str, str] = {}
    for f in definition.fields:
        name = field_name(f.key)
        names[name] = f.key
        attrs[name] = _unbound(f)
    attrs["_names"] = names
    if isinstance(meta, dict):
        attrs["Meta"] = type("Meta", (), dict(meta))
    elif meta is not None:
        attrs["Meta"] = meta
    class_name = "Form_" + "".join(c if c.isalnum() else "_" for c in (definition.id or "form"))
    return type(class_name, (_DefinitionForm, base or wtforms.Form), attrs)
