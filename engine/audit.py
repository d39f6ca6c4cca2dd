"""The append-only audit trail: who did what, when, to which instance and task."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from . import writes
from .models import AuditEvent


def record(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    instance_id: int | None = None,
    task_id: str | None = None,
    element_id: str | None = None,
    changed_keys: Iterable[str] = (),
    **detail,
) -> None:
    """Write one event in the session's transaction: a plain insert, queued (`engine.writes`) to go
    out with the change's other writes, before anything else is read or committed."""
    writes.add(session.connection(), _INSERT, {
        "at": at,
        "actor": actor,
        "action": action,
        "instance_id": instance_id,
        "task_id": task_id,
        "element_id": element_id,
        "changed_keys": ",".join(sorted(changed_keys)),
        "detail": json.dumps(detail, default=str, sort_keys=True) if detail else "",
    })


_INSERT = insert(AuditEvent.__table__)


def changed_keys(before: dict, after: dict) -> set[str]:
    """Top-level data keys whose value was added, changed or removed."""
    return {k for k in before.keys() | after.keys() if before.get(k, _MISSING) != after.get(k, _MISSING)}


_MISSING = object()
