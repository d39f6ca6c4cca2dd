"""Inline Camunda forms (`camunda:formData`/`camunda:formField`) as a `FormDefinition`.

SpiffWorkflow's Camunda parser gives `SpiffWorkflow.camunda.specs.user_task.Form` with `FormField` and
`EnumFormField`. Types map to form-js components: string -> textfield, long -> number (whole
numbers), boolean -> checkbox, date -> datetime (date), enum -> select. Constraints: required,
minlength, maxlength, min, max, readonly. The property `personal` = `true` marks a personal field.

Note: SpiffWorkflow's `FormField.has_validation("required")` is False for `<camunda:constraint
name="required" />` (no config), so constraints are read by name here.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from engine.errors import ModelError
from engine.forms import values
from engine.forms.model import Constraints, FormDefinition, FormField, LayoutItem, Option
from engine.forms.schema import RESERVED_MESSAGE, finding
from engine.serialization import RESERVED_KEY

__all__ = ["check_camunda_form", "form_from_camunda"]

_TYPES = {"string": "textfield", "long": "number", "boolean": "checkbox", "date": "datetime", "enum": "select"}
_CONSTRAINTS = frozenset({"required", "minlength", "maxlength", "min", "max", "readonly"})


def _parse(form: Any, file: str, element_id: str) -> tuple[FormDefinition, list]:
    findings: list = []

    def add(where: str, severity: str, message: str) -> None:
        findings.append(finding(file, where, severity, message))

    fields: list[FormField] = []
    seen: set[str] = set()
    for index, spiff_field in enumerate(getattr(form, "fields", None) or []):
        key = (getattr(spiff_field, "id", None) or "").strip()
        where = f"{element_id}.{key}" if key else f"{element_id}.formField[{index}]"
        if not key:
            add(where, "error", "camunda:formField without id: its value could never be stored")
            continue
        if key in seen:
            add(where, "error", f"duplicate camunda:formField id {key!r}")
            continue
        if key == RESERVED_KEY:
            add(where, "error", f"camunda:formField id {key!r}: {RESERVED_MESSAGE}")
            continue
        seen.add(key)
        kind = _TYPES.get(spiff_field.type or "string")
        if kind is None:
            add(where, "error", f"form field type {spiff_field.type!r} is not supported "
                                "(string, long, boolean, date, enum)")
            continue
        rules: dict[str, Any] = {}
        for validation in spiff_field.validation:
            if validation.name not in _CONSTRAINTS:
                add(where, "error", f"constraint {validation.name!r} is not supported")
            else:
                rules[validation.name] = validation.config

        def number(name: str, whole: bool, rules=rules, where=where) -> Any:
            if name not in rules:
                return None
            try:
                parsed = values.parse_number(rules[name])
            except values.Invalid:
                add(where, "error", f"constraint {name} needs a number, not {rules[name]!r}")
                return None
            if whole and (parsed != parsed.to_integral_value() or parsed < 0):
                add(where, "error", f"constraint {name} needs a whole number >= 0, not {rules[name]!r}")
                return None
            return int(parsed) if whole else parsed

        constraints = Constraints(
            required="required" in rules,
            min_length=number("minlength", True),
            max_length=number("maxlength", True),
            minimum=number("min", False),
            maximum=number("max", False),
            decimal_digits=0 if kind == "number" else None,
        )
        _check_bounds(constraints, where, add)
        options = tuple(Option(o.id, o.name or o.id) for o in getattr(spiff_field, "options", []))
        if kind == "select" and not options:
            add(where, "error", "enum form field without camunda:value entries")
        properties = {p.id: p.value for p in spiff_field.properties}
        built = FormField(
            key=key,
            type=kind,
            label=spiff_field.label or key,
            constraints=constraints,
            options=options,
            personal=values.option_text(properties.get("personal")).strip().lower() == "true",
            subtype="date" if kind == "datetime" else None,
            readonly="readonly" in rules,
        )
        default = spiff_field.default_value
        if default not in (None, ""):
            try:
                built = replace(built, default=values.coerce(built, default, options))
            except values.Invalid:
                add(where, "warning", f"defaultValue {default!r} is not a valid value; ignored")
        fields.append(built)
    form_key = getattr(form, "key", "") or None
    layout = tuple(LayoutItem("field", key=f.key) for f in fields)
    warnings = tuple(f for f in findings if f.severity != "error")
    return FormDefinition(form_key, tuple(fields), layout, warnings, source="camunda-inline"), findings


def _check_bounds(constraints: Constraints, where: str, add) -> None:
    low, high = constraints.min_length, constraints.max_length
    if low is not None and high is not None and low > high:
        add(where, "error", f"minlength {low} is greater than maxlength {high}")
    minimum: Decimal | None = constraints.minimum
    maximum: Decimal | None = constraints.maximum
    if minimum is not None and maximum is not None and minimum > maximum:
        add(where, "error", f"min {minimum} is greater than max {maximum}")


def check_camunda_form(form: Any, *, file: str = "<bpmn>", element_id: str = "userTask") -> list:
    """Findings for an inline Camunda form (`element_id`: the user task's id)."""
    return _parse(form, file, element_id)[1]


def form_from_camunda(form: Any, *, file: str = "<bpmn>", element_id: str = "userTask") -> FormDefinition:
    """The form model of an inline Camunda form; `ModelError` (with findings) if it has errors."""
    definition, findings = _parse(form, file, element_id)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise ModelError(f"{element_id}: {len(errors)} error(s) in the form: {errors[0].message}", findings=findings)
    return definition
