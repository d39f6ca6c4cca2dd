"""Reading Camunda Forms (form-js) JSON into a `FormDefinition`, with findings for `fallwerk check`.

Never raises for a bad form in `check_form`: every problem becomes a finding. `load_form` raises
`ModelError` (with the findings) when there is any error.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from engine.errors import ModelError
from engine.forms import values
from engine.forms.feel import FeelError, FeelExpression, compile_feel
from engine.forms.model import Constraints, FormDefinition, FormField, LayoutItem, Option
from engine.serialization import RESERVED_KEY

__all__ = ["check_form", "finding", "load_form", "parse_form"]

#: components that are shown but store nothing
DISPLAY_TYPES = frozenset({"text", "separator", "spacer"})
#: display-only components we do not render: the form still works without them
SKIPPED_DISPLAY_TYPES = frozenset({"html", "image", "iframe", "table", "documentPreview"})
#: inputs that need a `values` list or a `valuesKey`
OPTION_TYPES = values.CHOICE_TYPES | values.MULTI_TYPES
DATETIME_SUBTYPES = frozenset({"date", "time", "datetime"})
VALIDATE_KEYS = frozenset(
    {"required", "minLength", "maxLength", "min", "max", "pattern", "validationType", "customValidation"}
)
log = logging.getLogger(__name__)
#: groups inside groups; deeper forms are refused (reading them recursively could exhaust the stack)
MAX_GROUP_DEPTH = 32
_SEGMENT = re.compile(r"[^\W\d]\w*")
RESERVED_MESSAGE = f"'{RESERVED_KEY}' is reserved for the engine's stored values; choose another name"


def finding(file: str, element_id: str, severity: str, message: str):
    """A finding of the model checker (`engine.check.Finding`)."""
    from engine.check import Finding  # late: the checker may one day check forms too

    return Finding(file, element_id, severity, message)


def _is_number(value: Any) -> bool:
    """A JSON number a form can use: not a boolean, and finite (JSON text like 1e999 reads as infinity)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class _Reader:
    def __init__(self, file: str, deployed: bool = False):
        self.file = file
        self.deployed = deployed  # loading a form to use it, not checking it before a deploy
        self.depth = 0  # groups around the component being read
        self.findings: list = []
        self.fields: list[FormField] = []
        self.keys: dict[str, str] = {}  # full key -> element id of the first component

    def add(self, element_id: str, severity: str, message: str) -> None:
        self.findings.append(finding(self.file, element_id, severity, message))

    def condition(self, element_id: str, component: Mapping[str, Any]) -> FeelExpression | None:
        conditional = component.get("conditional")
        if conditional is None:
            return None
        hide = conditional.get("hide") if isinstance(conditional, Mapping) else conditional
        if hide is None or hide is False or hide == "":
            return None
        if hide is True:
            hide = "=true"
        try:
            return compile_feel(hide)
        except FeelError as exc:
            self.add(element_id, "error", f"conditional.hide {hide!r}: unsupported FEEL: {exc.message}")
            return None

    def components(
        self,
        components: Any,
        *,
        prefix: tuple[str, ...],
        hide: tuple[FeelExpression, ...],
        personal: bool,
        where: str,
    ) -> tuple[LayoutItem, ...]:
        if not isinstance(components, list):
            self.add(where, "error", "'components' must be a list")
            return ()
        items = []
        for index, component in enumerate(components):
            item = self.component(
                component, prefix=prefix, hide=hide, personal=personal, where=f"{where}[{index}]"
            )
            if item is not None:
                items.append(item)
        return tuple(items)

    def component(self, component: Any, *, prefix, hide, personal, where) -> LayoutItem | None:
        if not isinstance(component, Mapping):
            self.add(where, "error", "a component must be a JSON object")
            return None
        kind = component.get("type")
        element_id = str(component.get("key") or component.get("id") or where)
        if kind == "button":
            return None  # the page always has its own submit button
        condition = self.condition(element_id, component)
        conditions = (*hide, condition) if condition else hide
        properties = component.get("properties") or {}
        if not isinstance(properties, Mapping):
            self.add(element_id, "error", "'properties' must be an object")
            properties = {}
        personal = personal or _truthy(properties.get("personal"))
        if kind == "group":
            return self.group(component, element_id, prefix, conditions, personal)
        if kind in DISPLAY_TYPES:
            text = component.get("text") or ""
            if kind == "text" and isinstance(text, str) and (text.lstrip().startswith("=") or "{{" in text):
                self.add(element_id, "warning", "text expressions and templates are not evaluated; shown as written")
            return LayoutItem(kind, text=str(text), hide=conditions, component_id=component.get("id"))
        if kind in SKIPPED_DISPLAY_TYPES:
            self.add(element_id, "warning", f"component type {kind!r} is not supported and is not shown")
            return None
        if kind not in values.VALUE_TYPES:
            self.add(element_id, "error", f"component type {kind!r} is not supported")
            return None
        built = self.input(component, kind, element_id, prefix, conditions, personal)
        if built is None:
            return None
        self.fields.append(built)
        return LayoutItem("field", key=built.key, hide=conditions, component_id=built.component_id)

    def group(self, component, element_id, prefix, conditions, personal) -> LayoutItem | None:
        if self.depth >= MAX_GROUP_DEPTH:
            self.add(element_id, "error", f"groups are nested more than {MAX_GROUP_DEPTH} levels deep")
            return None
        path = component.get("path")
        if path:
            segments = tuple(str(path).split("."))
            if not isinstance(path, str) or not all(_SEGMENT.fullmatch(s) for s in segments):
                self.add(element_id, "error", f"group path {path!r} is not a dotted variable name")
                segments = ()
            elif RESERVED_KEY in segments:
                self.add(element_id, "error", f"group path {path!r}: {RESERVED_MESSAGE}")
                segments = ()
            prefix = (*prefix, *segments)
        self.depth += 1
        try:
            children = self.components(
                component.get("components", []), prefix=prefix, hide=conditions, personal=personal,
                where=f"{element_id}.components",
            )
        finally:
            self.depth -= 1
        label = component.get("label") or ""
        return LayoutItem("group", label=str(label), children=children, hide=conditions,
                          component_id=component.get("id"))

    def input(self, component, kind, element_id, prefix, conditions, personal) -> FormField | None:
        key = component.get("key")
        if not isinstance(key, str) or not key.strip():
            self.add(element_id, "error", f"{kind} without 'key': its value could never be stored")
            return None
        segments = key.split(".")
        if not all(_SEGMENT.fullmatch(s) for s in segments):
            self.add(element_id, "error", f"key {key!r} is not a (dotted) variable name")
            return None
        if RESERVED_KEY in segments:
            self.add(element_id, "error", f"key {key!r}: {RESERVED_MESSAGE}")
            return None
        full = ".".join((*prefix, *segments))
        if full in self.keys:
            self.add(element_id, "error", f"duplicate key {full!r} (also used by {self.keys[full]})")
            return None
        clash = next((k for k in self.keys if k.startswith(full + ".") or full.startswith(k + ".")), None)
        if clash:
            self.add(element_id, "error", f"key {full!r} conflicts with key {clash!r} (one contains the other)")
            return None
        self.keys[full] = element_id
        label = component.get("label") or ""
        if isinstance(label, str) and (label.startswith("=") or "{{" in label):
            self.add(element_id, "warning", "label expressions and templates are not evaluated; shown as written")
        subtype = None
        if kind == "datetime":
            subtype = component.get("subtype") or "date"
            if subtype not in DATETIME_SUBTYPES:
                self.add(element_id, "error", f"datetime subtype {subtype!r} is not supported")
                subtype = "date"
            if component.get("disallowPassedDates"):
                self.add(element_id, "warning", "disallowPassedDates is not enforced on the server")
            if subtype != "time":
                label = label or component.get("dateLabel") or ""
            if subtype == "time":
                label = label or component.get("timeLabel") or ""
        options, options_key = self.options(component, kind, element_id)
        readonly = component.get("readonly", False)
        if isinstance(readonly, str):
            try:
                readonly = compile_feel(readonly)
            except FeelError as exc:
                self.add(element_id, "error", f"readonly {readonly!r}: unsupported FEEL: {exc.message}")
                readonly = False
        built = FormField(
            key=full,
            type=kind,
            label=str(label or key),
            description=str(component.get("description") or ""),
            constraints=self.constraints(component, kind, element_id),
            options=options,
            options_key=options_key,
            personal=personal,
            subtype=subtype,
            readonly=readonly if isinstance(readonly, FeelExpression) else bool(readonly),
            disabled=bool(component.get("disabled", False)),
            hide=conditions,
            component_id=component.get("id"),
        )
        default = component.get("defaultValue")
        if default is not None:
            try:
                default = values.coerce(built, default, options)
            except values.Invalid:
                self.add(element_id, "warning", f"defaultValue {default!r} is not a valid value; ignored")
                default = None
        return replace(built, default=default)

    def options(self, component, kind, element_id) -> tuple[tuple[Option, ...], str | None]:
        if kind not in OPTION_TYPES:
            return (), None
        if component.get("valuesExpression"):
            self.add(element_id, "error", "valuesExpression is not supported; use 'values' or 'valuesKey'")
            return (), None
        if component.get("valuesKey"):
            return (), str(component["valuesKey"])
        declared = component.get("values")
        if not declared or not isinstance(declared, list):
            self.add(element_id, "error", f"{kind} without values: add 'values' or 'valuesKey'")
            return (), None
        options: list[Option] = []
        seen = set()
        for item in declared:
            if not isinstance(item, Mapping) or "value" not in item:
                self.add(element_id, "error", f"each entry of 'values' needs a 'value': {item!r}")
                continue
            text = values.option_text(item["value"])
            if text in seen:
                self.add(element_id, "error", f"value {item['value']!r} is offered twice")
                continue
            seen.add(text)
            options.append(Option(item["value"], str(item.get("label") or text)))
        return tuple(options), None

    def constraints(self, component, kind, element_id) -> Constraints:
        rules = component.get("validate") or {}
        if not isinstance(rules, Mapping):
            self.add(element_id, "error", "'validate' must be an object")
            return Constraints()
        for unknown in sorted(set(rules) - VALIDATE_KEYS):
            self.add(element_id, "warning", f"validate.{unknown} is not supported and is ignored")

        def length(name):
            value = rules.get(name)
            if value is None:
                return None
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                self.add(element_id, "error", f"validate.{name} must be a whole number >= 0, not {value!r}")
                return None
            if kind not in values.TEXT_TYPES:
                self.add(element_id, "warning", f"validate.{name} only applies to text inputs; ignored")
            return value

        def bound(name):
            value = rules.get(name)
            if value is None:
                return None
            if not _is_number(value):
                self.add(element_id, "error", f"validate.{name} must be a number, not {value!r}")
                return None
            if kind != "number":
                self.add(element_id, "warning", f"validate.{name} only applies to number inputs; ignored")
            return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)

        min_length, max_length = length("minLength"), length("maxLength")
        minimum, maximum = bound("min"), bound("max")
        if min_length is not None and max_length is not None and min_length > max_length:
            self.add(element_id, "error", f"validate.minLength {min_length} is greater than maxLength {max_length}")
        if minimum is not None and maximum is not None and minimum > maximum:
            self.add(element_id, "error", f"validate.min {minimum} is greater than max {maximum}")
        pattern = rules.get("pattern") or None
        validation_type = rules.get("validationType") or None
        if validation_type == "custom":
            validation_type = None  # form-js: "custom" means "use the pattern"
        if validation_type not in (None, "email", "phone"):
            self.add(element_id, "error", f"validate.validationType {validation_type!r} is not supported")
            validation_type = None
        pattern_refused = False
        if pattern is not None:
            try:
                re.compile(pattern)
            except (re.error, TypeError) as exc:
                self.add(element_id, "error", f"validate.pattern {pattern!r} is not a valid regular expression: {exc}")
                pattern = None
            else:
                if values.risky_pattern(pattern):
                    message = (f"validate.pattern {pattern!r} nests repetitions (like (a+)+) and could run for "
                               "ever on a crafted text; simplify it")
                    if self.deployed:
                        # an already deployed form: never run the pattern, refuse values for the field instead
                        log.warning("%s: %s: %s; the field refuses every value until the form is fixed",
                                    self.file, element_id, message)
                        self.add(element_id, "warning", f"{message}; the field refuses every value")
                        pattern_refused = True
                    else:
                        self.add(element_id, "error", message)
                    pattern = None
        decimal_digits, increment = None, None
        if kind == "number":
            decimal_digits = component.get("decimalDigits")
            if decimal_digits is not None and (
                not isinstance(decimal_digits, int) or isinstance(decimal_digits, bool) or decimal_digits < 0
            ):
                self.add(element_id, "error", f"decimalDigits must be a whole number >= 0, not {decimal_digits!r}")
                decimal_digits = None
            raw_increment = component.get("increment")
            if raw_increment not in (None, ""):
                try:
                    increment = values.parse_number(raw_increment)
                    if increment <= 0:
                        raise values.Invalid("not positive")
                except values.Invalid:
                    self.add(element_id, "error", f"increment must be a positive number, not {raw_increment!r}")
                    increment = None
        return Constraints(
            required=bool(rules.get("required", False)),
            min_length=min_length,
            max_length=max_length,
            minimum=minimum,
            maximum=maximum,
            pattern=pattern,
            pattern_refused=pattern_refused,
            validation_type=validation_type,
            decimal_digits=decimal_digits,
            increment=increment,
        )


def parse_form(definition: Mapping[str, Any] | bytes | str, *, file: str = "<form>", deployed: bool = False):
    """(FormDefinition or None, findings). Never raises for a bad definition.

    ``deployed=True`` reads a form that is already in use (`load_form`): a pattern that could run for ever
    is then a warning and its field refuses every value, instead of an error that makes the whole form
    unusable."""
    reader = _Reader(file, deployed)
    if isinstance(definition, bytes | str):
        try:
            definition = json.loads(definition)
        except (ValueError, UnicodeDecodeError) as exc:
            reader.add(PurePath(file).name, "error", f"not valid JSON: {exc}")
            return None, reader.findings
        except RecursionError:
            reader.add(PurePath(file).name, "error", "the JSON is nested too deeply")
            return None, reader.findings
    if not isinstance(definition, Mapping):
        reader.add(PurePath(file).name, "error", "a form definition must be a JSON object")
        return None, reader.findings
    form_id = definition.get("id")
    top = str(form_id or PurePath(file).stem)
    if not form_id:
        reader.add(top, "warning", f"the form has no 'id'; user tasks reference it as {top!r} (camunda:formRef)")
    if definition.get("type", "default") != "default":
        reader.add(top, "warning", f"form type {definition.get('type')!r} is not 'default'")
    if "components" not in definition:
        reader.add(top, "error", "the form has no 'components'")
        return None, reader.findings
    layout = reader.components(definition["components"], prefix=(), hide=(), personal=False, where="components")
    warnings = tuple(f for f in reader.findings if f.severity != "error")
    form = FormDefinition(str(form_id) if form_id else None, tuple(reader.fields), layout, warnings)
    return form, reader.findings


def check_form(definition: Mapping[str, Any] | bytes | str, *, file: str) -> list:
    """Findings (file, element_id, severity, message) for `fallwerk check`."""
    return parse_form(definition, file=file)[1]


def load_form(definition: Mapping[str, Any] | bytes | str, *, file: str = "<form>") -> FormDefinition:
    """The form model, or `ModelError` listing the findings when the form has errors.

    Results are cached by content: loading the same definition again is cheap and gives the same
    (immutable) `FormDefinition`, with its WTForms class.
    """
    if isinstance(definition, bytes | str):
        text = definition
    else:
        try:
            text = json.dumps(definition, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError):
            return _load(definition, file)
    return _load_text(text, file)


@functools.lru_cache(maxsize=256)
def _load_text(text: bytes | str, file: str) -> FormDefinition:
    return _load(text, file)


def _load(definition: Any, file: str) -> FormDefinition:
    form, findings = parse_form(definition, file=file, deployed=True)
    errors = [f for f in findings if f.severity == "error"]
    if errors or form is None:
        raise ModelError(f"{file}: {len(errors)} error(s) in the form: {errors[0].message}", findings=findings)
    return form
