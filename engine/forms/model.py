"""The form model: what a form asks for, and the server-side validation of what was submitted.

A `FormDefinition` is built from a Camunda Forms (form-js) file (`engine.forms.schema`) or from an
inline `camunda:formField` form (`engine.forms.camunda`). It is immutable and cheap to cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

from engine.errors import ValidationFailed
from engine.forms import values
from engine.forms.feel import FeelExpression

if TYPE_CHECKING:
    import wtforms

__all__ = ["Constraints", "DisplayValue", "FormDefinition", "FormField", "LayoutItem", "Option"]

MSG_FAILED = "Bitte prüfen Sie Ihre Eingaben."


@dataclass(frozen=True)
class Option:
    value: Any
    label: str


@dataclass(frozen=True)
class Constraints:
    required: bool = False
    min_length: int | None = None
    max_length: int | None = None
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    pattern: str | None = None
    pattern_refused: bool = False  # a deployed form's pattern that could run for ever: refuse every value
    validation_type: str | None = None  # "email" or "phone"
    decimal_digits: int | None = None
    increment: Decimal | None = None


@dataclass(frozen=True)
class FormField:
    """One input. `key` is the full data path (group paths joined with the key by dots)."""

    key: str
    type: str  # textfield, textarea, number, checkbox, checklist, radio, select, taglist, datetime
    label: str = ""
    description: str = ""
    constraints: Constraints = field(default_factory=Constraints)
    options: tuple[Option, ...] = ()
    options_key: str | None = None  # form-js `valuesKey`: options come from the task data
    default: Any = None
    personal: bool = False
    subtype: str | None = None  # datetime: "date", "time" or "datetime"
    readonly: bool | FeelExpression = False
    disabled: bool = False
    hide: tuple[FeelExpression, ...] = ()  # the field's own condition and those of enclosing groups
    component_id: str | None = None

    @property
    def required(self) -> bool:
        return self.constraints.required

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    @property
    def multiple(self) -> bool:
        return self.type in values.MULTI_TYPES

    def options_in(self, context: Mapping[str, Any] | None) -> tuple[Option, ...]:
        """The declared options, or those found under `valuesKey` in the task data."""
        if self.options_key is None:
            return self.options
        found = get_path(context or {}, tuple(self.options_key.split(".")))
        if not isinstance(found, list | tuple):
            return ()
        options = []
        for item in found:
            if isinstance(item, Mapping) and "value" in item:
                options.append(Option(item["value"], str(item.get("label", item["value"]))))
            elif isinstance(item, str | int | float | bool):
                options.append(Option(item, values.option_text(item)))
        return tuple(options)

    def is_readonly(self, scope: Mapping[str, Any]) -> bool:
        if isinstance(self.readonly, FeelExpression):
            return self.readonly.holds(scope)
        return self.readonly or self.disabled


@dataclass(frozen=True)
class LayoutItem:
    """What a template renders, in order: inputs, texts, group headings, separators, spacers."""

    kind: str  # "field", "text", "group", "separator", "spacer"
    key: str | None = None  # for "field"
    label: str = ""  # group label
    text: str = ""  # for "text": shown as written (no templating)
    children: tuple[LayoutItem, ...] = ()
    hide: tuple[FeelExpression, ...] = ()  # own and enclosing groups' conditions
    component_id: str | None = None

    def is_hidden(self, scope: Mapping[str, Any]) -> bool:
        return any(condition.holds(scope) for condition in self.hide)


@dataclass(frozen=True)
class DisplayValue:
    key: str
    label: str
    value: Any
    text: str  # label-resolved, German formatting
    personal: bool


def get_path(data: Mapping[str, Any], path: tuple[str, ...], default: Any = None) -> Any:
    value: Any = data
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


def set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
    data[path[-1]] = value


def deep_merge(base: Mapping[str, Any] | None, update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base or {})
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_MISSING = object()


@dataclass(frozen=True)
class FormDefinition:
    id: str | None
    fields: tuple[FormField, ...]
    layout: tuple[LayoutItem, ...] = ()
    findings: tuple[Any, ...] = ()  # warnings found while loading
    source: str = "form-js"  # or "camunda-inline"

    @cached_property
    def _by_key(self) -> dict[str, FormField]:
        return {f.key: f for f in self.fields}

    @cached_property
    def _prefixes(self) -> frozenset[str]:
        return frozenset(".".join(f.path[:i]) for f in self.fields for i in range(1, len(f.path)))

    @cached_property
    def personal_keys(self) -> frozenset[str]:
        return frozenset(f.key for f in self.fields if f.personal)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._by_key)

    def field(self, key: str) -> FormField:
        return self._by_key[key]

    # -- reading submissions ------------------------------------------------------------------------

    def _flatten(self, data: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any], list[str]]:
        """Submitted values by field key; nested objects (group paths) and dotted keys both work."""
        flat: dict[str, Any] = {}
        undeclared: list[str] = []
        for name, value in data.items():
            key = f"{prefix}{name}"
            if key in self._by_key:
                flat[key] = value
            elif key in self._prefixes and isinstance(value, Mapping):
                inner, unknown = self._flatten(value, f"{key}.")
                flat.update(inner)
                undeclared.extend(unknown)
            else:
                undeclared.append(key)
        return flat, undeclared

    def _coerce_all(
        self, flat: Mapping[str, Any], context: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        coerced: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for key, raw in flat.items():
            f = self._by_key[key]
            try:
                coerced[key] = values.coerce(f, raw, f.options_in(context))
            except values.Invalid as exc:  # its Message, which keeps the template a user interface translates
                problems[key] = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        return coerced, problems

    def _hidden(self, coerced: Mapping[str, Any], context: Mapping[str, Any] | None) -> frozenset[str]:
        """Keys hidden by `conditional.hide`, evaluated over the submitted values merged onto
        `context`. Values of hidden fields do not count; repeated until nothing changes."""
        conditional = [f for f in self.fields if f.hide]
        hidden: frozenset[str] = frozenset()
        for _ in range(len(conditional) + 1):
            scope = self._scope({k: v for k, v in coerced.items() if k not in hidden}, context)
            now = frozenset(f.key for f in conditional if any(c.holds(scope) for c in f.hide))
            if now == hidden:
                break
            hidden = now
        return hidden

    def _scope(self, flat: Mapping[str, Any], context: Mapping[str, Any] | None) -> dict[str, Any]:
        nested: dict[str, Any] = {}
        for key, value in flat.items():
            set_path(nested, self._by_key[key].path, value)
        return deep_merge(context, nested)

    def hidden_keys(
        self, data: Mapping[str, Any] | None = None, *, context: Mapping[str, Any] | None = None
    ) -> frozenset[str]:
        """Keys of the fields that `conditional.hide` hides for these values (for templates)."""
        flat, _ = self._flatten(data or {})
        coerced, _ = self._coerce_all(flat, context)
        return self._hidden(coerced, context)

    def scope(self, data: Mapping[str, Any] | None = None, *, context: Mapping[str, Any] | None = None):
        """The values conditions see: `data` (coerced where possible) merged over `context`."""
        flat, _ = self._flatten(data or {})
        coerced, _ = self._coerce_all(flat, context)
        return self._scope(coerced, context)

    def validate(
        self, data: Mapping[str, Any], *, partial: bool = False, context: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Cleaned values, nested by key path, or raises `ValidationFailed` (errors by field key).

        Complete submission (`partial=False`): every visible, editable field gets a value; an empty
        optional input is stored as None (checkbox False, checklist/taglist []). Hidden, read-only and
        disabled fields are neither validated nor stored. `partial=True` (a draft): only submitted
        fields, no constraint or required checks; a number or date that cannot be read is kept as
        the text that was typed, a value outside the offered options is dropped.
        Undeclared keys are always rejected.
        """
        if not isinstance(data, Mapping):
            raise ValidationFailed("Die Eingaben müssen ein Objekt mit Feldnamen sein.")
        flat, undeclared = self._flatten(data)
        errors: dict[str, list[str]] = {key: [values.MSG_UNDECLARED] for key in undeclared}
        coerced, problems = self._coerce_all(flat, context)
        scope = self._scope(coerced, context)
        hidden = self._hidden(coerced, context)
        cleaned: dict[str, Any] = {}
        for f in self.fields:
            if f.key in hidden or f.is_readonly(scope):
                continue
            raw = flat.get(f.key, _MISSING)
            if partial:
                if raw is _MISSING:
                    continue
                if f.key in problems:
                    if f.type in ("number", "datetime") and isinstance(raw, str):
                        set_path(cleaned, f.path, raw.strip())
                    continue
                set_path(cleaned, f.path, coerced[f.key])
                continue
            if f.key in problems:
                errors[f.key] = [problems[f.key]]
                continue
            value = coerced[f.key] if f.key in coerced else values.coerce(f, None, ())
            messages = values.check(f, value)
            if messages:
                errors[f.key] = messages
            else:
                set_path(cleaned, f.path, value)
        if errors:
            message = "Unbekannte Felder: " + ", ".join(undeclared) + "." if undeclared else MSG_FAILED
            raise ValidationFailed(message, errors=errors)
        return cleaned

    # -- showing values ----------------------------------------------------------------------------

    def initial_values(self, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Values to pre-fill, by field key: the task data where present, else the default."""
        initial: dict[str, Any] = {}
        for f in self.fields:
            value = get_path(context or {}, f.path, _MISSING)
            initial[f.key] = f.default if value is _MISSING else value
        return initial

    def display_values(
        self,
        data: Mapping[str, Any],
        *,
        include_personal: bool = True,
        context: Mapping[str, Any] | None = None,
    ) -> list[DisplayValue]:
        """Values present in `data`, in form order, with option labels and German formatting."""
        shown: list[DisplayValue] = []
        for f in self.fields:
            if f.personal and not include_personal:
                continue
            value = get_path(data, f.path, _MISSING)
            if value is _MISSING:
                continue
            shown.append(DisplayValue(f.key, f.label, value, display_text(f, value, context or data), f.personal))
        return shown

    def wtforms_class(self, *, meta: Any = None, base: type[wtforms.Form] | None = None) -> type[wtforms.Form]:
        """A WTForms form class whose `validate()` delegates to `validate()` (see engine.forms.wtf)."""
        from engine.forms.wtf import build_form_class

        if meta is None and base is None:
            return self._default_wtforms_class
        return build_form_class(self, meta=meta, base=base)

    @cached_property
    def _default_wtforms_class(self) -> type[wtforms.Form]:
        from engine.forms.wtf import build_form_class

        return build_form_class(self)


def display_text(f: FormField, value: Any, context: Mapping[str, Any] | None = None) -> str:
    if value is None or value == []:
        return ""
    if isinstance(value, bool):
        return "Ja" if value else "Nein"
    if f.type in values.CHOICE_TYPES | values.MULTI_TYPES:
        labels = {values.option_text(o.value): o.label for o in f.options_in(context)}
        items = value if isinstance(value, list) else [value]
        return ", ".join(labels.get(values.option_text(item), str(item)) for item in items)
    if f.type == "number" and isinstance(value, int | float | Decimal):
        return format(Decimal(repr(value)) if isinstance(value, float) else Decimal(value), "f").replace(".", ",")
    if f.type == "datetime" and isinstance(value, str):
        try:
            if f.subtype == "datetime":
                return datetime.fromisoformat(value).strftime("%d.%m.%Y %H:%M")
            if f.subtype != "time":
                return date.fromisoformat(value).strftime("%d.%m.%Y")
        except ValueError:
            return value
    return str(value)
