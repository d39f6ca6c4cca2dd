"""Forms: Camunda Forms (form-js) files and inline `camunda:formField` forms, validated on the server.

    form = load_form(path.read_bytes(), file=path.name)      # ModelError when the form has errors
    cleaned = form.validate(submitted, context=task.data)     # ValidationFailed(errors={key: [...]})
    FormClass = form.wtforms_class()                           # the same rules for the browser form

See docs/forms.md for the supported components, validation semantics and the FEEL subset.
"""

from engine.forms.camunda import check_camunda_form, form_from_camunda
from engine.forms.feel import FeelError, FeelExpression, compile_feel
from engine.forms.model import (
    Constraints,
    DisplayValue,
    FormDefinition,
    FormField,
    LayoutItem,
    Option,
    deep_merge,
)
from engine.forms.schema import check_form, load_form, parse_form

__all__ = [
    "Constraints",
    "DisplayValue",
    "FeelError",
    "FeelExpression",
    "FormDefinition",
    "FormField",
    "LayoutItem",
    "Option",
    "check_camunda_form",
    "check_form",
    "compile_feel",
    "deep_merge",
    "form_from_camunda",
    "load_form",
    "parse_form",
]
