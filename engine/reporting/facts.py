"""The facts table: the non-personal facts of every case, written at every save, read by the figures.

Figures over 100,000 cases cannot restore 100,000 workflows. So the runtime, at the end of every save
(`Runtime._save`), calls `record(session, instance, workflow, now=...)`, which reads the case's data
once (the workflow is in memory anyway) and keeps three tables up to date:

- `case_facts`: one row per instance: procedure, status and dates (and the months, YYYYMM in German
  time, the case opened and ended: the figures group by them), unit, territory, client type,
  primary topic, channel, commission, closure reason, experts, sessions, the six indicators,
  escalation count, proactive approval, whether the statewide network works on it.
- `case_fact_topics`: the topics of a case (several per case).
- `case_escalations`: one row per escalation to the network (each run of the escalation event
  subprocess): kind, decision, when it was requested and decided.

Only codes are stored, never free text: a value is kept if it is a short code (`CODE`), anything else
becomes NULL, so a model that writes a name into `territory` cannot leak it into the figures. The data
keys read are the network's documented contract (docs/procedures.md): at the end the anonymised
`statistics` record, while running the request data.

Instances saved before this table existed get their row from `rebuild(session)`
(`python -m engine.reporting rebuild-facts`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from SpiffWorkflow.task import TaskState
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from ..models import CaseEscalation, CaseFact, CaseFactTopic, ProcessInstance, Task
from .periods import month_number

log = logging.getLogger(__name__)

#: the procedure whose instances are counselling cases (requests and consultations)
CONSULTATION = "consultation"
#: the procedure of proactive interventions
PROACTIVE = "proactive_intervention"
#: the six success indicators, as named in the statistics record (`indicator_<name>` in the closing form)
INDICATORS = ("problem_clarity", "sensitisation", "resources", "independence", "future", "democratic_competence")
ESCALATION_KIND = "escalation_kind"
ESCALATION_DECISION = "escalation_decision"
#: candidate groups that mean "the statewide network (the LKS coordinators) works on this case"
NETWORK_SUFFIX = ":coordinator"
#: what a stored fact may look like: a code, never free text
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_TOPICS = 20


def code(value: Any) -> str | None:
    return value if isinstance(value, str) and CODE.match(value) else None


@dataclass
class Escalation:
    key: str  # the id of the event subprocess run
    kind: str | None
    decision: str | None


@dataclass
class Facts:
    request: bool = False
    proactive: bool = False
    unit: str | None = None
    territory: str | None = None
    client_type: str | None = None
    primary_topic: str | None = None
    channel: str | None = None
    topics: list[str] = field(default_factory=list)
    commission: bool | None = None
    closure_reason: str | None = None
    outcome: str | None = None
    experts: bool | None = None
    sessions: int | None = None
    indicators: dict[str, str | None] = field(default_factory=dict)
    approval: str | None = None
    escalations: list[Escalation] = field(default_factory=list)


def extract(workflow, *, process_key: str) -> Facts:
    """The facts of one case, from its restored workflow (no database access)."""
    from ..policy import case_data

    data = case_data(workflow)
    statistics = data.get("statistics") if isinstance(data.get("statistics"), Mapping) else {}
    # the consultation's own record; a proactive intervention writes one of its own first
    stats = statistics if statistics.get("procedure", CONSULTATION) == CONSULTATION else {}

    def value(key: str) -> Any:
        return stats[key] if key in stats else data.get(key)

    facts = Facts()
    facts.request = process_key == CONSULTATION or "request_month" in data or "client_type" in data
    facts.proactive = process_key == PROACTIVE
    for name in ("territory", "client_type", "primary_topic", "channel", "closure_reason"):
        setattr(facts, name, code(value(name)))
    facts.unit = code(value("responsible_unit"))
    facts.outcome = code(stats.get("outcome"))
    topics = value("topics")
    if isinstance(topics, list | tuple):
        facts.topics = sorted({t for t in (code(t) for t in topics) if t})[:MAX_TOPICS]
    commission = value("commission_given")
    facts.commission = commission if isinstance(commission, bool) else None
    facts.experts = _experts(stats, data)
    sessions = stats.get("sessions", data.get("sessions"))
    if isinstance(sessions, list):
        sessions = len(sessions)
    facts.sessions = sessions if isinstance(sessions, int) and not isinstance(sessions, bool) else None
    recorded = stats.get("indicators") if isinstance(stats.get("indicators"), Mapping) else {}
    facts.indicators = {name: code(recorded.get(name, data.get(f"indicator_{name}"))) for name in INDICATORS}
    facts.approval = code(data.get("approval_decision")) if facts.proactive else None
    facts.escalations = escalations(workflow)
    return facts


def _experts(stats: Mapping, data: Mapping) -> bool | None:
    if isinstance(stats.get("experts_involved"), bool):
        return stats["experts_involved"]
    if data.get("experts_needed") is False or data.get("expert_consent") == "refused":
        return False
    if data.get("experts_needed") is True and data.get("expert_consent") == "given":
        return True
    return None


def escalations(workflow) -> list[Escalation]:
    """Each run of an event subprocess that was started with an `escalation_kind` is one escalation;
    its kind and decision are those of its most recent task (the coordinators may correct the kind)."""
    found = []
    for key, sub in workflow.subprocesses.items():
        tasks = [t for t in sub.tasks.values() if t.has_state(TaskState.FINISHED_MASK | TaskState.READY
                                                               | TaskState.WAITING | TaskState.STARTED)]
        starts = [t for t in tasks if type(t.task_spec).__name__ == "StartEvent" and ESCALATION_KIND in t.data]
        if not starts:
            continue
        latest = max((t for t in tasks if ESCALATION_KIND in t.data), key=lambda t: t.last_state_change)
        found.append((min(t.last_state_change for t in starts), Escalation(
            str(key), code(latest.data.get(ESCALATION_KIND)), code(latest.data.get(ESCALATION_DECISION)))))
    return [e for _, e in sorted(found, key=lambda item: (item[0], item[1].key))]


UNREAD = object()


def record(session: Session, instance: ProcessInstance, workflow, *, now: datetime,
           new_groups: Iterable[str] | None = None, stored: Mapping | object | None = UNREAD) -> None:
    """Bring the facts of `instance` up to date (called by the runtime at the end of every save).

    `new_groups` are the candidate groups of the tasks this save created: a case that had a task for
    the network keeps that fact, so only new tasks can change it (without them, every task is read).
    `stored` is the facts row as the caller read it in this transaction (its values by attribute; None:
    there is none), to save reading it again.
    Plain statements: one read, and a write only of what changed (most saves change nothing here).
    Reading the facts never stops casework: if the data cannot be read, the previous facts stay (logged).
    """
    try:
        facts = extract(workflow, process_key=instance.process_key)
    except Exception:
        log.exception("case facts could not be read; the figures keep the previous ones",
                      extra={"instance": instance.id})
        return
    conn = session.connection()
    if stored is UNREAD:
        stored = conn.execute(_STORED, {"instance_id": instance.id}).mappings().first()
    values = {
        "process_key": instance.process_key, "status": instance.status,
        "started_at": instance.started_at, "ended_at": instance.ended_at,
        "ended_month": month_number(instance.ended_at),
        "request": facts.request, "proactive": facts.proactive,
        "unit": code(instance.responsible_unit) or facts.unit,
        **{name: getattr(facts, name) for name in ("territory", "client_type", "primary_topic", "channel",
                                                    "commission", "closure_reason", "outcome", "experts",
                                                    "sessions", "approval")},
        **{f"indicator_{name}": facts.indicators.get(name) for name in INDICATORS},
    }
    opened_at = stored["opened_at"] if stored else None
    if facts.request and opened_at is None:
        # a consultation opens with its instance; one called from an intervention when its request is recorded
        opened_at = instance.started_at if instance.process_key == CONSULTATION else now
    values["opened_at"], values["opened_month"] = opened_at, month_number(opened_at)
    had_network = bool(stored["network"]) if stored and new_groups is not None else _network(session, instance.id)
    values["network"] = had_network or any(_is_network(g) for g in new_groups or ())
    values["topics"] = _sync_topics(session, instance.id, stored["topics"] if stored else "", facts.topics)
    values["escalations"] = _sync_escalations(session, instance.id, stored["escalations"] if stored else 0,
                                              facts.escalations, now=now)
    if stored is None:
        conn.execute(insert(_FACTS), {"instance_id": instance.id, **values})
        return
    changed = {name: value for name, value in values.items() if stored[name] != value}
    if changed:
        conn.execute(update(_FACTS).where(_FACTS.c.instance_id == instance.id).values(changed))
        loaded = session.identity_map.get(identity_key(CaseFact, instance.id))
        if loaded is not None:
            session.expire(loaded)


_FACTS = CaseFact.__table__
_STORED = select(_FACTS).where(_FACTS.c.instance_id == bindparam("instance_id"))


def _network(session: Session, instance_id: int) -> bool:
    groups = session.scalars(select(Task.candidate_groups).where(Task.instance_id == instance_id))
    return any(_is_network(g) for text in groups for g in (text or "").split(","))


def _is_network(group: str) -> bool:
    return group.strip().endswith(NETWORK_SUFFIX)


def _sync_topics(session: Session, instance_id: int, stored: str, topics: list[str]) -> str:
    """Keep the case's topic rows in step; returns the topics as stored in the facts row."""
    text = ",".join(topics)
    if (stored or "") == text:
        return text
    old = set(filter(None, (stored or "").split(",")))
    gone, new = old - set(topics), set(topics) - old
    if gone:
        session.execute(delete(CaseFactTopic).where(CaseFactTopic.instance_id == instance_id,
                                                    CaseFactTopic.topic.in_(gone)))
    for topic in sorted(new):
        session.add(CaseFactTopic(instance_id=instance_id, topic=topic))
    return text


def _sync_escalations(session: Session, instance_id: int, stored: int, found: list[Escalation], *,
                      now: datetime) -> int:
    """Keep the case's escalation rows in step; returns how many there are."""
    if not found and not stored:
        return 0
    existing = {e.key: e for e in session.scalars(
        select(CaseEscalation).where(CaseEscalation.instance_id == instance_id))}
    for escalation in found:
        row = existing.get(escalation.key)
        if row is None:
            row = CaseEscalation(instance_id=instance_id, key=escalation.key, requested_at=now)
            session.add(row)
        row.kind = escalation.kind
        if row.decision != escalation.decision:
            row.decision = escalation.decision
            row.decided_at = now if escalation.decision else None
    return len(found)


def rebuild(session: Session, *, now: datetime, batch: int = 200) -> int:
    """Write the facts of every instance (for instances saved before the table existed). Returns the count."""
    from ..runtime import Runtime

    runtime = Runtime(session)
    ids = list(session.scalars(select(ProcessInstance.id).order_by(ProcessInstance.id)))
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        for instance in session.scalars(select(ProcessInstance).where(ProcessInstance.id.in_(chunk))):
            try:
                record(session, instance, runtime.load_workflow(instance), now=now)
            except Exception:
                log.exception("facts of an instance could not be written", extra={"instance": instance.id})
        session.flush()
    return len(ids)
