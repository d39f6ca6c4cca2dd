"""Drafts of procedures: what coordinators edit in the modeller before it becomes a version.

    draft = new_draft(session, key="consultation", user="carla", now=now)   # from the newest version
    saved = save_draft(session, draft.id, bpmn=xml, files={"routing.dmn": dmn}, revision=draft.revision,
                       user="carla", now=now)                                  # saved.warnings: stale base
    check_draft(session, draft).findings                                       # like `fallwerk check`, and more
    deploy_draft(session, draft.id, user="carla", now=now)                     # version N+1

A draft holds the BPMN of one procedure and drafts of the DMN tables and forms it changes (``files``:
``{"routing.dmn": xml, "first_contact.form": json}``). Checking and deploying complete it with the
deployed files it needs and does not change (decision tables, called processes, forms), so a draft is
checked exactly as it will be deployed.

Several drafts of one procedure do not clash: each has its own revision. Saving sends the revision that
was edited; if the draft was saved by someone else since, that is a ``DraftConflict`` unless
``overwrite=True``. A draft whose base is older than the newest version or than another draft's save is
saved with a warning, and deploying it needs ``force=True`` (it would undo the newer version).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import audit
from .check import BPMN_NS, CAMUNDA, Finding, KnownNames, _safe_parser, lint_known_names
from .deploy import FORM_SUFFIX, DeployResult, check_deployment, deploy, latest_definition
from .errors import Conflict, FallwerkError, ModelError, NotFound
from .identity import ROLES
from .models import DeploymentResource, Draft, ProcessDefinition, Unit

MAX_FILE = 2 * 1024 * 1024
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}\.(dmn|form)$")
DMN_SUFFIX = ".dmn"


class DraftConflict(Conflict):
    """The draft was saved by someone else after the revision the client edited."""

    code = "draft_conflict"


class UnknownRevision(FallwerkError):
    """The client sent a revision the draft never had: a broken request, not a conflict."""

    code = "unknown_revision"


class ConcurrentDeploy(Conflict):
    """Another deploy stored the same new version of a process at the same moment; this one stored nothing."""

    code = "concurrent_deploy"


class FileTooLarge(FallwerkError):
    code = "file_too_large"

    def __init__(self, name: str, limit: int = MAX_FILE):
        super().__init__(f"{name} is larger than {limit // (1024 * 1024)} MB")
        self.name, self.limit = name, limit


@dataclass(frozen=True)
class ForeignProcess(Finding):
    """A process of the draft whose key is deployed as another procedure (from another file)."""

    owner: str = ""  # the file the process is deployed from


@dataclass(frozen=True)
class Staleness:
    """Why a draft's base is out of date: a newer version, or a newer save of another draft."""

    code: str  # "newer_version" | "newer_draft" | "base_draft_changed"
    message: str
    by: str
    at: datetime
    version: int | None = None
    draft_id: int | None = None

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "by": self.by, "at": self.at.isoformat(),
                "version": self.version, "draft_id": self.draft_id}


@dataclass
class SaveResult:
    draft: Draft
    warnings: list[Staleness] = field(default_factory=list)


@dataclass
class DraftCheck:
    findings: list[Finding]
    processes: list[str]

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "findings": [f.to_dict() for f in self.findings], "processes": self.processes}


# --- deployed files ------------------------------------------------------------------------------------
def version_xml(session: Session, definition: ProcessDefinition) -> str | None:
    """The BPMN file a version was deployed from."""
    return session.scalar(select(DeploymentResource.content).where(
        DeploymentResource.deployment_id == definition.deployment_id,
        DeploymentResource.name == definition.source_name))


def latest_resources(session: Session, suffix: str) -> dict[str, str]:
    """The newest deployed content of every file whose name ends with `suffix`."""
    rows = session.execute(select(DeploymentResource.name, DeploymentResource.content)
                           .where(DeploymentResource.name.like(f"%{suffix}"))
                           .order_by(DeploymentResource.id)).all()
    return {name: content for name, content in rows}  # noqa: C416 - the newest row wins


def deployed_form_ids(session: Session) -> set[str]:
    names = session.scalars(select(DeploymentResource.name).where(DeploymentResource.name.like("form:%")))
    return {name.removeprefix("form:") for name in names}


# --- creating, saving, listing -------------------------------------------------------------------------
def blank_bpmn(key: str, name: str) -> str:
    """A new procedure: a start event on an executable process, with its diagram."""
    from xml.sax.saxutils import quoteattr

    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" \
xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" \
xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Definitions_{key}" \
targetNamespace="http://bpmn.io/schema/bpmn" exporter="Fallwerk">
  <bpmn:process id={quoteattr(key)} name={quoteattr(name)} isExecutable="true">
    <bpmn:startEvent id="StartEvent_1" name="Anfrage eingegangen" />
  </bpmn:process>
  <bpmndi:BPMNDiagram id="BPMNDiagram_1">
    <bpmndi:BPMNPlane id="BPMNPlane_1" bpmnElement={quoteattr(key)}>
      <bpmndi:BPMNShape id="StartEvent_1_di" bpmnElement="StartEvent_1">
        <dc:Bounds x="180" y="160" width="36" height="36" />
      </bpmndi:BPMNShape>
    </bpmndi:BPMNPlane>
  </bpmndi:BPMNDiagram>
</bpmn:definitions>
"""


def new_draft(session: Session, *, user: str, now: datetime, key: str | None = None, version: int | None = None,
              from_draft: int | None = None, name: str = "", title: str = "") -> Draft:
    """A draft from a deployed version (the newest by default), from another draft, or of a new procedure
    (a `key` nothing is deployed under yet)."""
    if from_draft is not None:
        source = get_draft(session, from_draft)
        draft = Draft(process_key=source.process_key, file_name=source.file_name, bpmn=source.bpmn,
                      files_json=source.files_json, base_version=source.base_version, base_draft_id=source.id,
                      base_draft_revision=source.revision, title=title or source.title)
    else:
        if not key or not _KEY.match(key):
            raise FallwerkError(f"invalid procedure key {key!r}: a letter or '_' first, then letters, digits, "
                                "'_', '-' or '.'")
        definition = _definition(session, key, version)
        if definition is None and version is not None:
            raise NotFound(f"no deployed process '{key}' in version {version}")
        if definition is None:
            draft = Draft(process_key=key, file_name=f"{key}.bpmn", bpmn=blank_bpmn(key, name or key),
                          files_json="{}", base_version=None, title=title)
        else:
            xml = version_xml(session, definition)
            if xml is None:
                raise NotFound(f"the BPMN file of '{key}' version {definition.version} is not stored")
            draft = Draft(process_key=key, file_name=definition.source_name, bpmn=xml, files_json="{}",
                          base_version=definition.version, title=title)
    draft.revision, draft.status, draft.deployed_versions = 1, "open", ""
    draft.created_by = draft.updated_by = user
    draft.created_at = draft.updated_at = now
    session.add(draft)
    session.flush()
    audit.record(session, at=now, actor=user, action="draft_create", element_id=draft.process_key, draft=draft.id,
                 base_version=draft.base_version, base_draft=draft.base_draft_id)
    return draft


def get_draft(session: Session, draft_id: int, *, lock: bool = False) -> Draft:
    query = select(Draft).where(Draft.id == draft_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    draft = session.scalar(query)
    if draft is None:
        raise NotFound(f"no draft {draft_id}")
    return draft


def list_drafts(session: Session, key: str | None = None, *, status: str | None = "open") -> list[Draft]:
    query = select(Draft).order_by(Draft.process_key, Draft.updated_at.desc(), Draft.id.desc())
    if key is not None:
        query = query.where(Draft.process_key == key)
    if status is not None:
        query = query.where(Draft.status == status)
    return list(session.scalars(query))


def draft_files(draft: Draft) -> dict[str, str]:
    return json.loads(draft.files_json or "{}")


def save_draft(session: Session, draft_id: int, *, bpmn: str, revision: int, user: str, now: datetime,
               files: dict[str, str] | None = None, title: str | None = None, overwrite: bool = False) -> SaveResult:
    """Store a new revision of a draft. `revision` is the one the client edited; `files` replaces the
    draft's DMN and form files when given (None keeps them)."""
    draft = get_draft(session, draft_id, lock=True)
    _require_open(draft)
    _require_known_revision(draft, revision)
    if revision != draft.revision and not overwrite:
        raise DraftConflict(f"draft {draft.id} was saved by {draft.updated_by} at {draft.updated_at:%Y-%m-%d %H:%M} "
                            f"(revision {draft.revision}) after the revision you edited ({revision}); reload it, "
                            "or save with overwrite to replace that change")
    _validate_file(draft.file_name, bpmn)
    if files is not None:
        for name, content in files.items():
            if not _FILE.match(name):
                raise FallwerkError(f"invalid file name {name!r}: a draft holds .dmn and .form files")
            _validate_file(name, content)
            if name.endswith(FORM_SUFFIX):
                _check_form_id(name, content)
        draft.files_json = json.dumps(dict(sorted(files.items())), ensure_ascii=False)
    draft.bpmn = bpmn
    if title is not None:
        draft.title = title[:200]
    draft.revision += 1
    draft.updated_by, draft.updated_at = user, now
    session.flush()
    audit.record(session, at=now, actor=user, action="draft_save", element_id=draft.process_key, draft=draft.id,
                 revision=draft.revision, overwrite=bool(overwrite and revision != draft.revision - 1))
    return SaveResult(draft, staleness(session, draft))


def discard_draft(session: Session, draft_id: int, *, user: str, now: datetime) -> Draft:
    draft = get_draft(session, draft_id, lock=True)
    _require_open(draft)
    draft.status, draft.updated_by, draft.updated_at = "discarded", user, now
    audit.record(session, at=now, actor=user, action="draft_discard", element_id=draft.process_key, draft=draft.id)
    session.flush()
    return draft


def staleness(session: Session, draft: Draft) -> list[Staleness]:
    """What happened to the procedure since this draft was derived: newer versions, newer drafts."""
    found = []
    newest = latest_definition(session, draft.process_key)
    if newest is not None and newest.version > (draft.base_version or 0):
        by, at = _deployed_by(session, newest)
        base = f"version {draft.base_version}" if draft.base_version else "no version"
        found.append(Staleness("newer_version", f"version {newest.version} was deployed by {by} at {at:%Y-%m-%d %H:%M} "
                                                f"after this draft's base ({base})", by, at, version=newest.version))
    others = session.scalars(select(Draft).where(
        Draft.process_key == draft.process_key, Draft.status == "open", Draft.id != draft.id,
        Draft.updated_at > draft.created_at, Draft.revision > 1).order_by(Draft.updated_at.desc()))
    for other in others:
        if other.id == draft.base_draft_id and other.revision == draft.base_draft_revision:
            continue
        code = "base_draft_changed" if other.id == draft.base_draft_id else "newer_draft"
        message = (f"draft {other.id} was saved by {other.updated_by} at {other.updated_at:%Y-%m-%d %H:%M}, "
                   "after this draft was started")
        found.append(Staleness(code, message, other.updated_by, other.updated_at, draft_id=other.id))
    return found


# --- checking and deploying ----------------------------------------------------------------------------
def draft_sources(session: Session, draft: Draft) -> dict[str, bytes]:
    """The draft's files, completed with the deployed decision tables and called processes it needs."""
    sources = {draft.file_name: draft.bpmn.encode()}
    sources.update({name: content.encode() for name, content in draft_files(draft).items()})
    for name, content in latest_resources(session, DMN_SUFFIX).items():
        sources.setdefault(name, content.encode())
    todo = list(_called_elements(sources[draft.file_name]))
    seen: set[str] = set()
    while todo:
        called = todo.pop()
        if called in seen:
            continue
        seen.add(called)
        definition = latest_definition(session, called)
        if definition is None or definition.source_name in sources:
            continue  # missing: the checker reports the call activity
        xml = version_xml(session, definition)
        if xml is not None:
            sources[definition.source_name] = xml.encode()
            todo += _called_elements(sources[definition.source_name])
    return sources


def known_names(session: Session, draft: Draft | None = None) -> KnownNames:
    forms = deployed_form_ids(session)
    if draft is not None:
        forms |= {name.removesuffix(FORM_SUFFIX) for name in draft_files(draft) if name.endswith(FORM_SUFFIX)}
    return KnownNames(units=frozenset(session.scalars(select(Unit.id))), roles=frozenset(ROLES),
                      forms=frozenset(forms))


def check_draft(session: Session, draft: Draft) -> DraftCheck:
    """The findings of `fallwerk check` and of deploying (forms, references across files), and references to
    units, roles and forms that do not exist."""
    sources = draft_sources(session, draft)
    result, _forms, findings = check_deployment(session, sources)
    extra = []
    known = known_names(session, draft)
    try:
        root = etree.fromstring(sources[draft.file_name], _safe_parser())
        extra = [Finding(draft.file_name, element or "-", severity, message)
                 for element, severity, message in lint_known_names(root, known)]
    except (etree.LxmlError, ValueError):
        pass  # not XML: check_deployment already said so
    specific = {f.message for f in extra}
    findings = [f for f in findings if f.message not in specific] + extra
    processes = sorted(result.processes) if result is not None else []
    return DraftCheck(_ordered(findings + foreign_processes(session, draft, result)), processes)


def foreign_processes(session: Session, draft: Draft, result) -> list[ForeignProcess]:
    """Processes in the draft's file whose key is deployed from another file: another procedure's. A draft
    deploys its own procedure and new processes, never another procedure's next version."""
    found = []
    for key, process in sorted(result.processes.items()) if result is not None else []:
        if process.file != draft.file_name:
            continue
        deployed = latest_definition(session, key)
        if deployed is not None and deployed.source_name != draft.file_name:
            found.append(ForeignProcess(
                draft.file_name, key, "error", f"process '{key}' is deployed from {deployed.source_name}, another "
                f"procedure; a draft of '{draft.process_key}' cannot deploy it (give the process another id)",
                owner=deployed.source_name))
    return found


def deploy_draft(session: Session, draft_id: int, *, user: str, now: datetime, revision: int | None = None,
                 force: bool = False) -> DeployResult:
    """Deploy a draft that has no errors: each changed process becomes version N+1; running instances stay
    on their version. `revision`: the revision the client checked (a newer save is a conflict). Losing a race
    with another deploy for the same new version is a `ConcurrentDeploy`: roll back, nothing is stored."""
    draft = get_draft(session, draft_id, lock=True)
    _require_open(draft)
    if revision is not None:
        _require_known_revision(draft, revision)
        if revision != draft.revision:
            raise DraftConflict(f"draft {draft.id} was saved by {draft.updated_by} (revision {draft.revision}) "
                                f"after the revision you checked ({revision}); check it again")
    newer = [s for s in staleness(session, draft) if s.code == "newer_version"]
    if newer and not force:
        raise Conflict(newer[0].message + "; deploying this draft would undo it (open the newest version, or "
                                          "deploy anyway)")
    checked = check_draft(session, draft)
    if not checked.ok:
        errors = [f for f in checked.findings if f.severity == "error"]
        raise ModelError(f"{len(errors)} error(s) in the draft; nothing was deployed", findings=checked.findings)
    try:
        outcome = deploy(session, draft_sources(session, draft), user=user, now=now, note=f"draft {draft.id}")
    except IntegrityError as exc:
        if "process_definitions" not in str(exc.orig):
            raise
        raise ConcurrentDeploy(f"another deploy stored a new version of a process of draft {draft_id} at the "
                               "same moment; nothing was deployed (roll back, then reload)") from exc
    if outcome.created:
        draft.status = "deployed"
        draft.deployed_versions = ",".join(f"{d.key}:{d.version}" for d in outcome.created)
        draft.updated_by, draft.updated_at = user, now
        audit.record(session, at=now, actor=user, action="draft_deploy", element_id=draft.process_key,
                     draft=draft.id, versions=draft.deployed_versions)
    session.flush()
    return outcome


# --- helpers -------------------------------------------------------------------------------------------
def _definition(session: Session, key: str, version: int | None) -> ProcessDefinition | None:
    if version is None:
        return latest_definition(session, key)
    return session.scalar(select(ProcessDefinition).where(ProcessDefinition.key == key,
                                                          ProcessDefinition.version == version))


def _deployed_by(session: Session, definition: ProcessDefinition) -> tuple[str, datetime]:
    from .models import Deployment

    deployment = session.get(Deployment, definition.deployment_id)
    return (deployment.deployed_by, deployment.deployed_at) if deployment else ("?", definition.deployed_at)


def _require_open(draft: Draft) -> None:
    if draft.status != "open":
        raise Conflict(f"draft {draft.id} is {draft.status}; start a new draft")


def _require_known_revision(draft: Draft, revision: int) -> None:
    if not 1 <= revision <= draft.revision:
        raise UnknownRevision(f"draft {draft.id} never had revision {revision} (it is at {draft.revision})")


def _validate_file(name: str, content: str) -> None:
    if not isinstance(content, str):
        raise FallwerkError(f"{name}: content must be text")
    if len(content.encode()) > MAX_FILE:
        raise FileTooLarge(name)


def _check_form_id(name: str, content: str) -> None:
    try:
        form_id = json.loads(content).get("id")
    except (ValueError, AttributeError):
        return  # the form checker reports it
    if form_id and form_id != name.removesuffix(FORM_SUFFIX):
        raise FallwerkError(f"{name}: the form's id is {form_id!r}; name the file {form_id}{FORM_SUFFIX}")


def _called_elements(content: bytes) -> list[str]:
    try:
        root = etree.fromstring(content, _safe_parser())
    except (etree.LxmlError, ValueError):
        return []
    return [c.get("calledElement") for c in root.iter(f"{{{BPMN_NS}}}callActivity") if c.get("calledElement")]


def form_refs(bpmn: str | bytes) -> list[str]:
    """The forms a BPMN file's user tasks reference (camunda:formRef), in order, each once."""
    try:
        root = etree.fromstring(bpmn.encode() if isinstance(bpmn, str) else bpmn, _safe_parser())
    except (etree.LxmlError, ValueError):
        return []
    refs = [t.get(CAMUNDA + "formRef") for t in root.iter(f"{{{BPMN_NS}}}userTask") if t.get(CAMUNDA + "formRef")]
    return list(dict.fromkeys(refs))


def _ordered(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.severity != "error", f.file, f.element_id))
