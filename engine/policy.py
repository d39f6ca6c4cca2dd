"""Who may do what: the one module that decides every access (DESIGN.md "Who sees what").

    if not can(user, Permission.CASE_COMMENT, instance): ...
    instance = load_case(session, user, case_id)            # NotFound unless `case:read`
    task = load_task(session, user, task_id)                # NotFound unless `task:read`

A case is seen at one of four levels, from the user's memberships (unit, role) and their part in it:

- "team": a counsellor or lead of a unit the case belongs to (the instance's `responsible_unit`, the
  unit of any candidate group of its tasks, a unit of the person who started it), or a counsellor/lead
  named on the case (assignee, candidate user or completer of one of its tasks, `case_team`, starter).
  Everything, personal fields included.
- "network": a coordinator, for a case escalated to the statewide network (data `escalated` true, or
  a task for a coordinator group such as `lks:coordinator`), one they took part in, or one with an open
  task they are a candidate for (the LKS as the central contact point for requests). Status,
  history and non-personal answers; personal fields, comments and attachments only after the clients'
  consent to the hand-over (data `handover_consent` true or "given").
- "status": a supervisor outside a ministry: status, current step and diagram; no case content.
- none: everybody else, ministries (aggregates only) and admins (accounts, not cases). A case or task
  that a user may not see does not exist for them (`NotFound`, a 404).

No Flask here: the web app and the CLI ask the same functions.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session, object_session

from .errors import NotFound
from .identity import WORKING_ROLES, groups_of
from .models import Membership, ProcessDefinition, ProcessInstance, Task, TaskCandidate, Unit, User

STAFF_ROLES = WORKING_ROLES
CASE_ROLES = frozenset({"counsellor", "lead"})
#: who may start which procedure (process key -> roles); other processes: any staff role
START_ROLES: Mapping[str, frozenset[str]] = {
    "consultation": frozenset({"counsellor", "lead", "coordinator"}),
    "proactive_intervention": frozenset({"counsellor", "lead"}),
}
#: the modeller's permissions: coordinators (LKS) edit, deploy and migrate procedures (DOMAIN.md)
MODELLER_PERMISSIONS = frozenset({"procedure:edit", "procedure:deploy", "instance:migrate"})
MODELLER_ROLES = frozenset({"coordinator"})
#: candidate groups that mean "the statewide network works on this case"
NETWORK_GROUP_SUFFIX = ":coordinator"
ESCALATED_KEY = "escalated"
CONSENT_KEY = "handover_consent"
TEAM_KEY = "case_team"
YES = ("given", "yes", "true", "ja")


class Permission(enum.StrEnum):
    INBOX_READ = "inbox:read"
    ACCOUNT_EDIT = "account:edit"  # one's own password and language
    PROCESS_START = "process:start"
    CASE_READ = "case:read"  # status, current step, diagram
    CASE_READ_CONTENT = "case:read_content"  # history, non-personal answers
    CASE_READ_PERSONAL = "case:read_personal"  # personal fields, comments, attachments
    CASE_COMMENT = "case:comment"
    CASE_ATTACH = "case:attach"
    CASE_CANCEL = "case:cancel"
    CASE_ESCALATE = "case:escalate"
    TASK_READ = "task:read"
    TASK_WORK = "task:work"  # fill in, save a draft, complete
    TASK_CLAIM = "task:claim"
    TASK_RELEASE = "task:release"
    TASK_HAND_OVER = "task:hand_over"
    PROCEDURE_EDIT = "procedure:edit"  # the modeller: drafts, check, versions, diffs, forms, DMN tables
    PROCEDURE_DEPLOY = "procedure:deploy"  # publish a draft as a new version
    INSTANCE_MIGRATE = "instance:migrate"  # move running instances to another version
    MONITOR_READ = "monitor:read"  # the monitor: case list and status, procedures, overdue work (no content)
    FIGURES_READ = "figures:read"  # the figures: aggregates with small cells suppressed (ministries too)
    INCIDENT_RETRY = "incident:retry"  # run the failed step of a case again (coordinators)


class Level(enum.IntEnum):
    NONE = 0
    STATUS = 1
    NETWORK = 2
    TEAM = 3


@dataclass
class CaseFacts:
    """What the policy knows about one case, gathered once per session."""

    units: set[str] = field(default_factory=set)  # units of its responsible unit and its tasks' groups
    network: bool = False  # a task for a coordinator group
    open_groups: set[str] = field(default_factory=set)  # candidate groups of its open tasks
    people: set[str] = field(default_factory=set)  # assignees, candidate users, completers, starter
    data: Callable[[], Mapping[str, Any]] = dict  # the case data, loaded only when a rule needs it
    # the starter's counselling units, loaded only when a rule needs them (most answers come before)
    starter_units: Callable[[], set[str]] = set

    def all_units(self) -> set[str]:
        """Every unit the case belongs to: its own and its tasks' (`units`) and the starter's."""
        return self.units | self.starter_units()

    def flag(self, key: str) -> bool:
        """A yes in the case data: true, or "given" (a consent recorded as a choice); also inside the
        case's statistics record (`statistics.escalated`)."""
        data = self.data()
        statistics = data.get("statistics")
        value = data.get(key, statistics.get(key) if isinstance(statistics, Mapping) else None)
        return value is True or value in YES

    def team(self) -> set[str]:
        value = self.data().get(TEAM_KEY)
        if isinstance(value, str):
            return {part.strip() for part in value.split(",") if part.strip()}
        if isinstance(value, list | tuple):
            return {str(part) for part in value}
        return set()


# --- who the user is --------------------------------------------------------------------------------
def roles(user: User | None) -> set[str]:
    if user is None or not user.is_active:
        return set()
    return {m.role for m in user.memberships}


def units_with(user: User, wanted: frozenset[str]) -> set[str]:
    return {m.unit_id for m in user.memberships if m.role in wanted}


def is_ministry_member(session: Session, user: User) -> bool:
    ids = {m.unit_id for m in user.memberships}
    if not ids:
        return False
    kinds = session.scalars(select(Unit.kind).where(Unit.id.in_(ids))).all()
    return "ministry" in kinds


# --- cases ------------------------------------------------------------------------------------------
def case_facts(session: Session, instance: ProcessInstance, *, tasks: list[Task] | None = None,
               workflow=None) -> CaseFacts:
    """The case's facts, gathered once per session. When the caller has loaded them anyway (ignored once
    the facts are known): `tasks`, every task row of the instance (saves the query), and `workflow`, the
    instance's restored workflow (a rule that needs the case data does not restore it again)."""
    cache = session.info.setdefault("policy_case_facts", {})
    if instance.id in cache:
        return cache[instance.id]
    facts = CaseFacts(people={instance.started_by})
    if instance.responsible_unit:
        facts.units.add(instance.responsible_unit)
    if tasks is not None:
        rows = [(t.candidate_groups, t.candidate_users, t.assignee, t.completed_by, t.state) for t in tasks
                if t.instance_id == instance.id]
    else:
        rows = session.execute(_FACT_ROWS, {"instance_id": instance.id}).all()
    for groups, users, assignee, completed_by, state in rows:
        for group in filter(None, (g.strip() for g in (groups or "").split(","))):
            facts.units.add(group.split(":", 1)[0])
            facts.network = facts.network or group.endswith(NETWORK_GROUP_SUFFIX)
            if state == "open":
                facts.open_groups.add(group)
        facts.people.update(u.strip() for u in (users or "").split(",") if u.strip())
        facts.people.update(p for p in (assignee, completed_by) if p)
    facts.starter_units = _lazy_starter_units(session, instance.started_by)
    facts.data = _lazy_data(session, instance, workflow)
    cache[instance.id] = facts
    return facts


def _lazy_starter_units(session: Session, username: str) -> Callable[[], set[str]]:
    loaded: list[set[str]] = []

    def units() -> set[str]:
        if not loaded:
            loaded.append(set(session.scalars(_STARTER_UNITS, {"username": username})))
        return loaded[0]

    return units


def _lazy_data(session: Session, instance: ProcessInstance, workflow=None) -> Callable[[], Mapping[str, Any]]:
    loaded: list[Mapping[str, Any]] = []

    def data() -> Mapping[str, Any]:
        if not loaded:
            if workflow is not None:
                loaded.append(case_data(workflow))
            else:
                from .runtime import Runtime

                loaded.append(case_data(Runtime(session).load_workflow(instance)))
        return loaded[0]

    return data


def case_data(workflow) -> dict[str, Any]:
    """The data of every completed task merged in order, then the current data: what a case knows,
    including what an event subprocess (which sees only its own data) recorded."""
    from SpiffWorkflow.task import TaskState

    from .runtime import instance_data

    merged: dict[str, Any] = {}
    done = sorted(workflow.get_tasks(state=TaskState.COMPLETED), key=lambda t: t.last_state_change)
    for task in done:
        merged.update(task.data)
    merged.update(instance_data(workflow))
    return merged


def case_level(user: User | None, instance: ProcessInstance) -> Level:
    my_roles = roles(user)
    if not my_roles:
        return Level.NONE
    session = object_session(instance)
    cache = session.info.setdefault("policy_levels", {})
    key = (user.id, instance.id)
    if key not in cache:
        cache[key] = _case_level(session, user, my_roles, instance)
    return cache[key]


def _case_level(session: Session, user: User, my_roles: set[str], instance: ProcessInstance) -> Level:
    facts = case_facts(session, instance)
    if my_roles & CASE_ROLES:
        mine = units_with(user, CASE_ROLES)
        if mine & facts.units or user.username in facts.people or mine & facts.starter_units():
            return Level.TEAM
        if user.username in facts.team():
            return Level.TEAM
    if "coordinator" in my_roles and (facts.network or user.username in facts.people
                                      or groups_of(user) & facts.open_groups or facts.flag(ESCALATED_KEY)):
        return Level.NETWORK
    if "supervisor" in my_roles and not is_ministry_member(session, user):
        return Level.STATUS
    return Level.NONE


def _can_case(user: User, permission: Permission, instance: ProcessInstance) -> bool:
    level = case_level(user, instance)
    running = instance.status == "running"
    if permission is Permission.CASE_READ:
        return level >= Level.STATUS
    if permission is Permission.CASE_READ_CONTENT:
        return level >= Level.NETWORK
    if permission is Permission.CASE_READ_PERSONAL:
        return level == Level.TEAM or (level == Level.NETWORK and
                                       case_facts(object_session(instance), instance).flag(CONSENT_KEY))
    if permission in (Permission.CASE_COMMENT, Permission.CASE_ATTACH):
        return _can_case(user, Permission.CASE_READ_PERSONAL, instance)
    if permission is Permission.CASE_ESCALATE:
        return running and level == Level.TEAM
    if permission is Permission.CASE_CANCEL:
        leads = {m.unit_id for m in user.memberships if m.role == "lead"}
        facts = case_facts(object_session(instance), instance)
        return running and level == Level.TEAM and (bool(leads & facts.all_units())
                                                    or instance.started_by == user.username)
    return False


# --- tasks ------------------------------------------------------------------------------------------
def task_candidates(session: Session, task: Task) -> dict[str, set[str]]:
    """Candidates of a task: the live rows while it is open, the recorded lists once it is closed.

    The live rows are read once per session and task (a page asks several questions about one task);
    any write through the session forgets them (`forget_candidates`). Treat the result as read-only.
    """
    if task.state != "open":
        return {"user": {u for u in (task.candidate_users or "").split(",") if u},
                "group": {g for g in (task.candidate_groups or "").split(",") if g}, "not": set()}
    cache = session.info.setdefault(_CANDIDATES, {})
    found = cache.get(task.id)
    if found is None:
        found = {"user": set(), "group": set(), "not": set()}
        for kind, value in session.execute(_CANDIDATE_ROWS, {"task_id": task.id}):
            found.setdefault(kind, set()).add(value)
        cache[task.id] = found
    return found


def remember_candidates(session: Session, task_id: str, rows) -> None:
    """Candidates of an open task read by the caller together with the task: (kind, value) pairs."""
    found: dict[str, set[str]] = {"user": set(), "group": set(), "not": set()}
    for kind, value in rows:
        found.setdefault(kind, set()).add(value)
    session.info.setdefault(_CANDIDATES, {})[task_id] = found


_CANDIDATES = "policy_candidates"


@event.listens_for(Session, "after_flush")
@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_soft_rollback")
def forget_candidates(session: Session, *_args) -> None:
    """Forget the candidates read in this session. Called on every flush, commit and rollback and for any
    ORM update or delete; code that changes an open task's candidates with a plain statement on the
    session's connection (not through the session) calls it itself. (The task mirror's plain statements
    only remove the candidates of tasks they close, whose recorded lists count from then on.)"""
    session.info.pop(_CANDIDATES, None)


@event.listens_for(Session, "do_orm_execute")
def _forget_candidates_on_dml(state) -> None:
    if not state.is_select:  # an UPDATE or DELETE through the session
        forget_candidates(state.session)


def is_candidate(user: User, task: Task, candidates: Mapping[str, set[str]] | None = None) -> bool:
    """Whether the user is among the task's candidates (whoever it is assigned to now)."""
    session = object_session(task)
    candidates = candidates if candidates is not None else task_candidates(session, task)
    if user.username in candidates.get("not", ()):
        return False
    return user.username in candidates.get("user", ()) or bool(groups_of(user) & candidates.get("group", set()))


def leads_for(user: User, task: Task, candidates: Mapping[str, set[str]]) -> bool:
    leads = {m.unit_id for m in user.memberships if m.role == "lead"}
    return any(group.split(":", 1)[0] in leads for group in candidates.get("group", ()))


def _can_task(user: User, permission: Permission, task: Task) -> bool:
    if not roles(user) & STAFF_ROLES:
        return False
    session = object_session(task)
    candidates = task_candidates(session, task)
    mine = task.assignee == user.username
    candidate = is_candidate(user, task, candidates)
    excluded = user.username in candidates.get("not", ())
    is_open = task.state == "open"
    if permission is Permission.TASK_READ:
        if not is_open:  # its answers are now the case's: whoever completed it, or who may read those
            return task.completed_by == user.username or _can_case(
                user, Permission.CASE_READ_PERSONAL, session.get(ProcessInstance, task.instance_id))
        return not excluded and (mine or candidate or leads_for(user, task, candidates))
    if not is_open or excluded:
        return False
    if permission is Permission.TASK_WORK:
        return mine or (task.assignee is None and candidate)
    if permission is Permission.TASK_CLAIM:
        return task.assignee is None and candidate
    if permission is Permission.TASK_RELEASE:
        return task.assignee is not None and (mine or leads_for(user, task, candidates))
    if permission is Permission.TASK_HAND_OVER:
        return (task.assignee is None and candidate) or mine or leads_for(user, task, candidates)
    return False


# statements asked on every task and case page, built once (building costs more than running them)
_FACT_ROWS = select(Task.candidate_groups, Task.candidate_users, Task.assignee, Task.completed_by,
                    Task.state).where(Task.instance_id == bindparam("instance_id"))
_STARTER_UNITS = (select(Membership.unit_id).join(User, User.id == Membership.user_id)
                  .where(User.username == bindparam("username"), Membership.role.in_(sorted(CASE_ROLES))))
_CANDIDATE_ROWS = select(TaskCandidate.kind, TaskCandidate.value).where(TaskCandidate.task_id == bindparam("task_id"))


# --- the one question -------------------------------------------------------------------------------
def can(user: User | None, permission: Permission | str, resource: Any = None) -> bool:
    """Whether `user` (None: not signed in) may do `permission` on `resource`.

    Resources: a `ProcessInstance` (case permissions), a `Task` (task permissions), a
    `ProcessDefinition` or process key (`process:start`), nothing (`inbox:read`, `account:edit`).
    """
    permission = Permission(permission)
    if user is None or not user.is_active:
        return False
    scope = permission.value.split(":", 1)[0]
    if scope == "case":
        return isinstance(resource, ProcessInstance) and _can_case(user, permission, resource)
    if scope == "task":
        return isinstance(resource, Task) and _can_task(user, permission, resource)
    if permission is Permission.PROCESS_START:
        if resource is None:  # may start some procedure (the list page)
            return bool(roles(user) & STAFF_ROLES.union(*START_ROLES.values()))
        key = resource.key if isinstance(resource, ProcessDefinition) else resource
        return bool(isinstance(key, str) and roles(user) & START_ROLES.get(key, STAFF_ROLES))
    if permission is Permission.INBOX_READ:
        return bool(roles(user))
    if permission.value in MODELLER_PERMISSIONS:
        return bool(roles(user) & MODELLER_ROLES)
    if permission is Permission.MONITOR_READ:  # supervisors outside ministries, unit leads, coordinators
        return bool(roles(user) & {"lead", "coordinator"}) or (
            "supervisor" in roles(user) and not is_ministry_member(object_session(user), user))
    if permission is Permission.FIGURES_READ:
        return bool(roles(user) & {"lead", "coordinator", "supervisor"})
    if permission is Permission.INCIDENT_RETRY:
        return (isinstance(resource, ProcessInstance) and "coordinator" in roles(user)
                and resource.status == "running" and _can_case(user, Permission.CASE_READ, resource))
    return permission is Permission.ACCOUNT_EDIT


# --- loaders: what you may not see does not exist -------------------------------------------------
def load_case(session: Session, user: User | None, case_id: int,
              permission: Permission = Permission.CASE_READ) -> ProcessInstance:
    instance = session.get(ProcessInstance, case_id)
    if instance is None or not can(user, Permission.CASE_READ, instance):
        raise NotFound(f"no case {case_id}")
    if permission is not Permission.CASE_READ and not can(user, permission, instance):
        raise NotFound(f"no case {case_id}")
    return instance


def load_task(session: Session, user: User | None, task_id: str,
              permission: Permission = Permission.TASK_READ) -> Task:
    task = session.get(Task, task_id) if isinstance(task_id, str) and len(task_id) <= 36 else None
    if task is None or not can(user, Permission.TASK_READ, task):
        raise NotFound(f"no task {task_id}")
    if permission is not Permission.TASK_READ and not can(user, permission, task):
        raise NotFound(f"no task {task_id}")
    return task


def startable(session: Session, user: User | None) -> list[ProcessDefinition]:
    """The newest version of every deployed process the user may start, by name."""
    from sqlalchemy import func

    newest = (select(ProcessDefinition.key, func.max(ProcessDefinition.version).label("v"))
              .group_by(ProcessDefinition.key).subquery())
    rows = session.scalars(
        select(ProcessDefinition)
        .join(newest, (newest.c.key == ProcessDefinition.key) & (newest.c.v == ProcessDefinition.version))
        .order_by(ProcessDefinition.name)
    ).all()
    return [d for d in rows if can(user, Permission.PROCESS_START, d)]
