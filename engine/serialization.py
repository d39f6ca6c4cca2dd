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
from datetime import date, datetime
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


def data_problems(value) -> dict[str, str]:
    """What in `value` (incoming case data) could not be stored safely, by dotted path: mappings with the
    key RESERVED_KEY, and nesting deeper than MAX_DATA_DEPTH (not looked into further)."""
    problems: dict[str, str] = {}

    def visit(item, path: str, depth: int) -> None:
        if not isinstance(item, dict | list | tuple):
            return
        if depth > MAX_DATA_DEPTH:
            problems[path] = f"nested more than {MAX_DATA_DEPTH} levels deep"
            return
        if isinstance(item, dict):
            for key, inner in item.items():
                where = f"{path}.{key}" if path else str(key)
                if key == RESERVED_KEY:
                    problems[where] = f"'{RESERVED_KEY}' is reserved for the engine's stored values"
                visit(inner, where, depth + 1)
        else:
            for index, inner in enumerate(item):
                visit(inner, f"{path}[{index}]", depth + 1)

    visit(value, "", 0)
    return problems


class _Registry(DefaultRegistry):
    def restore(self, val, **kwargs):
        """`DictionaryConverter.restore` (SpiffWorkflow 3.2.0), except that a mapping whose `typename` names
        no registered type, or that the type's converter cannot read, is restored as data: SpiffWorkflow
        failed on it, and the case could never be restored again. Case data cannot carry the key
        (`data_problems`), and scripts cannot name it, but a script's dict literal can hold it."""
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

    A task whose data has the variable RESERVED_KEY (which a script or a decision can set; input is
    checked before) is a ModelError: stored, the task's whole data would be taken for a typed value."""
    _refuse_reserved_variable(workflow)
    owner = _WORKFLOW_CONVERTER
    with _EncoderMode():
        dct = WorkflowConverter.to_dict(owner, workflow)
        dct["subprocesses"] = owner.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = owner.registry.convert(workflow.bpmn_events)
    dct["typename"] = _WORKFLOW_TYPENAME
    dct["fallwerk_state_version"] = STATE_VERSION
    dct[SERIALIZER.VERSION_KEY] = SPIFF_VERSION
    return _dumps(dct)


def _refuse_reserved_variable(workflow: BpmnWorkflow) -> None:
    marked = [task for part in (workflow, *workflow.subprocesses.values()) for task in part.tasks.values()
              if RESERVED_KEY in task.data]
    if marked:
        first = min(marked, key=lambda task: task.last_state_change)
        raise ModelError(f"the variable '{RESERVED_KEY}' is reserved for the engine's stored values; the model "
                         "set it (rename it in the script or decision)",
                         element_id=first.task_spec.bpmn_id or first.task_spec.name)


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
