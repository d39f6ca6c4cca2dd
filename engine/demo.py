"""Demo data: users for every role, the network's procedures deployed, and cases in every phase.

Only for a demo database: the passwords are documented in the README.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import identity
from .clock import Clock, FixedClock
from .deploy import deploy, read_sources
from .forms import FormDefinition
from .models import ProcessInstance, Task, TaskCandidate
from .runtime import Runtime, task_form

DEMO_PASSWORD = "demo-passwort"  # noqa: S105 - documented, for the demo database only

#: username, display name, memberships (unit, role)
DEMO_USERS = [
    ("anna.berger", "Anna Berger", [("rz-westmecklenburg", "counsellor")]),
    ("jonas.krueger", "Jonas Krüger", [("rz-westmecklenburg", "counsellor")]),
    ("maria.schulz", "Maria Schulz", [("rz-westmecklenburg", "lead"), ("rz-westmecklenburg", "counsellor")]),
    ("tom.richter", "Tom Richter", [("rz-rostock", "counsellor")]),
    ("sabine.wolf", "Sabine Wolf", [("rz-rostock", "lead"), ("rz-rostock", "counsellor")]),
    ("lea.hoffmann", "Lea Hoffmann", [("rz-vorpommern-greifswald", "counsellor"),
                                      ("rz-vorpommern-greifswald", "lead")]),
    ("nina.koch", "Nina Koch", [("rz-mecklenburgische-seenplatte", "counsellor"),
                                ("rz-mecklenburgische-seenplatte", "lead")]),
    ("paul.meyer", "Paul Meyer", [("rz-vorpommern-ruegen", "counsellor"), ("rz-vorpommern-ruegen", "lead")]),
    ("ole.brandt", "Ole Brandt", [("opferberatung", "counsellor"), ("opferberatung", "lead")]),
    ("eva.schmidt", "Eva Schmidt", [("betriebliche-beratung", "counsellor"), ("betriebliche-beratung", "lead")]),
    ("can.yilmaz", "Can Yılmaz", [("ausstieg", "counsellor"), ("ausstieg", "lead")]),
    ("mira.saleh", "Mira Saleh", [("islamismus-praevention", "counsellor"), ("islamismus-praevention", "lead")]),
    ("katrin.lange", "Katrin Lange", [("lks", "coordinator")]),
    ("peter.hahn", "Dr. Peter Hahn", [("mi-soziales", "supervisor")]),
    ("admin", "Administration", [("lks", "admin")]),
]

FIRST_NAMES = ["Zeynep", "Lukas", "Marta", "Henrik", "Aylin", "Jana", "Mehmet", "Sophie", "Karl", "Olena"]
LAST_NAMES = ["Demir", "Schröder", "Nowak", "Petersen", "Kaya", "Lehmann", "Wójcik", "Jansen", "Ivanova"]
SENTENCES = [
    "Im Ort wurden wiederholt rechtsextreme Aufkleber an der Schule angebracht.",
    "Der Verein möchte seine Satzung gegen die Vereinnahmung durch Rechtsextreme schützen.",
    "Eine Kollegin wurde am Arbeitsplatz wegen ihrer Herkunft beleidigt.",
    "Die Gemeindevertretung sucht Unterstützung für den Umgang mit Verschwörungserzählungen.",
    "Eltern berichten von antisemitischen Äußerungen in einer Chatgruppe der Klasse.",
    "Nach einem Angriff auf einen Imbiss bittet der Inhaber um Begleitung.",
]

# values that steer the procedures: most cases go on, some stop, some escalate
STEERING = {
    "commission_given": [True, True, True, False],
    "experts_needed": [False, False, True],
    "expert_consent": ["given", "given", "refused"],
    "another_session": [True, False, False],
    "handover_consent": ["given", "refused"],
    "approval_decision": ["approved", "approved", "rejected"],
    "review_outcome": ["end", "extend", "commissioned"],
}


ORGANISATIONS = ["Freiwillige Feuerwehr Lindenhagen", "Sportverein Grün-Weiß 1921", "Kirchengemeinde St. Marien",
                 "Jugendclub Am Hafen", "Kita Sonnenblume", "Heimatverein Seeblick", "Regionale Schule am Wall"]


def create_users(session: Session, clock, *, password: str | None = DEMO_PASSWORD) -> None:
    for username, name, memberships in DEMO_USERS:
        identity.add_user(session, username, now=clock.now(), display_name=name, password=password,
                          email=f"{username}@example.org", memberships=memberships)


def deploy_models(session: Session, root: Path, clock) -> None:
    files = sorted((root / "processes").glob("*.bpmn")) + sorted((root / "processes").glob("*.dmn"))
    files += sorted((root / "forms").glob("*.form"))
    deploy(session, read_sources(files), user="katrin.lange", now=clock.now(), note="Demo")


def sample_values(form: FormDefinition, rng: random.Random, data: dict) -> dict:
    """Plausible values for every field of a form, within its constraints."""
    values = {}
    person = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    for f in form.fields:
        last = f.key.split(".")[-1]
        options = [o.value for o in f.options_in(data)]
        if last in STEERING and (not options or set(STEERING[last]) <= set(options) or f.type == "checkbox"):
            value = rng.choice(STEERING[last])
        elif f.type in ("select", "radio"):
            value = rng.choice(options) if options else None
        elif f.type in ("checklist", "taglist"):
            value = rng.sample(options, k=min(len(options), rng.randint(1, 2))) if options else []
        elif f.type == "checkbox":
            value = rng.random() < 0.5 if not f.required else True
        elif f.type == "number":
            low = int(f.constraints.minimum) if f.constraints.minimum is not None else 1
            high = int(f.constraints.maximum) if f.constraints.maximum is not None else low + 5
            value = rng.randint(low, max(low, min(high, low + 5)))
        elif f.type == "datetime":
            value = clock_date(data)
        elif last.startswith("organisation"):
            value = rng.choice(ORGANISATIONS)
        elif "name" in last or "given_by" in last:
            value = person
        elif "contact" in last:
            value = f"{person.split()[0].lower()}@example.org"
        else:
            value = rng.choice(SENTENCES)
        if isinstance(value, str) and f.constraints.max_length:
            value = value[: f.constraints.max_length]
        if isinstance(value, str) and f.constraints.min_length and len(value) < f.constraints.min_length:
            value = (value + " " + SENTENCES[0])[: max(f.constraints.min_length, len(value))]
        values[f.key] = value
    return values


def clock_date(data: dict) -> str:
    return str(data.get("_demo_today") or "2026-11-26")


def _worker_for(session: Session, row: Task) -> str | None:
    from .runtime import may_work_on

    candidates: dict[str, set[str]] = {"user": set(), "group": set(), "not": set()}
    for c in session.scalars(select(TaskCandidate).where(TaskCandidate.task_id == row.id)):
        candidates.setdefault(c.kind, set()).add(c.value)
    for username, _, _ in DEMO_USERS:
        user = identity.get_user(session, username)
        if may_work_on(row, username, identity.groups_of(user), candidates):
            return username
    return None


def drive(factory, clock: FixedClock, instance_id: int, steps: int, rng: random.Random, *, limit) -> None:
    """Complete up to `steps` open tasks of one case with sample values, as the right people, until
    the clock reaches `limit`."""
    from .db import transaction

    for _ in range(steps):
        with transaction(factory) as session:
            row = session.scalars(select(Task).where(Task.instance_id == instance_id, Task.state == "open")
                                  .order_by(Task.created_at)).first()
            if row is None:
                return
            user = _worker_for(session, row)
            if user is None:
                return
            runtime = Runtime(session, clock=clock)
            instance = session.get(ProcessInstance, instance_id)
            workflow = runtime.load_workflow(instance)
            from uuid import UUID

            spiff_task = workflow.get_task_from_id(UUID(row.id))
            form = task_form(spiff_task.task_spec, runtime.specs.get(instance.definition).forms)
            data = sample_values(form, rng, spiff_task.data) if form else {}
            runtime.complete(row.id, user=user, data=data)
        clock.advance(hours=rng.randint(2, 30))
        if clock.at >= limit:  # never act in the future: the rest of the case is still to be done
            return


def create_cases(factory, clock: FixedClock, *, count: int = 36, seed: int = 7) -> int:
    from .db import transaction

    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not security
    starters = ["anna.berger", "jonas.krueger", "tom.richter", "ole.brandt", "lea.hoffmann", "katrin.lange"]
    first, limit = clock.at, Clock().now()
    created = 0
    for i in range(count):  # spread over the time from `first` until now, older cases further along
        clock.at = first + (limit - first) * i / count
        key = "proactive_intervention" if i % 6 == 5 else "consultation"
        with transaction(factory) as session:
            instance = Runtime(session, clock=clock).start(key, user=rng.choice(starters))
            instance_id = instance.id
        drive(factory, clock, instance_id, rng.randint(0, 14), rng, limit=limit)
        if key == "consultation" and i % 5 == 2:  # some cases go to the statewide network
            _escalate(factory, clock, instance_id, rng)
            drive(factory, clock, instance_id, rng.randint(0, 3), rng, limit=limit)
        created += 1
    return created


def _escalate(factory, clock: FixedClock, instance_id: int, rng: random.Random) -> None:
    from .db import transaction
    from .errors import FallwerkError

    payload = {"escalation_kind": rng.choice(["support", "statewide"]),
               "escalation_reason": "Der Fall hat überregionale Bedeutung; wir bitten um Unterstützung."}
    try:
        with transaction(factory) as session:
            Runtime(session, clock=clock).send_message(instance_id, "escalation_requested", user="maria.schulz",
                                                       payload=payload)
    except FallwerkError:
        pass  # the case is already closed or not yet routed


def has_demo(session: Session) -> bool:
    return (session.scalar(select(func.count()).select_from(ProcessInstance)) or 0) > 0


def build(factory, root: Path, clock: FixedClock | None = None) -> int:
    """Users, models and cases. The clock starts 60 days back so that cases have a history."""
    from .db import transaction

    clock = clock or FixedClock(Clock().now() - timedelta(days=60))
    with transaction(factory) as session:
        identity.load_organisation(session, root / "data" / "organisation.json")
        create_users(session, clock)
        deploy_models(session, root, clock)
        if has_demo(session):
            return 0
    return create_cases(factory, clock)
