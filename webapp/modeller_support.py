"""What the modeller pages show, in German: findings with element names, conflicts, stale-base warnings,
the candidate groups to pick from, the forms and decision tables of a draft. No request handling here."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import drafts
from engine.check import _safe_parser
from engine.deploy import FORM_SUFFIX, latest_form
from engine.errors import Conflict, FallwerkError
from engine.identity import ROLES
from engine.models import Draft, Unit

from .templating import person

ROLE_NAMES = {"counsellor": _l("Beratende"), "lead": _l("Leitung"), "coordinator": _l("Koordination (LKS)"),
              "supervisor": _l("Aufsicht"), "admin": _l("Verwaltung")}
CANDIDATE_ROLES = ("counsellor", "lead", "coordinator")


def element_names(xml: str | bytes) -> dict[str, str]:
    try:
        root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml, _safe_parser())
    except (etree.LxmlError, ValueError):
        return {}
    return {node.get("id"): " ".join(node.get("name").split()) for node in root.iter()
            if isinstance(node.tag, str) and node.get("id") and node.get("name")}


def findings_payload(draft: Draft, findings) -> list[dict]:
    names = element_names(draft.bpmn)
    return [{**f.to_dict(), "message": finding_message(draft, f), "element_name": names.get(f.element_id, "")}
            for f in findings]


def finding_message(draft: Draft, finding) -> str:
    """The checker's message (English, as in `fallwerk check`), or German for the modeller's own findings."""
    if isinstance(finding, drafts.ForeignProcess):
        return _("Der Prozess „%(process)s“ gehört zu einem anderen Verfahren (%(file)s): Ein Entwurf von "
                 "„%(key)s“ kann ihn nicht veröffentlichen. Geben Sie dem Prozess eine andere ID.",
                 process=finding.element_id, file=finding.owner, key=draft.process_key)
    return finding.message


def summary(findings) -> str:
    errors = sum(1 for f in findings if f.severity == "error")
    hints = len(findings) - errors
    if not findings:
        return _("Prüfung ohne Befund: keine Fehler, keine Hinweise.")
    return _("Prüfung: %(errors)d Fehler, %(hints)d Hinweise.", errors=errors, hints=hints)


def conflict_text(draft: Draft) -> str:
    return _("Dieser Entwurf wurde am %(when)s von %(who)s gespeichert (Stand %(revision)d), nachdem Sie ihn "
             "geöffnet haben.", when=format_datetime(draft.updated_at, "short"), who=person(draft.updated_by),
             revision=draft.revision)


def closed_text(draft: Draft) -> str:
    """Why a draft can no longer be saved or published."""
    if draft.status == "deployed":
        created = [item.rsplit(":", 1) for item in draft.deployed_versions.split(",") if ":" in item]
        own = [version for key, version in created if key == draft.process_key]
        return _("Dieser Entwurf ist schon veröffentlicht (Version %(version)s).",
                 version=", ".join(own or [f"{key} {version}" for key, version in created]))
    return _("Dieser Entwurf wurde verworfen.")


def too_large_text(limit: int = drafts.MAX_FILE, name: str | None = None) -> str:
    megabytes = limit // (1024 * 1024)
    if name:
        return _("Die Datei %(name)s ist größer als %(limit)d MB; nichts wurde gespeichert.", name=name,
                 limit=megabytes)
    return _("Die Anfrage ist zu groß: Ein Modell, eine Entscheidungstabelle oder ein Formular darf höchstens "
             "%(limit)d MB groß sein. Nichts wurde gespeichert.", limit=megabytes)


def refusal(draft: Draft, exc: FallwerkError) -> tuple[int, str, str]:
    """A refused save or publish as (HTTP status, German message, code), with `draft` as it is now."""
    if isinstance(exc, drafts.UnknownRevision):
        return 400, _("Diesen Stand hat der Entwurf nie gehabt. Bitte laden Sie die Seite neu."), exc.code
    if isinstance(exc, drafts.DraftConflict):
        return 409, conflict_text(draft), exc.code
    if isinstance(exc, drafts.ConcurrentDeploy):
        return 409, _("Im selben Moment hat jemand anderes eine Version dieses Verfahrens veröffentlicht; Ihr "
                      "Entwurf wurde nicht veröffentlicht. Bitte laden Sie die Seite neu."), exc.code
    if isinstance(exc, Conflict):
        return 409, closed_text(draft), "closed"
    if isinstance(exc, drafts.FileTooLarge):
        return 422, too_large_text(exc.limit, exc.name), exc.code
    return 422, _("Der Entwurf konnte nicht gespeichert werden."), exc.code


def staleness_text(item: drafts.Staleness) -> str:
    when = format_datetime(item.at, "short")
    if item.code == "newer_version":
        return _("Seit diesem Entwurf wurde Version %(version)d veröffentlicht (%(who)s, %(when)s). Öffnen Sie "
                 "die neue Version, damit deren Änderungen nicht verloren gehen.", version=item.version,
                 who=person(item.by), when=when)
    if item.code == "base_draft_changed":
        return _("Der Entwurf, von dem dieser abgeleitet ist (Nr. %(id)d), wurde seitdem geändert (%(who)s, "
                 "%(when)s).", id=item.draft_id, who=person(item.by), when=when)
    return _("Ein anderer Entwurf dieses Verfahrens (Nr. %(id)d) wurde nach dem Beginn dieses Entwurfs "
             "gespeichert (%(who)s, %(when)s).", id=item.draft_id, who=person(item.by), when=when)


def warnings_payload(items) -> list[dict]:
    return [{**w.to_dict(), "text": staleness_text(w)} for w in items]


def candidate_groups(session: Session) -> list[dict]:
    """Every unit, and every unit with each role that can work on tasks, for the candidate group picker."""
    groups = []
    for unit in session.scalars(select(Unit).order_by(Unit.name)):
        groups.append({"value": unit.id, "label": unit.name})
        for role in CANDIDATE_ROLES:
            groups.append({"value": f"{unit.id}:{role}", "label": f"{unit.name} – {ROLE_NAMES[role]}"})
    return groups


def role_names() -> dict[str, str]:
    return {role: ROLE_NAMES.get(role, role) for role in ROLES}


@dataclass
class DraftForm:
    id: str
    source: str  # "draft" | "deployed" | "missing"


def draft_forms(session: Session, draft: Draft) -> list[DraftForm]:
    files = drafts.draft_files(draft)
    result = []
    for ref in drafts.form_refs(draft.bpmn):
        if f"{ref}{FORM_SUFFIX}" in files:
            result.append(DraftForm(ref, "draft"))
        else:
            result.append(DraftForm(ref, "deployed" if latest_form(session, ref) is not None else "missing"))
    for name in files:
        form_id = name.removesuffix(FORM_SUFFIX)
        if name.endswith(FORM_SUFFIX) and form_id not in {f.id for f in result}:
            result.append(DraftForm(form_id, "draft"))
    return result


def form_schema(session: Session, draft: Draft, form_id: str) -> dict:
    """The form as the draft has it: its own draft, else the deployed one, else a new empty form."""
    files = drafts.draft_files(draft)
    if f"{form_id}{FORM_SUFFIX}" in files:
        return json.loads(files[f"{form_id}{FORM_SUFFIX}"])
    return latest_form(session, form_id) or {"id": form_id, "type": "default", "schemaVersion": 16,
                                             "components": []}


def decision_files(session: Session, draft: Draft) -> dict[str, str]:
    """The DMN files a draft works with: its own drafts, else the deployed ones."""
    files = {**drafts.latest_resources(session, drafts.DMN_SUFFIX)}
    files.update({n: c for n, c in drafts.draft_files(draft).items() if n.endswith(drafts.DMN_SUFFIX)})
    return dict(sorted(files.items()))
