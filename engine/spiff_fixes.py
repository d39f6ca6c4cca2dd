"""Process-wide settings of SpiffWorkflow that Fallwerk depends on, made when the engine is imported.

- Its loggers pass warnings only. SpiffWorkflow logs every task state change at INFO, and below INFO it
  puts the task's data, which is case data, into the record (it asks its own loggers' levels, which are
  unset). Logs must never hold case data (DOMAIN.md: data minimisation, retention); the audit table
  records the state changes. This also spares it building those records' fields at every change.
- Its task tree walks have no depth limit. They stopped descending at depth 1,000 (`max_depth`, a
  default of TaskIterator and BpmnTaskIterator): in a case whose tree had grown deeper, a loop run 500
  times, the walks no longer saw the current tasks, and the workflow took itself for completed. Many
  walks are made inside SpiffWorkflow (joins, `is_completed`), so the default itself is changed.
"""

from __future__ import annotations

import inspect
import logging

from SpiffWorkflow.bpmn.util.task import BpmnTaskIterator
from SpiffWorkflow.util.task import TaskIterator

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


def apply() -> None:
    for name in SPIFF_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for cls in (TaskIterator, BpmnTaskIterator):
        _without_depth_limit(cls)
