"""The process view's numbers: how many cases wait at each element, and where time is spent.

For one deployed version and the cases the viewer may see in the monitor (`scope.case_scope`):

- waiting: running cases per active element (`process_instances.active_elements`);
- durations of the finished human and external tasks per element, from the task mirror
  (`created_at` to `ended_at`): count, average and 90th percentile (nearest rank), in SQL;
- the wait until someone took the task (first claim, hand-over or completion in the audit table);
- incidents per element.

No suppression here: everything counted is a case the viewer may open one by one in the list.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Float, and_, cast, func, select
from sqlalchemy.orm import Session

from ..models import AuditEvent, Incident, ProcessInstance, Task, User
from .scope import case_scope

TAKEN = ("claim", "assign", "complete")


@dataclass
class ElementStats:
    element_id: str
    waiting: int = 0
    finished: int = 0
    mean: float | None = None  # seconds
    p90: float | None = None
    taken_mean: float | None = None  # seconds until someone took it
    incidents: int = 0


def seconds_between(session: Session, start, end):
    """The seconds from `start` to `end` (two datetime columns), in SQL on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _instances(session: Session, user: User, definition_id: int):
    return select(ProcessInstance.id).where(ProcessInstance.definition_id == definition_id,
                                            case_scope(session, user))


def element_stats(session: Session, user: User, definition_id: int) -> dict[str, ElementStats]:
    result: dict[str, ElementStats] = {}

    def stats(element: str) -> ElementStats:
        return result.setdefault(element, ElementStats(element))

    waiting: Counter[str] = Counter()
    for active, n in session.execute(
            select(ProcessInstance.active_elements, func.count())
            .where(ProcessInstance.definition_id == definition_id, ProcessInstance.status == "running",
                   case_scope(session, user))
            .group_by(ProcessInstance.active_elements)):
        for element in filter(None, (active or "").split(",")):
            waiting[element] += n
    for element, n in waiting.items():
        stats(element).waiting = n

    instances = _instances(session, user, definition_id)
    duration = cast(seconds_between(session, Task.created_at, Task.ended_at), Float).label("duration")
    finished = (select(Task.element_id, duration)
                .where(Task.instance_id.in_(instances), Task.state == "completed", Task.ended_at.is_not(None))
                .subquery())
    ranked = select(finished.c.element_id, finished.c.duration,
                    func.row_number().over(partition_by=finished.c.element_id,
                                           order_by=finished.c.duration).label("rank"),
                    func.count().over(partition_by=finished.c.element_id).label("n")).subquery()
    for element, n, mean in session.execute(select(finished.c.element_id, func.count(), func.avg(finished.c.duration))
                                            .group_by(finished.c.element_id)):
        s = stats(element)
        s.finished, s.mean = n, float(mean) if mean is not None else None
    # nearest rank: the row whose rank is ceil(0.9 n), in integers: 10 rank >= 9 n > 10 (rank - 1)
    for element, p90 in session.execute(select(ranked.c.element_id, ranked.c.duration).where(
            ranked.c.rank * 10 >= ranked.c.n * 9, (ranked.c.rank - 1) * 10 < ranked.c.n * 9)):
        stats(element).p90 = float(p90)

    first = (select(AuditEvent.task_id, func.min(AuditEvent.at).label("taken_at"))
             .where(AuditEvent.instance_id.in_(instances), AuditEvent.action.in_(TAKEN),
                    AuditEvent.task_id.is_not(None))
             .group_by(AuditEvent.task_id).subquery())
    taken = cast(seconds_between(session, Task.created_at, first.c.taken_at), Float)
    for element, mean in session.execute(
            select(Task.element_id, func.avg(taken)).join(first, and_(first.c.task_id == Task.id))
            .group_by(Task.element_id)):
        if mean is not None:
            stats(element).taken_mean = max(0.0, float(mean))

    for element, n in session.execute(select(Incident.element_id, func.count())
                                      .where(Incident.instance_id.in_(instances), Incident.element_id.is_not(None))
                                      .group_by(Incident.element_id)):
        stats(element).incidents = n
    return result


def heat(stats: dict[str, ElementStats], levels: int = 5) -> dict[str, int]:
    """A heat level 1..levels per element with a duration, by its average relative to the slowest."""
    means = {e: s.mean for e, s in stats.items() if s.mean is not None}
    top = max(means.values(), default=0)
    if top <= 0:
        return dict.fromkeys(means, 1)
    return {e: max(1, min(levels, 1 + int(levels * m / top - 1e-9))) for e, m in means.items()}
