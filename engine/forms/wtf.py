"""A `FormDefinition` as a WTForms form class: the browser form and the engine validate the same way.

The class's `validate()` hands the submitted values to `FormDefinition.validate()` and puts the
messages onto the fields; WTForms' own (English) conversion errors are never shown. Field names are
the data keys (`user.info.age` for nested keys), except where a key would shadow a `Form` attribute
(`data`, `errors`, ...): those get the prefix `field_`. `form.field_for(key)` finds a field by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import wtforms
from wtforms import fields as wtf_fields
from wtforms import widgets

from engine.errors import ValidationFailed
from engine.forms import values
from engine.forms.model import FormDefinition, FormField, LayoutItem

__all__ = ["build_form_class", "field_name"]

CHOOSE_LABEL = "Bitte wählen …"
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
    common = {"label": f.label, "description": f.description, "render_kw": _render_kw(f)}
    if f.type == "textarea":
        return wtf_fields.TextAreaField(**common)
    if f.type == "number":
        if f.constraints.decimal_digits == 0:
            return wtf_fields.IntegerField(**common)
        return wtf_fields.DecimalField(**common, places=None)
    if f.type == "checkbox":
        return wtf_fields.BooleanField(**common)
    if f.type == "select":
        return wtf_fields.SelectField(**common, choices=_choices(f, blank=True), validate_choice=False)
    if f.type == "radio":
        return wtf_fields.RadioField(**common, choices=_choices(f), validate_choice=False)
    if f.multiple:
        return wtf_fields.SelectMultipleField(
            **common,
            choices=_choices(f),
            validate_choice=False,
            widget=widgets.ListWidget(prefix_label=False),
            option_widget=widgets.CheckboxInput(),
        )
    if f.type == "datetime":
        if f.subtype == "time":
            return wtf_fields.TimeField(**common)
        if f.subtype == "datetime":
            return wtf_fields.DateTimeLocalField(**common, format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])
        return wtf_fields.DateField(**common)
    return wtf_fields.StringField(**common)


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
