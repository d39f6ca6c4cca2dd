"""Process-wide settings of SpiffWorkflow that Fallwerk depends on, made when the engine is imported.

- Its loggers pass warnings only. SpiffWorkflow logs every task state change at INFO, and below INFO it
  puts the task's data, which is case data, into the record (it asks its own loggers' levels, which are
  unset). Logs must never hold case data (DOMAIN.md: data minimisation, retention); the audit table
  records the state changes. This also spares it building those records' fields at every change.
- Its task tree walks have no depth limit. They stopped descending at depth 1,000 (`max_depth`, a
  default of TaskIterator and BpmnTaskIterator): in a case whose tree had grown deeper, a loop run 500
  times, the walks no longer saw the current tasks, and the workflow took itself for completed. Many
  walks are made inside SpiffWorkflow (joins, `is_completed`), so the default itself is changed.
- Camunda multi-instance activities never change their task spec at run time (`_camunda_multi_instance`).
- Timer durations count at most 100 years of months (`_bounded_durations`): SpiffWorkflow adds up the days
  of every month, so a duration from case data like P9999999999Y kept a process busy for hours.
"""

from __future__ import annotations

import inspect
import logging

from SpiffWorkflow.bpmn.exceptions import WorkflowDataException
from SpiffWorkflow.bpmn.serializer.default.task_spec import MultiInstanceTaskConverter
from SpiffWorkflow.bpmn.specs.data_spec import TaskDataReference
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins import BpmnSpecMixin
from SpiffWorkflow.bpmn.util.task import BpmnTaskIterator
from SpiffWorkflow.camunda.specs import multiinstance_task as camunda_mi
from SpiffWorkflow.util.task import TaskIterator, TaskState

SPIFF_LOGGERS = ("spiff", "spiff.task", "spiff.workflow")
#: deeper than any task tree can grow (each level is a task object in memory)
TASK_TREE_DEPTH = 10**9


def _without_depth_limit(cls) -> None:
    parameters = list(inspect.signature(cls.__init__).parameters.values())
    with_defaults = [p.name for p in parameters if p.default is not inspect.Parameter.empty]
    defaults = list(cls.__init__.__defaults__)
    index = with_defaults.index("max_depth")
    if defaults[index] not in (1000, TASK_TREE_DEPTH):  # a SpiffWorkflow that changed it: look again
        raise RuntimeError(f"{cls.__name__} max_depth default is {defaults[index]!r}, not 1000")
    defaults[index] = TASK_TREE_DEPTH
    cls.__init__.__defaults__ = tuple(defaults)


CAMUNDA_MULTI_INSTANCE = (camunda_mi.ParallelMultiInstanceTask, camunda_mi.SequentialMultiInstanceTask)


def _derived_data_input(spec):
    """The collection is the data input as well as the output (camunda:collection, no loopCardinality)."""
    stored = spec.__dict__.get("data_input")
    if stored is None and spec.cardinality is None and spec.data_output is not None:
        return TaskDataReference(spec.data_output.bpmn_id)
    return stored


def _derived_input_item(spec):
    """Each instance gets its item (or, with loopCardinality, its index) as camunda:elementVariable."""
    stored = spec.__dict__.get("input_item")
    if stored is None and spec.output_item is not None:
        return TaskDataReference(spec.output_item.bpmn_id)
    return stored


def _store(name):
    def setter(spec, value) -> None:
        spec.__dict__[name] = value
    return setter


def _update_task_instance_only(my_task) -> None:
    """SpiffWorkflow's `camunda.specs.multiinstance_task.update_task_spec` (3.2.0) less its changes to the spec."""
    task_spec = my_task.task_spec
    if my_task.state != TaskState.WAITING:
        BpmnSpecMixin._update_hook(task_spec, my_task)
        my_task._set_state(TaskState.WAITING)
    if task_spec.cardinality is not None:
        cardinality = my_task.workflow.script_engine.evaluate(my_task, task_spec.cardinality)
        if not isinstance(cardinality, int):
            raise WorkflowDataException(
                f"loopCardinality must be a whole number, not {type(cardinality).__name__}: "
                "for a multi-instance activity over a collection use camunda:collection", my_task)


def _raw_multi_instance_to_dict(to_dict):
    def converted(self, spec):
        dct = to_dict(self, spec)
        if isinstance(spec, CAMUNDA_MULTI_INSTANCE):  # as parsed, not derived: a version's text stays the same
            dct["data_input"] = self.registry.convert(spec.__dict__.get("data_input"))
            dct["input_item"] = self.registry.convert(spec.__dict__.get("input_item"))
        return dct
    converted.fallwerk_raw = True
    return converted


def _camunda_multi_instance() -> None:
    """Camunda multi-instance activities (camunda:collection, loopCardinality) change no shared spec at run time.

    SpiffWorkflow's Camunda parser leaves the data input and the input item of a multi-instance spec
    unset; `update_task_spec`, run when an instance of the activity starts, set them on the task SPEC
    (the collection as data input too, the element variable as input item; a loopCardinality that
    evaluated to a collection even became the data input, and the cardinality was cleared). A spec is
    parsed once per deployed version and shared by every instance in a process (specs.SpecCache), and
    restored from the version's stored text without those settings. So when the activity's instances
    completed in another process than the one that started them (a CLI call per act, another web
    worker, a restart), the completion saw no data input: each element variable was appended to the
    collection instead of written back at its index (["u1", "u2"] became ["u1", "u2", "u1", "u2"]), and
    the sequential form made no further instance after the first. In one process, the outcome depended
    on whether another instance of the version had started the activity there before; and a
    cardinality that was a collection in one case changed the spec for every later case.

    Now both are derived from the spec's parsed attributes whenever they are read (properties on the
    two Camunda classes), the same in every process, and the start hook only prepares the task. A
    loopCardinality must evaluate to a whole number (as in Camunda); anything else is an error of the
    task (an incident), because the spec cannot depend on one case's data. A camunda:collection without
    camunda:elementVariable now runs once per item (SpiffWorkflow failed on it). The serializer writes
    the attributes as parsed, so a version's stored text, and with it its content hash, stays what it
    was (redeploying an unchanged model stays a no-op). The serializer binds its converters' methods
    when it is built: `apply` runs when `engine` is imported, before engine.serialization builds it.
    """
    camunda_mi.update_task_spec = _update_task_instance_only
    for cls in CAMUNDA_MULTI_INSTANCE:
        cls.data_input = property(_derived_data_input, _store("data_input"))
        cls.input_item = property(_derived_input_item, _store("input_item"))
    if not getattr(MultiInstanceTaskConverter.to_dict, "fallwerk_raw", False):
        MultiInstanceTaskConverter.to_dict = _raw_multi_instance_to_dict(MultiInstanceTaskConverter.to_dict)


#: months a duration may span (the check refuses longer literal values: engine.expressions.MAX_DURATION)
MAX_DURATION_MONTHS = 1200


def _bounded(count):
    def bounded(parsed_duration, *args):
        months = parsed_duration.get("years", 0) * 12 + parsed_duration.get("months", 0)
        if months > MAX_DURATION_MONTHS:
            raise ValueError(f"a duration of {months:,} months is longer than 100 years")
        return count(parsed_duration, *args)
    bounded.fallwerk_bounded = True
    return staticmethod(bounded)


def _bounded_durations() -> None:
    for name in ("get_timedelta_from_start", "get_timedelta_from_end"):
        if not getattr(getattr(TimerEventDefinition, name), "fallwerk_bounded", False):
            setattr(TimerEventDefinition, name, _bounded(getattr(TimerEventDefinition, name)))


def apply() -> None:
    for name in SPIFF_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for cls in (TaskIterator, BpmnTaskIterator):
        _without_depth_limit(cls)
    _camunda_multi_instance()
    _bounded_durations()
