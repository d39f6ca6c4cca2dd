"""Restored specs and forms of deployed versions, cached in memory (they never change once deployed)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from . import serialization
from .models import ProcessDefinition


@dataclass(frozen=True)
class LoadedDefinition:
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


DEFAULT_CACHE = SpecCache()
