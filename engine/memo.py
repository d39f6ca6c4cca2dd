"""A small thread-safe memo for values derived from immutable deployed content (keyed by content hash)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any


class Memo:
    """Remembers `build()` results by key; forgets everything once `limit` entries are reached."""

    def __init__(self, limit: int):
        self._limit = limit
        self._items: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                return self._items[key]
        value = build()
        with self._lock:
            if len(self._items) > self._limit:
                self._items.clear()
            self._items[key] = value
        return value
