"""Restored specs and forms of deployed versions, cached in memory (they never change once deployed), and
restored workflows lent by read-only views until a change takes them (`RestoredWorkflows`)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

from SpiffWorkflow.bpmn.specs.control import BpmnStartTask
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.task import TaskState

from . import serialization
from .models import ProcessDefinition


@dataclass(frozen=True)
class LoadedDefinition:
    """A deployed version, shared by every instance that runs on it (see `_prewire`)."""

    definition_id: int
    spec: object
    subprocess_specs: dict
    forms: dict  # form id -> form-js definition (dict)
    start_defaults: dict
    has_timers: bool  # False: saves can skip the timer mirror


class SpecCache:
    def __init__(self, size: int = 256):
        self._size = size
        self._items: OrderedDict[str, LoadedDefinition] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, definition: ProcessDefinition) -> LoadedDefinition:
        # keyed by content, not row id: ids repeat across databases (tests, a restored backup)
        key = definition.content_hash
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        spec, subprocess_specs, defaults = serialization.spec_from_json(definition.spec_json)
        _prewire(spec, subprocess_specs)
        loaded = LoadedDefinition(definition.id, spec, subprocess_specs, json.loads(definition.forms_json or "{}"),
                                  defaults, _has_timers(spec, subprocess_specs))
        with self._lock:
            self._items[key] = loaded
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return loaded


def _has_timers(spec, subprocess_specs: dict) -> bool:
    for process in [spec, *subprocess_specs.values()]:
        for task_spec in process.task_specs.values():
            definition = getattr(task_spec, "event_definition", None)
            inner = getattr(definition, "event_definitions", None) or [definition]
            if any(isinstance(d, TimerEventDefinition) for d in inner):
                return True
    return False


def _prewire(spec, subprocess_specs: dict) -> None:
    """Wire every triggerable event subprocess to its process's start, once, when a version is loaded.

    SpiffWorkflow starts a message or signal event subprocess with `BpmnStartTask.trigger_wf`, which
    connects its task spec to the start and the end the first time: it changes the spec. A spec shared
    by all instances of a version would then make every later case (and every called process started
    later) wait for that event subprocess. Wired up front, `trigger_wf` finds nothing to change, and
    `_start_predict_hook` keeps a start from creating those tasks by itself: they appear only when
    triggered (SpiffWorkflow marks them `triggered` and never removes them); the end join waits only
    for tasks that exist.
    """
    for process in [spec, *subprocess_specs.values()]:
        start = getattr(process, "start", None)
        for name in getattr(start, "trigger_specs", ()):
            task_spec = process.task_specs[name]
            if start not in task_spec.inputs:
                start.connect(task_spec)
                task_spec.connect(process.end)


def _start_predict_hook(self, my_task):
    best_state = TaskState.FUTURE if my_task.has_state(TaskState.DEFINITE_MASK) else my_task.state
    triggers = set(self.trigger_specs)
    my_task._sync_children([spec for spec in self.outputs if spec.name not in triggers], best_state)


BpmnStartTask._predict_hook = _start_predict_hook


DEFAULT_CACHE = SpecCache()


class RestoredWorkflows:
    """Workflows restored for reading, kept for the change that comes next.

    A task page restores its case's workflow to show it, and the form post that follows restores the
    same state again to complete the task. A workflow restored from a state text, and not changed
    since, is what restoring that text again gives. So a view that only read a workflow hands it in
    when its request ends (`Runtime.hand_in`), and a change whose locked row holds that very text takes
    it instead of restoring (`Runtime._load`). Keyed by the version's content hash and the whole state
    text, never by ids or version numbers (those repeat across databases). Taking removes the entry:
    only one request ever changes a workflow. Per process: with several workers, the post finds the
    page's workflow only if the same worker served both.
    """

    def __init__(self, size: int = 32):
        self._size = size
        self._items: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, content_hash: str, state: str):
        with self._lock:
            return self._items.pop((content_hash, state), None)

    def hand_in(self, content_hash: str, state: str, workflow) -> None:
        with self._lock:
            self._items[(content_hash, state)] = workflow
            self._items.move_to_end((content_hash, state))
            while len(self._items) > self._size:
                self._items.popitem(last=False)


DEFAULT_RESTORED = RestoredWorkflows()
