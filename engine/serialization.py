"""Turning specs and running workflows into JSON text and back.

- A deployed version stores its spec once (`spec_to_json`); instance state is stored without it.
- Task data is stored whole per task (SpiffWorkflow's `SimpleTaskConverter`), not as deltas against
  the parent: the delta format restores correctly only if tasks come back in their original order,
  which a database that reorders JSON keys breaks silently (DESIGN.md).
- Stored state carries a version, `STATE_VERSION`; `load_state` migrates older state one documented
  step at a time before restoring it (`_MIGRATIONS`), and SpiffWorkflow's own serializer migrations
  run for state written by an older SpiffWorkflow.
"""

from __future__ import annotations

import functools
import json
import re
import reprlib
import sys
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import SimpleTaskConverter, WorkflowConverter
from SpiffWorkflow.bpmn.serializer.helpers.dictionary import _JSON_PRIMITIVE_TYPES
from SpiffWorkflow.bpmn.serializer.helpers.registry import DefaultRegistry
from SpiffWorkflow.bpmn.serializer.migration.version_migration import MIGRATIONS as SPIFF_MIGRATIONS
from SpiffWorkflow.bpmn.serializer.workflow import VERSION as SPIFF_VERSION
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.camunda.serializer.event_definition import MessageEventDefinitionConverter
from SpiffWorkflow.task import Task as SpiffTask
from SpiffWorkflow.task import TaskState

from .clock import _ClockedDatetime
from .errors import ModelError
from .parser import MessageEventDefinition

#: our envelope's version; bump it and add a step to _MIGRATIONS when the stored shape changes
STATE_VERSION = 1
SERIALIZER_VERSION = f"{STATE_VERSION}/{SPIFF_VERSION}"


#: task ids as UUIDs: each is parsed three or four times per restore (as the task's key, its id, its
#: parent's child, its children's parent), and again at the instance's next restore
_uuid = functools.lru_cache(maxsize=50_000)(UUID)


class _TaskConverter(SimpleTaskConverter):
    def from_dict(self, dct, workflow):
        """`SimpleTaskConverter.from_dict` (SpiffWorkflow 3.2.0), with the ids parsed through `_uuid`."""
        task_spec = workflow.spec.task_specs.get(dct["task_spec"])
        task = self.target_class(workflow, task_spec, state=dct["state"], id=_uuid(dct["id"]))
        task._parent = _uuid(dct["parent"]) if dct["parent"] is not None else None
        task._children = [_uuid(child) for child in dct["children"]]
        task.last_state_change = dct["last_state_change"]
        task.triggered = dct["triggered"]
        task.internal_data = self.registry.restore(dct["internal_data"])
        task.data = self.registry.restore(dct["data"])
        if isinstance(task_spec, CatchingEvent) and task.has_state(TaskState.DEFINITE_MASK):
            task.workflow.top_workflow.event_manager.add_task(task)
        return task


#: SpiffWorkflow marks a stored value of a non-JSON type as a mapping with this key (`{"typename":
#: "datetime", "value": ...}`): a mapping of case data with the same key would be taken for one
RESERVED_KEY = "typename"


#: how deeply case data may nest (a form's data nests a few levels): restoring walks it recursively
MAX_DATA_DEPTH = 32

#: leaf types the stored state keeps as they are (exact types: a subclass would come back as its base)
STORABLE = frozenset({str, int, float, bool, type(None), Decimal, date, datetime, _ClockedDatetime, time,
                      timedelta, UUID})
_SURROGATE = re.compile("[\ud800-\udfff]")
#: JSON text holds whole numbers of up to this many digits (Python's int/str conversion limit; 0: any)
_MAX_DIGITS = sys.get_int_max_str_digits()
_TOO_MANY_DIGITS = 10**_MAX_DIGITS if _MAX_DIGITS else None


def _text_problem(text: str) -> str | None:
    if not text.isascii() and _SURROGATE.search(text):
        return "text with an unpaired surrogate (\\ud800 to \\udfff) cannot be stored"
    return None


def _label(key) -> str:
    """A key as part of a path, printable even if it holds a surrogate."""
    text = key if isinstance(key, str) else repr(key)
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if _text_problem(text) else text


def _leaf_problem(item, kind) -> str | None:
    if kind is str:
        return _text_problem(item)
    if kind is int:
        if _TOO_MANY_DIGITS and abs(item) >= _TOO_MANY_DIGITS:
            return f"a whole number of more than {_MAX_DIGITS:,} digits cannot be stored"
        return None
    if kind in STORABLE:
        return None
    hint = "; convert it, e.g. sorted(...) for a set" if kind in (set, frozenset) else ""
    return f"a value of type '{kind.__name__}' cannot be stored{hint}"


def _key_problem(key) -> str | None:
    if type(key) is not str:
        return f"keys must be text, not {type(key).__name__} {reprlib.repr(key)}"
    if key == RESERVED_KEY:
        return f"'{RESERVED_KEY}' is reserved for the engine's stored values"
    if not key.isascii() and _SURROGATE.search(key):
        return "a key with an unpaired surrogate (\\ud800 to \\udfff) cannot be stored"
    return None


def _key_path(path: str, key) -> str:
    if type(key) is not str:
        return f"{path}[{_label(key)}]"
    return f"{path}.{_label(key)}" if path else _label(key)


_CONTAINERS = (dict, list, tuple)


def data_problems(value, *, seen: set[int] | None = None) -> dict[str, str]:
    """What in `value` (case data) could not be stored and restored as it is, by path (`a.b[2]`): mappings
    with the key RESERVED_KEY, keys that are not text, text with unpaired surrogates, whole numbers too long
    for JSON, values of other types than STORABLE, lists, tuples and dicts, and nesting deeper than
    MAX_DATA_DEPTH (not looked into further). `seen`: ids of containers found fine already, shared by
    successive calls (task data shares containers) and extended by this one."""
    problems: dict[str, str] = {}
    seen = set() if seen is None else seen

    def visit(item, path: str, depth: int) -> None:
        if id(item) in seen:
            return
        if depth > MAX_DATA_DEPTH:
            problems[path] = f"nested more than {MAX_DATA_DEPTH} levels deep"
            return
        before = len(problems)
        if type(item) is dict:
            for key, inner in item.items():
                kind = type(inner)
                if type(key) is not str or key == RESERVED_KEY or not key.isascii():
                    problem = _key_problem(key)
                    if problem:
                        problems[_key_path(path, key)] = problem
                if kind in _CONTAINERS:
                    visit(inner, _key_path(path, key), depth + 1)
                elif (kind is not str or not inner.isascii()) and (problem := _leaf_problem(inner, kind)):
                    problems[_key_path(path, key)] = problem
        else:
            for index, inner in enumerate(item):
                kind = type(inner)
                if kind in _CONTAINERS:
                    visit(inner, f"{path}[{index}]", depth + 1)
                elif (kind is not str or not inner.isascii()) and (problem := _leaf_problem(inner, kind)):
                    problems[f"{path}[{index}]"] = problem
        if len(problems) == before:
            seen.add(id(item))

    if type(value) in _CONTAINERS:
        visit(value, "", 0)
    elif problem := _leaf_problem(value, type(value)):
        problems[""] = problem
    return problems


def describe_problems(problems: dict[str, str]) -> str:
    """The first of `data_problems`, as 'path: problem (and N more)'."""
    path, problem = next(iter(problems.items()))
    return f"{path}: {problem}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


class _Registry(DefaultRegistry):
    def restore(self, val, **kwargs):
        """`DictionaryConverter.restore` (SpiffWorkflow 3.2.0), except that a mapping whose `typename` names
        no registered type, or that the type's converter cannot read, is restored as data: SpiffWorkflow
        failed on it, and the case could never be restored again. Case data with the key is refused now
        (`data_problems`, `dump_state`), but state stored before may hold it."""
        val_type = type(val)
        if val_type in _JSON_PRIMITIVE_TYPES:
            return val
        if isinstance(val, dict):
            from_dict = self.convert_from_dict.get(val[RESERVED_KEY]) if RESERVED_KEY in val else None
            if from_dict is not None:
                dct = dict(val)
                del dct[RESERVED_KEY]
                try:
                    return from_dict(dct, **kwargs)
                except (KeyError, TypeError, ValueError):  # data that only looks like a stored value
                    pass
            return {k: self.restore(v, **kwargs) for k, v in val.items()}
        if val_type is list:
            return [self.restore(item, **kwargs) for item in val]
        if val_type is tuple:
            return tuple(self.restore(item, **kwargs) for item in val)
        if val_type is set:
            return {self.restore(item, **kwargs) for item in val}
        if isinstance(val, list | tuple | set):
            return val.__class__([self.restore(item, **kwargs) for item in val])
        return val


def _build_serializer() -> BpmnWorkflowSerializer:
    config = dict(CAMUNDA_CONFIG)
    config[SpiffTask] = _TaskConverter
    config[MessageEventDefinition] = MessageEventDefinitionConverter
    registry = BpmnWorkflowSerializer.configure(config, registry=_Registry())
    registry.register(
        date, lambda v: {"value": v.isoformat()}, lambda v: date.fromisoformat(v["value"]), typename="date"
    )
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda v: Decimal(v["value"]), typename="Decimal")
    registry.register(time, lambda v: {"value": v.isoformat()}, lambda v: time.fromisoformat(v["value"]),
                      typename="time")
    # SpiffWorkflow's own conversion drops the microseconds; state it wrote (without them) restores alike
    registry.register(timedelta, lambda v: {"days": v.days, "seconds": v.seconds, "microseconds": v.microseconds},
                      lambda v: timedelta(**v), typename="timedelta")
    # the datetime class SpiffWorkflow's timers see (clock.py) serialises like a datetime
    registry.typenames[_ClockedDatetime] = registry.typenames[datetime]
    return BpmnWorkflowSerializer(registry)


SERIALIZER = _build_serializer()
_ENCODER = SERIALIZER._encoder_cls
# the registry wraps each converter's bound from_dict in a functools.partial
_WORKFLOW_CONVERTER = SERIALIZER.registry.convert_from_dict[
    SERIALIZER.registry.typenames[BpmnWorkflow]
].args[0].__self__
_WORKFLOW_TYPENAME = SERIALIZER.registry.typenames[BpmnWorkflow]


def _dumps(obj) -> str:
    return json.dumps(obj, cls=_ENCODER, separators=(",", ":"))


class _EncoderMode:
    """SpiffWorkflow's registry converts for a JSON encoder only while this flag is set."""

    def __enter__(self):
        SERIALIZER.registry._encoder_mode = True

    def __exit__(self, *exc):
        SERIALIZER.registry._encoder_mode = False


def spec_to_json(spec, subprocess_specs: dict, *, start_defaults: dict | None = None) -> str:
    dct = {
        "spec": SERIALIZER.to_dict(spec),
        "subprocess_specs": {name: SERIALIZER.to_dict(s) for name, s in subprocess_specs.items()},
        "start_defaults": start_defaults or {},
    }
    return json.dumps(dct, sort_keys=True, separators=(",", ":"))


def spec_from_json(text: str):
    """Returns (spec, subprocess specs, start data defaults)."""
    dct = json.loads(text)
    spec = SERIALIZER.from_dict(dct["spec"])
    subprocess_specs = {name: SERIALIZER.from_dict(s) for name, s in dct["subprocess_specs"].items()}
    return spec, subprocess_specs, dct.get("start_defaults", {})


def dump_state(workflow: BpmnWorkflow) -> str:
    """The instance state without its spec, as JSON text: what `BpmnWorkflowConverter.to_dict` makes,
    in its key order, but without converting the spec (a third of the work) only to drop it.

    Task data that could not be stored as it is (`data_problems`: checked at input, but a script or a
    decision can make it) is a ModelError at the first task that has it.
    """
    _refuse_unstorable(workflow)
    owner = _WORKFLOW_CONVERTER
    with _EncoderMode():
        dct = WorkflowConverter.to_dict(owner, workflow)
        dct["subprocesses"] = owner.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = owner.registry.convert(workflow.bpmn_events)
    dct["typename"] = _WORKFLOW_TYPENAME
    dct["fallwerk_state_version"] = STATE_VERSION
    dct[SERIALIZER.VERSION_KEY] = SPIFF_VERSION
    return _dumps(dct)


def _refuse_unstorable(workflow: BpmnWorkflow) -> None:
    failing = []
    seen: set[int] = set()
    for part in (workflow, *workflow.subprocesses.values()):
        for task in part.tasks.values():
            if _new_problems(task, seen):
                failing.append(task)
    if failing:
        first = min(failing, key=lambda task: task.last_state_change)
        raise ModelError(f"the task data cannot be stored: {describe_problems(data_problems(first.data))}; the "
                         "model made it (change the script or decision)",
                         element_id=first.task_spec.bpmn_id or first.task_spec.name)


def _new_problems(task, seen: set[int]) -> dict[str, str]:
    """The problems of the task's data that its parent's data does not have (there, they are found at the
    parent): only its values that differ from the parent's are looked at."""
    data, parent = task.data, task.parent
    if parent is None:
        return data_problems(data, seen=seen)
    inherited = parent.data
    if data == inherited:
        return {}
    return data_problems({key: value for key, value in data.items() if inherited.get(key, _MISSING) != value},
                         seen=seen)


_MISSING = object()


def load_state(text: str, spec, subprocess_specs: dict, script_engine=None) -> BpmnWorkflow:
    """Restore a workflow from `dump_state` output and its version's spec, with `script_engine` attached."""
    dct = json.loads(text)
    migrate(dct)
    workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=script_engine, deserializing=True)
    # BpmnWorkflowConverter.from_dict would restore the spec from the dict; we have it already
    # (cached per version), so restore just the rest with the same converter's helpers.
    owner = _WORKFLOW_CONVERTER
    workflow.tasks = owner.mapping_from_dict(dct["tasks"], _uuid, workflow=workflow)
    workflow.task_tree = workflow.tasks.get(_uuid(dct["root"]))
    owner.set_default_attributes(workflow, dct)
    owner.subprocesses_from_dict(dct["subprocesses"], workflow)
    workflow.bpmn_events = SERIALIZER.registry.restore(dct.pop("bpmn_events", []))
    # SimpleTaskConverter registers every catching event that is FUTURE or later as waiting (the delta
    # converter and a running workflow register only WAITING ones): a message would then be caught by an
    # event the instance has not reached yet, and the flow would later run past it without waiting.
    waiting = workflow.event_manager.tasks
    for task_id in [i for i, task in waiting.items() if not task.has_state(TaskState.WAITING)]:
        del waiting[task_id]
    if script_engine is not None:
        workflow.script_engine = script_engine
    return workflow


def _state_v0_to_v1(dct: dict) -> None:
    """Version 0 (never written by a release) had no envelope key; nothing else differs."""
    dct["fallwerk_state_version"] = 1


_MIGRATIONS = {0: _state_v0_to_v1}


def migrate(dct: dict) -> None:
    version = dct.get("fallwerk_state_version", 0)
    while version < STATE_VERSION:
        _MIGRATIONS[version](dct)
        version = dct["fallwerk_state_version"]
    spiff_version = dct.pop(SERIALIZER.VERSION_KEY, SPIFF_VERSION)
    if spiff_version != SPIFF_VERSION and spiff_version in SPIFF_MIGRATIONS:
        SPIFF_MIGRATIONS[spiff_version](dct)
    dct.pop("fallwerk_state_version", None)
