"""The database tables. Schema changes only through Alembic migrations (engine/migrations)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, intpk, text


# --- organisation and accounts -------------------------------------------------------------------
class Territory(Base):
    __tablename__ = "territories"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), default="landkreis")


class Unit(Base):
    """An organisation unit (Stelle): a Regionalzentrum, a specialised service, the LKS, a ministry."""

    __tablename__ = "units"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), default="service")
    territories: Mapped[str] = mapped_column(Text, default="")  # comma-separated territory ids


class User(Base):
    __tablename__ = "users"

    id: Mapped[intpk]
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[str] = mapped_column(String(8), default="de")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )


class Membership(Base):
    """A user belongs to a unit with a role (counsellor, lead, coordinator, supervisor, admin)."""

    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)

    user: Mapped[User] = relationship(back_populates="memberships")


# --- deployed models -------------------------------------------------------------------------------
class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[intpk]
    deployed_by: Mapped[str] = mapped_column(String(80))
    deployed_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text, default="")


class DeploymentResource(Base):
    """A source file (BPMN, DMN, form) as it was deployed."""

    __tablename__ = "deployment_resources"

    id: Mapped[intpk]
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    content: Mapped[text]


class ProcessDefinition(Base):
    """One version of one executable process, with its serialised spec."""

    __tablename__ = "process_definitions"
    __table_args__ = (UniqueConstraint("key", "version"),)

    id: Mapped[intpk]
    key: Mapped[str] = mapped_column(String(255), index=True)
    version: Mapped[int]
    name: Mapped[str] = mapped_column(String(255))
    content_hash: Mapped[str] = mapped_column(String(64))
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"))
    source_name: Mapped[str] = mapped_column(String(255))
    # large, and needed only when a version is first loaded into the spec cache: not loaded with the row
    spec_json: Mapped[str] = mapped_column(Text, deferred=True)
    forms_json: Mapped[str] = mapped_column(Text, deferred=True)  # {form id: definition} its tasks reference
    start_form: Mapped[str | None] = mapped_column(String(255))
    serializer_version: Mapped[str] = mapped_column(String(16))
    deployed_at: Mapped[datetime]


# --- running instances -----------------------------------------------------------------------------
class ProcessInstance(Base):
    __tablename__ = "process_instances"
    __table_args__ = (Index("ix_process_instances_status_definition", "status", "definition_id"),)

    id: Mapped[intpk]
    case_number: Mapped[str] = mapped_column(String(32), unique=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definitions.id"), index=True)
    process_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running, completed, cancelled
    has_incident: Mapped[bool] = mapped_column(Boolean, default=False)
    state_json: Mapped[text]
    serializer_version: Mapped[str] = mapped_column(String(16))
    started_by: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)
    responsible_unit: Mapped[str | None] = mapped_column(String(64), index=True)
    active_elements: Mapped[str] = mapped_column(Text, default="")  # comma-separated bpmn ids
    lock_version: Mapped[int] = mapped_column(Integer, default=1)

    definition: Mapped[ProcessDefinition] = relationship(lazy="joined")

    __mapper_args__ = {"version_id_col": lock_version}


class Task(Base):
    """Mirror of a waiting human (or external) task, rebuilt after every save of its instance."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_open_assignee", "state", "assignee", "due_at", "id"),  # inbox: by due date (migration 0006)
        Index("ix_tasks_instance_state", "instance_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # SpiffWorkflow task UUID
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"))
    process_key: Mapped[str] = mapped_column(String(255))
    element_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default="user")  # user, manual, external
    lane: Mapped[str | None] = mapped_column(String(255))
    form_ref: Mapped[str | None] = mapped_column(String(255))
    form_key: Mapped[str | None] = mapped_column(String(255))
    candidate_users: Mapped[str] = mapped_column(Text, default="")
    candidate_groups: Mapped[str] = mapped_column(Text, default="")
    assignee: Mapped[str | None] = mapped_column(String(80))
    due_at: Mapped[datetime | None]
    follow_up_at: Mapped[datetime | None]
    priority: Mapped[int] = mapped_column(Integer, default=50)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open, completed, withdrawn
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    completed_by: Mapped[str | None] = mapped_column(String(80))
    draft_json: Mapped[str | None] = mapped_column(Text)


class TaskCandidate(Base):
    """One candidate of an open task: ("user", name) or ("group", "unit" / "unit:role")."""

    __tablename__ = "task_candidates"
    __table_args__ = (Index("ix_task_candidates_lookup", "kind", "value", "task_id"),)

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    value: Mapped[str] = mapped_column(String(160), primary_key=True)


class Timer(Base):
    """Mirror of a waiting timer event, polled by the worker."""

    __tablename__ = "timers"
    __table_args__ = (Index("ix_timers_due", "state", "due_at"),)

    id: Mapped[intpk]
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(255))
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default="waiting")  # waiting, fired, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    fired_at: Mapped[datetime | None]


class Incident(Base):
    """An error while running an instance. The instance stays at its last good state."""

    __tablename__ = "incidents"

    id: Mapped[intpk]
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"), index=True)
    element_id: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    error_type: Mapped[str] = mapped_column(String(80))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(80))


class AuditEvent(Base):
    """Append-only record of every state change (a database trigger refuses UPDATE and DELETE)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_instance", "instance_id", "id"),)

    id: Mapped[intpk]
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    instance_id: Mapped[int | None]
    task_id: Mapped[str | None] = mapped_column(String(36))
    element_id: Mapped[str | None] = mapped_column(String(255))
    changed_keys: Mapped[str] = mapped_column(Text, default="")  # comma-separated data keys
    detail: Mapped[str] = mapped_column(Text, default="")  # JSON


# --- web app: saved inbox filters, case comments and attachments (migration 0002) ---------------------
class SavedFilter(Base):
    """A named inbox filter of one user: the query string of the inbox page."""

    __tablename__ = "saved_filters"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    query: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class StartSubmission(Base):
    """A start form sent once: its random token and the case it started, so that the same form sent
    again (a double click, a reload) leads to that case instead of starting a second one."""

    __tablename__ = "start_submissions"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(80))
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]


class CaseComment(Base):
    __tablename__ = "case_comments"
    __table_args__ = (Index("ix_case_comments_instance", "instance_id", "id"),)

    id: Mapped[intpk]
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class CaseAttachment(Base):
    """An uploaded file; the content lives outside the web root under `stored_name` (random)."""

    __tablename__ = "case_attachments"
    __table_args__ = (Index("ix_case_attachments_instance", "instance_id", "id"),)

    id: Mapped[intpk]
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"))
    uploaded_by: Mapped[str] = mapped_column(String(80))
    filename: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


# Inbox sort orders (by priority, by creation) read an index, as the due-date order does.
Index("ix_tasks_open_priority", Task.state, Task.assignee, Task.priority, Task.id)
Index("ix_tasks_open_created", Task.state, Task.assignee, Task.created_at, Task.id)
Index("ix_tasks_state_priority", Task.state, Task.priority, Task.id)  # the team view
Index("ix_tasks_state_created", Task.state, Task.created_at, Task.id)
# engine.queries.open_tasks_for_user: due date, priority (highest first), age, id (migration 0006)
Index("ix_tasks_open_queue", Task.state, Task.assignee, Task.due_at, Task.priority.desc(), Task.created_at, Task.id)


# --- modeller: drafts of procedures (migration 0003) ------------------------------------------------
class Draft(Base):
    """A procedure being edited in the modeller: its BPMN and drafts of the DMN and form files it changes.

    Not a deployment: `engine.drafts.deploy_draft` turns it into version N+1. `revision` counts saves
    (the client sends the revision it edited; an older one is a conflict); the base says what it was
    derived from: a deployed version (`base_version`) and/or another draft (`base_draft_id` at
    `base_draft_revision`).
    """

    __tablename__ = "drafts"
    __table_args__ = (Index("ix_drafts_key_status", "process_key", "status"),)

    id: Mapped[intpk]
    process_key: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(200), default="")
    file_name: Mapped[str] = mapped_column(String(255))
    bpmn: Mapped[text]
    files_json: Mapped[str] = mapped_column(Text, default="{}")  # {"routing.dmn": xml, "x.form": json}
    base_version: Mapped[int | None]
    base_draft_id: Mapped[int | None]
    base_draft_revision: Mapped[int | None]
    revision: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, deployed, discarded
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime]
    deployed_versions: Mapped[str] = mapped_column(Text, default="")  # "consultation:2,proactive:3"


# --- monitoring: the facts of every case for the figures (migration 0004, engine/reporting/facts.py) ----------
class CaseFact(Base):
    """The non-personal facts of one case (codes only, never free text), written at every save."""

    __tablename__ = "case_facts"
    __table_args__ = (
        Index("ix_case_facts_opened", "opened_at"),
        Index("ix_case_facts_started", "process_key", "started_at"),
        Index("ix_case_facts_territory", "territory"),
        Index("ix_case_facts_network", "network"),
        Index("ix_case_facts_months", "request", "opened_month", "ended_month"),
    )

    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"),
                                             primary_key=True)
    process_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    request: Mapped[bool] = mapped_column(Boolean, default=False)  # a counselling case (request/consultation)
    opened_at: Mapped[datetime | None]  # when it became one (its start; for one called from an intervention later)
    opened_month: Mapped[int | None]  # YYYYMM of opened_at in German time (the figures group by it)
    ended_month: Mapped[int | None]  # YYYYMM of ended_at in German time
    proactive: Mapped[bool] = mapped_column(Boolean, default=False)
    network: Mapped[bool] = mapped_column(Boolean, default=False)  # a task for a coordinator group
    unit: Mapped[str | None] = mapped_column(String(64))
    territory: Mapped[str | None] = mapped_column(String(64))
    client_type: Mapped[str | None] = mapped_column(String(64))
    primary_topic: Mapped[str | None] = mapped_column(String(64))
    topics: Mapped[str] = mapped_column(Text, default="")  # comma-separated codes (case_fact_topics has them too)
    channel: Mapped[str | None] = mapped_column(String(64))
    commission: Mapped[bool | None]
    closure_reason: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(64))
    experts: Mapped[bool | None]
    sessions: Mapped[int | None]
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    approval: Mapped[str | None] = mapped_column(String(64))
    indicator_problem_clarity: Mapped[str | None] = mapped_column(String(64))
    indicator_sensitisation: Mapped[str | None] = mapped_column(String(64))
    indicator_resources: Mapped[str | None] = mapped_column(String(64))
    indicator_independence: Mapped[str | None] = mapped_column(String(64))
    indicator_future: Mapped[str | None] = mapped_column(String(64))
    indicator_democratic_competence: Mapped[str | None] = mapped_column(String(64))


class CaseFactTopic(Base):
    __tablename__ = "case_fact_topics"
    __table_args__ = (Index("ix_case_fact_topics_topic", "topic"),)

    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"),
                                             primary_key=True)
    topic: Mapped[str] = mapped_column(String(64), primary_key=True)


class CaseEscalation(Base):
    """One escalation to the statewide network (one run of the escalation event subprocess)."""

    __tablename__ = "case_escalations"
    __table_args__ = (Index("ix_case_escalations_requested", "requested_at"),)

    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"),
                                             primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str | None] = mapped_column(String(64))
    requested_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]


# Monitoring: the instance list sorts by start or last change; overdue work reads open tasks by due date.
Index("ix_process_instances_started", ProcessInstance.started_at, ProcessInstance.id)
Index("ix_process_instances_updated", ProcessInstance.updated_at, ProcessInstance.id)
Index("ix_tasks_open_due", Task.state, Task.due_at)
