"""Forms: parsing form-js and inline Camunda forms, server-side validation, WTForms, findings."""

import json
import time
from pathlib import Path

import pytest
from SpiffWorkflow.camunda.specs.user_task import EnumFormField, Form, FormField
from werkzeug.datastructures import MultiDict

from engine.errors import ModelError, ValidationFailed
from engine.forms import check_camunda_form, check_form, form_from_camunda, load_form

CORPUS = Path("/work/shared/corpus/camunda-examples")


def form(*components, form_id="test"):
    return load_form({"id": form_id, "type": "default", "schemaVersion": 16, "components": list(components)})


def errors_of(definition, data, **kwargs):
    with pytest.raises(ValidationFailed) as caught:
        definition.validate(data, **kwargs)
    return caught.value.errors


def messages(definition, data, **kwargs):
    return [m for ms in errors_of(definition, data, **kwargs).values() for m in ms]


# -- text -------------------------------------------------------------------------------------------

NAME = {"type": "textfield", "key": "name", "label": "Name", "validate": {"required": True, "maxLength": 5}}


def test_a_text_value_is_stored_as_written():
    assert form(NAME).validate({"name": "Anna"}) == {"name": "Anna"}


def test_a_required_text_must_not_be_missing_empty_or_blank():
    definition = form(NAME)
    for data in ({}, {"name": ""}, {"name": "   "}, {"name": None}):
        assert errors_of(definition, data) == {"name": ["Bitte füllen Sie dieses Feld aus."]}


def test_max_length_counts_the_trimmed_text():
    definition = form(NAME)
    assert definition.validate({"name": "  Abcde  "}) == {"name": "  Abcde  "}
    assert errors_of(definition, {"name": "Abcdef"}) == {"name": ["Höchstens 5 Zeichen."]}


def test_min_length_counts_the_trimmed_text():
    definition = form({"type": "textarea", "key": "note", "validate": {"minLength": 3}})
    assert definition.validate({"note": "abc"}) == {"note": "abc"}
    assert errors_of(definition, {"note": " ab "}) == {"note": ["Mindestens 3 Zeichen."]}


def test_an_empty_optional_text_is_stored_as_none():
    definition = form({"type": "textfield", "key": "note", "validate": {"minLength": 3}})
    assert definition.validate({"note": ""}) == {"note": None}
    assert definition.validate({}) == {"note": None}


def test_the_pattern_is_unanchored_like_form_js():
    definition = form({"type": "textfield", "key": "code", "validate": {"pattern": "[0-9]{3}"}})
    assert definition.validate({"code": "ab123cd"}) == {"code": "ab123cd"}
    assert errors_of(definition, {"code": "12"}) == {"code": ["Die Eingabe hat nicht das erwartete Format."]}


REDOS = {"type": "textfield", "key": "code", "validate": {"pattern": "^(a+)+$", "maxLength": 100}}
UNCHECKED = "Die Eingabe kann nicht geprüft werden. Bitte wenden Sie sich an die Koordination."


@pytest.mark.parametrize("pattern", ["^(a+)+$", "(a|aa)*b", "^([a-z]+[0-9]*)+$"])
def test_a_pattern_that_nests_repetitions_is_an_error_at_check_time(pattern):
    component = {**REDOS, "validate": {"pattern": pattern}}
    found = check_form({"id": "f", "components": [component]}, file="f.form")
    assert [(f.element_id, f.severity) for f in found] == [("code", "error")]
    assert "nests repetitions" in found[0].message


def test_a_deployed_form_with_a_catastrophic_pattern_never_runs_it(caplog):
    definition = form(REDOS, form_id="redos")  # loaded as in use: a warning, not an unusable form
    assert any("nests repetitions" in f.message for f in definition.findings)
    assert "nests repetitions" in caplog.text
    started = time.monotonic()
    assert errors_of(definition, {"code": "a" * 40 + "!"}) == {"code": [UNCHECKED]}
    assert errors_of(definition, {"code": "aaa"}) == {"code": [UNCHECKED]}  # fail closed: nothing unchecked
    assert time.monotonic() - started < 1
    assert definition.validate({}) == {"code": None}  # an empty optional field still works


def test_a_slow_pattern_is_stopped_by_a_time_bound():
    # no nested repetition, but polynomial backtracking: minutes on 3,000 characters without a bound
    definition = form({"type": "textfield", "key": "code", "validate": {"pattern": r"^\w*\w*\w*\w*\w*\w*\s$"}})
    started = time.monotonic()
    assert errors_of(definition, {"code": "a" * 3000 + "!"}) == {"code": [UNCHECKED]}
    assert time.monotonic() - started < 2
    assert definition.validate({"code": "ab "}) == {"code": "ab "}


def test_the_pattern_does_not_apply_to_an_empty_optional_value():
    definition = form({"type": "textfield", "key": "code", "validate": {"pattern": "^C-"}})
    assert definition.validate({"code": ""}) == {"code": None}


def test_textarea_line_endings_are_normalised():
    assert form({"type": "textarea", "key": "t"}).validate({"t": "a\r\nb"}) == {"t": "a\nb"}


def test_a_text_field_rejects_structured_values():
    assert messages(form({"type": "textfield", "key": "t"}), {"t": {"a": 1}}) == ["Bitte geben Sie einen Text ein."]


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [("email", "kontakt@beratung-mv.de", "kontakt@"), ("phone", "+49 385 123456", "0385 123456")],
)
def test_validation_types_email_and_phone(kind, good, bad):
    definition = form({"type": "textfield", "key": "c", "validate": {"validationType": kind}})
    assert definition.validate({"c": good}) == {"c": good}
    assert len(errors_of(definition, {"c": bad})["c"]) == 1


# -- numbers ----------------------------------------------------------------------------------------

AGE = {"type": "number", "key": "age", "decimalDigits": 0, "validate": {"min": 0, "max": 120}}


@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("120", 120), (42, 42), (" 7 ", 7), (7.0, 7)])
def test_whole_numbers_become_int(raw, value):
    cleaned = form(AGE).validate({"age": raw})
    assert cleaned == {"age": value}
    assert type(cleaned["age"]) is int


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("-1", "Der Wert darf nicht kleiner als 0 sein."),
        ("121", "Der Wert darf nicht größer als 120 sein."),
        ("1.5", "Bitte geben Sie eine ganze Zahl ein."),
        ("zwölf", "Bitte geben Sie eine Zahl ein."),
        (True, "Bitte geben Sie eine Zahl ein."),
        ("NaN", "Bitte geben Sie eine Zahl ein."),
        ("1e3", "Bitte geben Sie eine Zahl ein."),
    ],
)
def test_numbers_outside_the_rules_are_rejected(raw, message):
    assert errors_of(form(AGE), {"age": raw}) == {"age": [message]}


def test_decimal_digits_limit_the_fraction_and_accept_a_german_comma():
    definition = form({"type": "number", "key": "hours", "decimalDigits": 2})
    assert definition.validate({"hours": "1,25"}) == {"hours": 1.25}
    assert definition.validate({"hours": "2.50"}) == {"hours": 2.5}
    assert definition.validate({"hours": "3"}) == {"hours": 3}
    assert errors_of(definition, {"hours": "1.255"}) == {"hours": ["Höchstens 2 Nachkommastellen."]}


def test_increment_allows_only_steps():
    definition = form({"type": "number", "key": "h", "increment": "0.5"})
    assert definition.validate({"h": "1.5"}) == {"h": 1.5}
    assert errors_of(definition, {"h": "1.2"}) == {
        "h": ["Bitte wählen Sie einen gültigen Wert, zum Beispiel 1 oder 1,5."]
    }


def test_zero_is_checked_against_min():
    definition = form({"type": "number", "key": "n", "validate": {"min": 1}})
    assert errors_of(definition, {"n": 0}) == {"n": ["Der Wert darf nicht kleiner als 1 sein."]}


# -- checkbox, choices ------------------------------------------------------------------------------

CONSENT = {"type": "checkbox", "key": "consent", "label": "Einwilligung", "validate": {"required": True}}


@pytest.mark.parametrize(("raw", "value"), [(True, True), ("on", True), ("true", True), (False, False), ("", False)])
def test_a_checkbox_becomes_bool(raw, value):
    assert form({"type": "checkbox", "key": "c"}).validate({"c": raw}) == {"c": value}


def test_an_unsubmitted_checkbox_is_false():
    assert form({"type": "checkbox", "key": "c"}).validate({}) == {"c": False}


def test_a_required_checkbox_must_be_checked_like_form_js():
    assert errors_of(form(CONSENT), {"consent": False}) == {"consent": ["Bitte kreuzen Sie dieses Feld an."]}
    assert form(CONSENT).validate({"consent": "on"}) == {"consent": True}


def test_a_checkbox_rejects_other_text():
    assert errors_of(form(CONSENT), {"consent": "vielleicht"}) == {"consent": ["Bitte geben Sie ja oder nein an."]}


TOPIC = {
    "type": "select",
    "key": "topic",
    "validate": {"required": True},
    "values": [{"label": "Rassismus", "value": "racism"}, {"label": "Antisemitismus", "value": "antisemitism"}],
}


@pytest.mark.parametrize("kind", ["select", "radio"])
def test_select_and_radio_accept_only_declared_values(kind):
    definition = form({**TOPIC, "type": kind})
    assert definition.validate({"topic": "racism"}) == {"topic": "racism"}
    assert errors_of(definition, {"topic": "Rassismus"}) == {"topic": ["Bitte wählen Sie einen der angebotenen Werte."]}
    assert errors_of(definition, {"topic": ""}) == {"topic": ["Bitte wählen Sie einen Wert aus."]}


def test_non_text_option_values_are_matched_from_browser_text():
    definition = form({"type": "radio", "key": "n", "values": [{"label": "Eins", "value": 1}]})
    assert definition.validate({"n": "1"}) == {"n": 1}
    assert definition.validate({"n": 1}) == {"n": 1}


@pytest.mark.parametrize("kind", ["checklist", "taglist"])
def test_checklist_and_taglist_store_allowed_values_in_form_order(kind):
    definition = form({**TOPIC, "type": kind})
    assert definition.validate({"topic": ["antisemitism", "racism", "racism"]}) == {
        "topic": ["racism", "antisemitism"]
    }
    assert definition.validate({"topic": "racism"}) == {"topic": ["racism"]}
    assert errors_of(definition, {"topic": []}) == {"topic": ["Bitte wählen Sie mindestens einen Wert aus."]}
    assert errors_of(definition, {"topic": ["racism", "other"]}) == {
        "topic": ["Bitte wählen Sie einen der angebotenen Werte."]
    }


def test_an_optional_empty_checklist_is_an_empty_list():
    assert form({**TOPIC, "type": "checklist", "validate": {}}).validate({}) == {"topic": []}


def test_values_key_takes_options_from_the_task_data():
    definition = form({"type": "select", "key": "unit", "valuesKey": "units"})
    context = {"units": [{"label": "RZ Westmecklenburg", "value": "rz-west"}, "lobbi"]}
    assert definition.validate({"unit": "lobbi"}, context=context) == {"unit": "lobbi"}
    assert errors_of(definition, {"unit": "elsewhere"}, context=context)["unit"]
    assert errors_of(definition, {"unit": "lobbi"})["unit"]  # no options without the task data


# -- dates and times --------------------------------------------------------------------------------

DAY = {"type": "datetime", "subtype": "date", "key": "day", "dateLabel": "Datum"}


@pytest.mark.parametrize("raw", ["2026-03-01", "01.03.2026", "1.3.2026"])
def test_dates_are_stored_as_iso_text(raw):
    assert form(DAY).validate({"day": raw}) == {"day": "2026-03-01"}


@pytest.mark.parametrize("raw", ["2026-02-30", "31.02.2026", "morgen", "2026-3-1x", 20260301])
def test_invalid_dates_are_rejected(raw):
    assert errors_of(form(DAY), {"day": raw}) == {
        "day": ["Bitte geben Sie ein gültiges Datum ein, zum Beispiel 31.12.2026."]
    }


def test_date_label_is_the_label_when_there_is_none():
    assert form(DAY).field("day").label == "Datum"


def test_times_and_date_times_are_stored_as_iso_text():
    definition = form(
        {"type": "datetime", "subtype": "time", "key": "t"}, {"type": "datetime", "subtype": "datetime", "key": "dt"}
    )
    assert definition.validate({"t": "9:05", "dt": "2026-03-01T14:30"}) == {"t": "09:05", "dt": "2026-03-01T14:30"}
    assert definition.validate({"t": "23:59:30", "dt": "01.03.2026 14:30"}) == {
        "t": "23:59:30",
        "dt": "2026-03-01T14:30",
    }
    assert set(errors_of(definition, {"t": "25:00", "dt": "2026-03-01"})) == {"t", "dt"}


# -- display-only components, groups, undeclared keys ------------------------------------------------


def test_display_components_have_no_value_but_appear_in_the_layout():
    definition = form(
        {"type": "text", "text": "# Erstgespräch"},
        {"type": "separator"},
        {"type": "spacer"},
        {"type": "textfield", "key": "a"},
        {"type": "button", "action": "submit", "label": "Senden"},
    )
    assert [f.key for f in definition.fields] == ["a"]
    assert [item.kind for item in definition.layout] == ["text", "separator", "spacer", "field"]
    assert definition.layout[0].text == "# Erstgespräch"


GROUPED = [
    {
        "type": "group",
        "label": "Ratsuchende",
        "path": "client",
        "components": [
            {"type": "textfield", "key": "name", "properties": {"personal": "true"}},
            {"type": "group", "label": "Adresse", "components": [{"type": "textfield", "key": "address.city"}]},
        ],
    },
    {"type": "group", "label": "ohne Pfad", "components": [{"type": "textfield", "key": "topic"}]},
]


def test_group_paths_prefix_the_keys_of_their_children():
    definition = form(*GROUPED)
    assert [f.key for f in definition.fields] == ["client.name", "client.address.city", "topic"]
    assert definition.layout[0].kind == "group"
    assert definition.layout[0].children[1].children[0].key == "client.address.city"


def test_grouped_values_are_nested_and_dotted_keys_are_accepted():
    definition = form(*GROUPED)
    nested = {"client": {"name": "A", "address": {"city": "Anklam"}}, "topic": "x"}
    assert definition.validate(nested) == nested
    assert definition.validate({"client.name": "A", "client.address.city": "Anklam", "topic": "x"}) == nested


def test_undeclared_keys_are_rejected_by_name():
    definition = form(*GROUPED)
    with pytest.raises(ValidationFailed) as caught:
        definition.validate({"topic": "x", "is_admin": True, "client": {"name": "A", "extra": 1}})
    assert caught.value.message == "Unbekannte Felder: is_admin, client.extra."
    assert caught.value.errors["is_admin"] == ["Dieses Feld gibt es im Formular nicht."]
    assert caught.value.errors["client.extra"] == ["Dieses Feld gibt es im Formular nicht."]


def test_undeclared_keys_are_rejected_in_drafts_too():
    assert "x" in errors_of(form(NAME), {"x": 1}, partial=True)


def test_validate_needs_an_object():
    with pytest.raises(ValidationFailed):
        form(NAME).validate(["name"])


# -- conditions -------------------------------------------------------------------------------------

CONDITIONAL = [
    {"type": "checkbox", "key": "escalate"},
    {
        "type": "textarea",
        "key": "reason",
        "validate": {"required": True, "maxLength": 10},
        "conditional": {"hide": "=not(escalate)"},
    },
]


def test_a_hidden_field_is_neither_validated_nor_stored():
    definition = form(*CONDITIONAL)
    assert definition.validate({"escalate": False, "reason": "x" * 50}) == {"escalate": False}
    assert definition.validate({"escalate": "on", "reason": "Landesweit"}) == {
        "escalate": True,
        "reason": "Landesweit",
    }
    assert errors_of(definition, {"escalate": "on"}) == {"reason": ["Bitte füllen Sie dieses Feld aus."]}


def test_conditions_see_submitted_values_over_the_task_data():
    definition = form({"type": "textfield", "key": "note", "conditional": {"hide": '=phase = "closed"'}})
    assert definition.validate({"note": "a"}, context={"phase": "closed"}) == {}
    assert definition.validate({"note": "a"}, context={"phase": "open"}) == {"note": "a"}
    assert definition.hidden_keys({}, context={"phase": "closed"}) == {"note"}


def test_a_hidden_group_hides_its_children():
    definition = form(
        {"type": "number", "key": "count"},
        {
            "type": "group",
            "conditional": {"hide": "=count = null or count < 5"},
            "components": [{"type": "textfield", "key": "detail", "validate": {"required": True}}],
        },
    )
    assert definition.validate({"count": "3"}) == {"count": 3}  # coerced before the condition sees it
    assert errors_of(definition, {"count": "7"}) == {"detail": ["Bitte füllen Sie dieses Feld aus."]}


def test_values_of_hidden_fields_do_not_reveal_other_fields():
    definition = form(
        {"type": "checkbox", "key": "a"},
        {"type": "checkbox", "key": "b", "conditional": {"hide": "=not(a)"}},
        {"type": "textfield", "key": "c", "conditional": {"hide": "=b != true"}},
    )
    assert definition.validate({"a": False, "b": True, "c": "x"}) == {"a": False}
    assert definition.validate({"a": True, "b": True, "c": "x"}) == {"a": True, "b": True, "c": "x"}


def test_read_only_and_disabled_fields_are_not_taken_from_the_submission():
    definition = form(
        {"type": "textfield", "key": "case_no", "readonly": True},
        {"type": "textfield", "key": "unit", "disabled": True},
        {"type": "textfield", "key": "note", "readonly": '=phase = "closed"'},
    )
    submitted = {"case_no": "forged", "unit": "forged", "note": "n"}
    assert definition.validate(submitted) == {"note": "n"}
    assert definition.validate(submitted, context={"phase": "closed"}) == {}


# -- drafts -----------------------------------------------------------------------------------------


def test_a_draft_skips_required_and_keeps_only_what_was_sent():
    definition = form(NAME, AGE, CONSENT, TOPIC)
    assert definition.validate({"age": "12"}, partial=True) == {"age": 12}


def test_a_draft_keeps_unreadable_typed_input_and_drops_values_not_offered():
    definition = form(AGE, DAY, TOPIC, NAME)
    draft = definition.validate({"age": "zwölf", "day": "31.02.", "topic": "evil", "name": "Abcdefgh"}, partial=True)
    assert draft == {"age": "zwölf", "day": "31.02.", "name": "Abcdefgh"}


# -- personal fields and display ----------------------------------------------------------------------


def test_personal_keys_include_children_of_personal_groups():
    definition = form(
        *GROUPED,
        {"type": "group", "properties": {"personal": True}, "components": [{"type": "textfield", "key": "phone"}]},
    )
    assert definition.personal_keys == {"client.name", "phone"}
    assert definition.field("client.name").personal


def test_display_values_resolve_labels_and_format_in_german():
    definition = form(
        {**TOPIC, "type": "checklist", "label": "Themen"},
        {"type": "checkbox", "key": "consent", "label": "Einwilligung"},
        DAY,
        {"type": "number", "key": "hours", "label": "Stunden"},
        {"type": "textfield", "key": "name", "properties": {"personal": "true"}},
    )
    data = {"topic": ["racism", "antisemitism"], "consent": True, "day": "2026-03-01", "hours": 1.5, "name": "A"}
    shown = {v.key: v.text for v in definition.display_values(data)}
    assert shown == {
        "topic": "Rassismus, Antisemitismus",
        "consent": "Ja",
        "day": "01.03.2026",
        "hours": "1,5",
        "name": "A",
    }
    assert "name" not in {v.key for v in definition.display_values(data, include_personal=False)}


def test_initial_values_prefer_task_data_over_defaults():
    definition = form({"type": "textfield", "key": "a", "defaultValue": "x"}, {"type": "textfield", "key": "b"})
    assert definition.initial_values({"b": "y"}) == {"a": "x", "b": "y"}


# -- findings ---------------------------------------------------------------------------------------


def findings(components, **top):
    definition = {"id": "f", "type": "default", "components": components, **top}
    return [(f.element_id, f.severity, f.message) for f in check_form(json.dumps(definition), file="f.form")]


def test_invalid_json_is_one_error():
    [finding] = check_form(b"{nope", file="broken.form")
    assert (finding.file, finding.severity) == ("broken.form", "error")
    assert "not valid JSON" in finding.message
    assert str(finding).startswith("broken.form: broken.form: not valid JSON")


@pytest.mark.parametrize(
    ("component", "severity", "fragment"),
    [
        ({"type": "dynamiclist", "key": "x"}, "error", "'dynamiclist' is not supported"),
        ({"type": "filepicker", "key": "x"}, "error", "'filepicker' is not supported"),
        ({"type": "expression", "key": "x"}, "error", "'expression' is not supported"),
        ({"type": "html", "content": "<b>x</b>"}, "warning", "'html' is not supported"),
        ({"type": "iframe", "url": "https://x"}, "warning", "'iframe' is not supported"),
        ({"type": "textfield"}, "error", "without 'key'"),
        ({"type": "textfield", "key": "first name"}, "error", "not a (dotted) variable name"),
        ({"type": "textfield", "key": "typename"}, "error", "'typename' is reserved"),
        ({"type": "textfield", "key": "client.typename"}, "error", "'typename' is reserved"),
        ({"type": "group", "path": "typename", "components": [{"type": "textfield", "key": "a"}]}, "error",
         "'typename' is reserved"),
        ({"type": "select", "key": "s"}, "error", "select without values"),
        ({"type": "select", "key": "s", "valuesExpression": "=x"}, "error", "valuesExpression"),
        ({"type": "textfield", "key": "p", "validate": {"pattern": "(unclosed"}}, "error", "not a valid regular"),
        ({"type": "number", "key": "n", "validate": {"min": 5, "max": 1}}, "error", "min 5 is greater than max 1"),
        ({"type": "textfield", "key": "t", "validate": {"minLength": 5, "maxLength": 1}}, "error", "greater"),
        ({"type": "textfield", "key": "t", "conditional": {"hide": "=contains(x, 1)"}}, "error", "unsupported FEEL"),
        ({"type": "textfield", "key": "t", "conditional": {"hide": "x = 1"}}, "error", "starts with '='"),
        ({"type": "number", "key": "n", "decimalDigits": -1}, "error", "decimalDigits"),
        ({"type": "number", "key": "n", "increment": "0"}, "error", "increment"),
        ({"type": "datetime", "key": "d", "subtype": "week"}, "error", "subtype 'week'"),
        ({"type": "datetime", "key": "d", "disallowPassedDates": True}, "warning", "not enforced"),
        ({"type": "textfield", "key": "t", "validate": {"validationType": "iban"}}, "error", "'iban'"),
        ({"type": "textfield", "key": "t", "validate": {"minimum": 1}}, "warning", "validate.minimum"),
        ({"type": "textfield", "key": "t", "defaultValue": {"a": 1}}, "warning", "defaultValue"),
        ({"type": "text", "text": "Hallo {{name}}"}, "warning", "not evaluated"),
        ({"type": "select", "key": "s", "values": [{"value": "a"}, {"value": "a"}]}, "error", "offered twice"),
        ({"type": "textfield", "key": "t", "properties": "personal"}, "error", "'properties' must be an object"),
        ({"type": "number", "key": "n", "validate": {"min": float("inf")}}, "error", "validate.min must be a number"),
        ({"type": "number", "key": "n", "validate": {"max": float("nan")}}, "error", "validate.max must be a number"),
        ({"type": "textfield", "key": "t", "conditional": {"hide": "=" + "(" * 500 + "x" + ")" * 500}}, "error",
         "nests parentheses more than 32 deep"),
        ({"type": "textfield", "key": "t", "readonly": "=" + "not(" * 40 + "x" + ")" * 40}, "error",
         "nests parentheses more than 32 deep"),
    ],
)
def test_problems_become_findings(component, severity, fragment):
    found = findings([component])
    assert any(sev == severity and fragment in message for _, sev, message in found), found


def test_duplicate_keys_are_an_error_also_across_groups():
    found = findings(
        [
            {"type": "textfield", "key": "a.b", "id": "first"},
            {"type": "group", "path": "a", "components": [{"type": "textfield", "key": "b"}]},
            {"type": "textfield", "key": "a"},
        ]
    )
    assert ("b", "error", "duplicate key 'a.b' (also used by a.b)") in found
    assert any("conflicts" in message for _, _, message in found)


def test_a_form_without_id_is_referenced_by_its_file_name():
    [found] = check_form(b'{"components": []}', file="forms/intake.form")
    assert (found.element_id, found.severity) == ("intake", "warning")
    assert found.message == "the form has no 'id'; user tasks reference it as 'intake' (camunda:formRef)"


def test_a_form_without_components_is_an_error():
    assert [f.severity for f in check_form({"id": "x"}, file="x.form")] == ["error"]


def test_load_form_raises_model_error_with_the_findings():
    with pytest.raises(ModelError) as caught:
        load_form({"id": "x", "components": [{"type": "table"}, {"type": "dynamiclist", "key": "d"}]}, file="x.form")
    assert [f.severity for f in caught.value.findings] == ["warning", "error"]


def test_warnings_do_not_stop_loading_and_are_kept():
    definition = form({"type": "image", "source": "x.png"}, {"type": "textfield", "key": "a"})
    assert [f.severity for f in definition.findings] == ["warning"]


# -- the corpus -------------------------------------------------------------------------------------

CORPUS_PAYLOADS = {
    "start-form.form": {"creditor": "Great Pizza for Everyone Inc.", "amount": "30", "invoiceNumber": "C-123"},
    "task-form.form": {
        "creditor": "Great Pizza for Everyone Inc.",
        "amount": "30",
        "invoiceNumber": "C-123",
        "approved": "true",
        "approvedBy": "Demo",
    },
}


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.form")), ids=lambda p: p.name)
def test_corpus_forms_load_and_a_sensible_payload_validates(path):
    found = check_form(path.read_bytes(), file=path.name)
    assert [(f.severity, f.element_id) for f in found] == [("warning", path.stem)]  # they have no id
    definition = load_form(path.read_bytes(), file=path.name)
    payload = CORPUS_PAYLOADS[path.name]
    assert definition.validate(payload) == payload
    assert errors_of(definition, {**payload, "amount": "30 EUR"}) == {
        "amount": ["Die Eingabe hat nicht das erwartete Format."]
    }
    assert errors_of(definition, {**payload, "invoiceNumber": "123"}) == {
        "invoiceNumber": ["Die Eingabe hat nicht das erwartete Format."]
    }


# -- inline Camunda forms ---------------------------------------------------------------------------


def spiff_field(field_id, kind, label="", default=None, validation=(), properties=()):
    built = EnumFormField() if kind == "enum" else FormField()
    built.id, built.type, built.label, built.default_value = field_id, kind, label, default
    for name, config in validation:
        built.add_validation(name, config)
    for name, value in properties:
        built.add_property(name, value)
    return built


def loan_form():
    form_ = Form()
    form_.key = "loan"
    required = ("required", None)  # as the stock parser reads <camunda:constraint name="required" />
    form_.add_field(spiff_field("firstname", "string", "First Name", validation=[("maxlength", "25"), required]))
    form_.add_field(spiff_field("netIncome", "long", "Net Income", validation=[required, ("min", "0")]))
    loan_type = spiff_field("loanType", "enum", "Loan Type", default="mortage")
    loan_type.add_option("mortage", "Mortage Loan (5%)")
    loan_type.add_option("cashAdvance", "Cash Advance (10%)")
    form_.add_field(loan_type)
    form_.add_field(spiff_field("approved", "boolean", "Approve?", default="false"))
    form_.add_field(spiff_field("start", "date", "Start", properties=[("personal", "true")]))
    form_.add_field(spiff_field("lastname", "string", "Last Name", validation=[("readonly", None)]))
    return form_


def test_inline_camunda_fields_validate_like_form_js_fields():
    definition = form_from_camunda(loan_form(), file="loan.bpmn", element_id="UserTask_1")
    assert [(f.key, f.type, f.required) for f in definition.fields] == [
        ("firstname", "textfield", True),
        ("netIncome", "number", True),
        ("loanType", "select", False),
        ("approved", "checkbox", False),
        ("start", "datetime", False),
        ("lastname", "textfield", False),
    ]
    assert definition.field("loanType").default == "mortage"
    assert definition.field("approved").default is False
    assert definition.personal_keys == {"start"}
    cleaned = definition.validate(
        {"firstname": "Ada", "netIncome": "3000", "loanType": "cashAdvance", "approved": "on", "start": "01.04.2026"}
    )
    assert cleaned == {
        "firstname": "Ada",
        "netIncome": 3000,
        "loanType": "cashAdvance",
        "approved": True,
        "start": "2026-04-01",
    }
    assert errors_of(definition, {"firstname": "x" * 26, "netIncome": "-1", "loanType": "gift"}) == {
        "firstname": ["Höchstens 25 Zeichen."],
        "netIncome": ["Der Wert darf nicht kleiner als 0 sein."],
        "loanType": ["Bitte wählen Sie einen der angebotenen Werte."],
    }
    assert errors_of(definition, {"netIncome": "1.5", "firstname": "A"}) == {
        "netIncome": ["Bitte geben Sie eine ganze Zahl ein."]
    }


def test_inline_camunda_problems_are_findings():
    broken = Form()
    broken.add_field(spiff_field("", "string"))
    broken.add_field(spiff_field("a", "custom"))
    broken.add_field(spiff_field("b", "string", validation=[("validator", "ssn")]))
    broken.add_field(spiff_field("c", "long", validation=[("min", "5"), ("max", "1")]))
    broken.add_field(spiff_field("d", "enum"))
    broken.add_field(spiff_field("typename", "string"))
    found = [(f.element_id, f.message) for f in check_camunda_form(broken, file="p.bpmn", element_id="Task_1")]
    assert [element for element, _ in found] == ["Task_1.formField[0]", "Task_1.a", "Task_1.b", "Task_1.c", "Task_1.d",
                                                 "Task_1.typename"]
    assert "'typename' is reserved" in found[-1][1]
    with pytest.raises(ModelError):
        form_from_camunda(broken)


def test_the_corpus_inline_form_reads_through_the_stock_parser():
    from SpiffWorkflow.camunda.parser import CamundaParser

    parser = CamundaParser()
    parser.add_bpmn_file(str(CORPUS / "loanApproval.bpmn"))
    spec = parser.get_spec("generatedFormsQuickstart")
    definition = form_from_camunda(spec.task_specs["UserTask_1"].form, element_id="UserTask_1")
    assert definition.validate({"approved": "true"}) == {"approved": True}  # the rest is read-only


# -- WTForms ----------------------------------------------------------------------------------------

WEB = [
    {"type": "text", "text": "Bitte ausfüllen"},
    {**NAME, "description": "Vor- und Nachname", "properties": {"personal": "true"}},
    AGE,
    CONSENT,
    {**TOPIC, "type": "checklist", "label": "Themen"},
    {**TOPIC, "key": "main", "label": "Hauptthema"},
    DAY,
    {"type": "textfield", "key": "data", "label": "Feld namens data"},
    *CONDITIONAL,
]


def web_form():
    return form(*WEB)


def test_the_wtforms_class_has_matching_fields_and_html_attributes():
    form_class = web_form().wtforms_class()
    rendered = form_class()
    assert rendered["name"].label.text == "Name"
    assert rendered["name"].description == "Vor- und Nachname"
    html = rendered["name"]()
    assert 'required' in html and 'maxlength="5"' in html
    assert 'min="0"' in rendered["age"]() and 'max="120"' in rendered["age"]()
    assert 'type="checkbox"' in rendered["topic"]()
    assert 'type="date"' in rendered["day"]()
    assert rendered.field_for("data").name == "field_data"
    assert "required" not in rendered["reason"]()  # a condition may hide it


def test_the_wtforms_class_is_cached_per_definition():
    definition = web_form()
    assert definition.wtforms_class() is definition.wtforms_class()


def test_a_valid_submission_validates_through_the_definition():
    form_class = web_form().wtforms_class()
    formdata = MultiDict(
        [
            ("name", "Ada"),
            ("age", "30"),
            ("consent", "y"),
            ("topic", "racism"),
            ("topic", "antisemitism"),
            ("main", "racism"),
            ("day", "2026-03-01"),
            ("field_data", "x"),
            ("reason", "ignored while hidden"),
        ]
    )
    submitted = form_class(formdata)
    assert submitted.validate(), {n: f.errors for n, f in submitted._fields.items()}
    assert submitted.cleaned_data == {
        "name": "Ada",
        "age": 30,
        "consent": True,
        "topic": ["racism", "antisemitism"],
        "main": "racism",
        "day": "2026-03-01",
        "data": "x",
        "escalate": False,
    }


def test_errors_land_on_the_fields_in_german():
    submitted = web_form().wtforms_class()(MultiDict([("name", "Abcdefg"), ("age", "abc"), ("escalate", "y")]))
    assert not submitted.validate()
    assert submitted["name"].errors == ["Höchstens 5 Zeichen."]
    assert submitted["age"].errors == ["Bitte geben Sie eine Zahl ein."]
    assert submitted["consent"].errors == ["Bitte kreuzen Sie dieses Feld an."]
    assert submitted["topic"].errors == ["Bitte wählen Sie mindestens einen Wert aus."]
    assert submitted["reason"].errors == ["Bitte füllen Sie dieses Feld aus."]
    assert submitted["day"].errors == []


def test_the_form_prefills_from_task_data_and_reports_hidden_fields():
    definition = web_form()
    context = {"name": "Ada", "day": "2026-03-01", "topic": ["racism"], "escalate": False}
    shown = definition.wtforms_class()(context=context)
    assert 'value="Ada"' in shown["name"]()
    assert 'value="2026-03-01"' in shown["day"]()
    assert "checked" in shown["topic"]()
    assert shown.is_hidden("reason")
    reason_item = next(i for i in shown.layout if i.key == "reason")
    assert shown.is_hidden(reason_item)
    assert shown.layout[0].kind == "text"


def test_a_draft_from_the_web_form_keeps_what_was_typed():
    submitted = web_form().wtforms_class()(MultiDict([("name", "Abcdefgh"), ("age", "zwölf")]))
    assert submitted.draft_values() == {
        "name": "Abcdefgh",
        "age": "zwölf",
        "consent": False,
        "topic": [],
        "main": None,
        "day": None,
        "data": None,
        "escalate": False,
    }


def test_values_key_choices_come_from_the_context():
    definition = form({"type": "select", "key": "unit", "valuesKey": "units"})
    context = {"units": [{"label": "LOBBI", "value": "lobbi"}]}
    submitted = definition.wtforms_class()(MultiDict([("unit", "lobbi")]), context=context)
    assert tuple(submitted["unit"].choices[1])[:2] == ("lobbi", "LOBBI")
    assert submitted.validate()
    assert submitted.cleaned_data == {"unit": "lobbi"}


def test_tampered_values_are_rejected_by_the_web_form():
    submitted = form(TOPIC).wtforms_class()(MultiDict([("topic", "<script>")]))
    assert not submitted.validate()
    assert submitted["topic"].errors == ["Bitte wählen Sie einen der angebotenen Werte."]


def test_meta_settings_pass_through():
    form_class = web_form().wtforms_class(meta={"locales": ["de_DE"]})
    assert form_class().meta.locales == ["de_DE"]


PROJECT_FORMS = sorted((Path(__file__).resolve().parent.parent / "forms").glob("*.form"))


@pytest.mark.parametrize("path", PROJECT_FORMS, ids=lambda p: p.name)
def test_the_networks_forms_load_without_errors(path):
    found = check_form(path.read_bytes(), file=path.name)
    assert [str(f) for f in found if f.severity == "error"] == []
    assert load_form(path.read_bytes(), file=path.name).fields


def test_loading_the_same_definition_again_is_cached():
    definition = {"id": "c", "components": [{"type": "textfield", "key": "a"}]}
    assert load_form(definition) is load_form(json.loads(json.dumps(definition)))
    assert load_form(definition) is not load_form({**definition, "id": "d"})


def test_deep_merge_keeps_sibling_keys_of_nested_task_data():
    from engine.forms import deep_merge

    task_data = {"client": {"name": "A", "city": "Anklam"}, "phase": "open"}
    assert deep_merge(task_data, {"client": {"city": "Stralsund"}}) == {
        "client": {"name": "A", "city": "Stralsund"},
        "phase": "open",
    }


def test_demo_values_fit_every_form_of_the_network_and_name_organisations_as_organisations():
    import random

    from engine import demo

    root = Path(__file__).resolve().parent.parent / "forms"
    for path in sorted(root.glob("*.form")):
        definition = load_form(path.read_bytes(), file=path.name)
        values = demo.sample_values(definition, random.Random(1), {})
        visible = definition.validate(values)  # plausible means: the form accepts them
        if "organisation_name" in values:
            assert visible["organisation_name"] in demo.ORGANISATIONS, path.name


def test_a_deeply_nested_form_is_a_finding_not_a_crash():
    text = '{"id": "f", "components": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert [(f.severity, f.message) for f in check_form(text, file="deep.form")] == [
        ("error", "the JSON is nested too deeply")]
    component = {"type": "textfield", "key": "x"}
    for level in range(300):
        component = {"type": "group", "id": f"g{level}", "components": [component]}
    found = check_form(json.dumps({"id": "f", "components": [component]}), file="f.form")
    assert [f.message for f in found] == ["groups are nested more than 32 levels deep"]
