"""Deploying models: check everything, then store each changed process as a new version.

A deploy with any error stores nothing. Deploying unchanged content is a no-op for that process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit, serialization
from .errors import ModelError
from .models import Deployment, DeploymentResource, ProcessDefinition

FORM_SUFFIX = ".form"


@dataclass
class DeployResult:
    deployment_id: int | None
    created: list[ProcessDefinition] = field(default_factory=list)
    unchanged: list[ProcessDefinition] = field(default_factory=list)
    findings: list = field(default_factory=list)  # warnings only: errors abort the deploy


def read_sources(paths) -> dict[str, bytes]:
    sources = {}
    for path in paths:
        path = Path(path)
        try:
            sources[path.name] = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    return sources


CAMUNDA_FORMS_PREFIX = "camunda-forms:"


def form_reference(camunda: dict) -> str | None:
    """The id of the deployed form a task or start event uses: `camunda:formRef`, or Camunda 7's
    `camunda:formKey="camunda-forms:deployment:task-form.form"` (the .form file's id or name)."""
    if camunda.get("formRef"):
        return camunda["formRef"]
    key = camunda.get("formKey") or ""
    if key.startswith(CAMUNDA_FORMS_PREFIX):
        return Path(key.rsplit(":", 1)[-1]).stem
    return None


def _user_task_form_refs(spec, subprocess_specs) -> set[str]:
    refs = set()
    for process in [spec, *subprocess_specs.values()]:
        for task_spec in process.task_specs.values():
            ref = form_reference((getattr(task_spec, "extensions", None) or {}).get("camunda") or {})
            if ref:
                refs.add(ref)
    return refs


def start_event_spec(spec):
    """The process's plain (none) start event, whose form is the start form."""
    for task_spec in spec.task_specs.values():
        if type(task_spec).__name__ == "StartEvent" and \
                type(getattr(task_spec, "event_definition", None)).__name__ == "NoneEventDefinition":
            return task_spec
    return None


def check_deployment(session: Session, sources: dict[str, bytes]):
    """Check BPMN, DMN and form files together. Returns (check result, forms by id, findings)."""
    from .check import Finding, check_sources
    from .forms import check_form

    forms: dict[str, dict] = {}
    findings = []
    model_sources = {}
    for name, content in sources.items():
        if not name.endswith(FORM_SUFFIX):
            model_sources[name] = content
            continue
        form_findings = check_form(content, file=name)
        findings.extend(form_findings)
        if not any(f.severity == "error" for f in form_findings):
            definition = json.loads(content)
            forms[definition.get("id") or Path(name).stem] = definition
    result = check_sources(model_sources) if model_sources else None
    if result is not None:
        findings[:0] = result.findings
        for process in result.processes.values():
            for ref in sorted(_user_task_form_refs(process.spec, process.subprocess_specs)):
                if ref not in forms:
                    deployed = latest_form(session, ref)
                    if deployed is None:
                        findings.append(Finding(process.file, process.spec.name, "error",
                                                f"form '{ref}' referenced by camunda:formRef does not exist"))
                    else:
                        forms[ref] = deployed
    return result, forms, findings


DEFAULT_PREFIX = "default."


def start_defaults(process) -> dict:
    """Start data defaults a model declares on its process element, so coordinators can change them:
    `<camunda:property name="default.first_contact_days" value="3"/>`. Values are read as JSON where
    they parse (numbers, true/false), else kept as text."""
    from lxml import etree

    from .check import _safe_parser

    content = process.sources.get(process.file)
    if content is None:
        return {}
    root = etree.fromstring(content, _safe_parser())
    ns = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL", "camunda": "http://camunda.org/schema/1.0/bpmn"}
    defaults = {}
    for prop in root.xpath("//bpmn:process[@id=$pid]/bpmn:extensionElements/camunda:properties/camunda:property",
                           pid=process.id, namespaces=ns):
        name = prop.get("name") or ""
        if name.startswith(DEFAULT_PREFIX) and name[len(DEFAULT_PREFIX):].isidentifier():
            raw = prop.get("value") or ""
            try:
                defaults[name[len(DEFAULT_PREFIX):]] = json.loads(raw)
            except ValueError:
                defaults[name[len(DEFAULT_PREFIX):]] = raw
    return defaults


def latest_form(session: Session, form_id: str) -> dict | None:
    content = session.scalar(
        select(DeploymentResource.content)
        .where(DeploymentResource.name == f"form:{form_id}")
        .order_by(DeploymentResource.id.desc())
        .limit(1)
    )
    return json.loads(content) if content else None


def deploy(session: Session, sources: dict[str, bytes], *, user: str, now: datetime, note: str = "") -> DeployResult:
    result, forms, findings = check_deployment(session, sources)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise ModelError(f"{len(errors)} error(s) in the models; nothing was deployed", findings=findings)
    warnings = [f for f in findings if f.severity != "error"]
    processes = result.processes if result is not None else {}

    deployment = Deployment(deployed_by=user, deployed_at=now, note=note)
    session.add(deployment)
    session.flush()
    outcome = DeployResult(deployment_id=deployment.id, findings=warnings)
    for name, content in sources.items():
        if not name.endswith(FORM_SUFFIX):
            session.add(DeploymentResource(deployment_id=deployment.id, name=name,
                                           content=content.decode("utf-8", errors="replace")))
    for form_id, definition in forms.items():
        if any(n.endswith(FORM_SUFFIX) for n in sources):
            session.add(DeploymentResource(deployment_id=deployment.id, name=f"form:{form_id}",
                                           content=json.dumps(definition, ensure_ascii=False)))

    for key, process in processes.items():
        spec_json = serialization.spec_to_json(process.spec, process.subprocess_specs,
                                               start_defaults=start_defaults(process))
        refs = _user_task_form_refs(process.spec, process.subprocess_specs)
        forms_json = json.dumps({ref: forms[ref] for ref in sorted(refs)}, sort_keys=True, ensure_ascii=False)
        content_hash = hashlib.sha256((spec_json + "\n" + forms_json).encode()).hexdigest()
        latest = latest_definition(session, key)
        if latest is not None and latest.content_hash == content_hash:
            outcome.unchanged.append(latest)
            continue
        definition = ProcessDefinition(
            key=key,
            version=(latest.version + 1) if latest else 1,
            name=process.name or key,
            content_hash=content_hash,
            deployment_id=deployment.id,
            source_name=process.file,
            spec_json=spec_json,
            forms_json=forms_json,
            start_form=_start_form_ref(process.spec),
            serializer_version=serialization.SERIALIZER_VERSION,
            deployed_at=now,
        )
        session.add(definition)
        session.flush()
        outcome.created.append(definition)
        audit.record(session, at=now, actor=user, action="deploy", element_id=key,
                     version=definition.version, definition_id=definition.id)
    if not outcome.created:
        # nothing new: do not keep an empty deployment record
        session.query(DeploymentResource).filter_by(deployment_id=deployment.id).delete()
        session.delete(deployment)
        outcome.deployment_id = None
    session.flush()
    return outcome


def _start_form_ref(spec) -> str | None:
    start = start_event_spec(spec)
    return form_reference((getattr(start, "extensions", None) or {}).get("camunda") or {}) if start else None


def latest_definition(session: Session, key: str) -> ProcessDefinition | None:
    return session.scalar(
        select(ProcessDefinition)
        .where(ProcessDefinition.key == key)
        .order_by(ProcessDefinition.version.desc())
        .limit(1)
    )


def list_definitions(session: Session) -> list[tuple[ProcessDefinition, int]]:
    """Every deployed version with the number of running instances on it."""
    from .models import ProcessInstance

    running = (
        select(ProcessInstance.definition_id, func.count().label("n"))
        .where(ProcessInstance.status == "running")
        .group_by(ProcessInstance.definition_id)
        .subquery()
    )
    rows = session.execute(
        select(ProcessDefinition, func.coalesce(running.c.n, 0))
        .outerjoin(running, running.c.definition_id == ProcessDefinition.id)
        .order_by(ProcessDefinition.key, ProcessDefinition.version)
    ).all()
    return [(d, n) for d, n in rows]
