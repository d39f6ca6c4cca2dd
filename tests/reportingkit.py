"""A fixed data set for the monitoring tests, built through the engine with the network's real procedures.

Twelve cases in 2026 with chosen values (see DATASET below), driven step by step by the people who may
do each step, one day per step. The hand counts the tests compare against are written next to them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from engine import demo, identity
from engine.models import Task

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 7, 15, 9, 0, tzinfo=UTC)
#: personal values written into personal fields: no monitoring page may ever show them
PERSONAL = ("Erika Mustermann", "Geheimnis-Notiz", "0381 4711")


def request(territory: str, client_type: str, topics: list[str], primary: str, **extra) -> dict:
    return {"requester_name": PERSONAL[0], "requester_contact": PERSONAL[2], "organisation_name": "",
            "client_type": client_type, "territory": territory, "topics": topics, "primary_topic": primary,
            "concern": PERSONAL[1], "urgency": "normal", "channel": "telefon", **extra}


FIRST_CONTACT = {"first_contact_date": "2026-02-03", "first_contact_channel": "telefon",
                 "first_contact_notes": PERSONAL[1]}
COMMISSION = {"commission_given": True, "mandate_description": PERSONAL[1], "commission_date": "2026-02-04"}
GOALS = {"consultation_goals": PERSONAL[1], "agreement_date": "2026-02-05"}
CONSENT = {"expert_consent": "given", "experts": "Jugendamt", "expert_scope": PERSONAL[1],
           "expert_consent_date": "2026-02-06", "expert_consent_given_by": PERSONAL[0]}
SESSION = {"session_date": "2026-02-10", "session_format": "vor_ort", "session_participants": 4,
           "session_notes": PERSONAL[1]}
CLOSING = {"indicator_problem_clarity": "achieved", "indicator_sensitisation": "achieved",
           "indicator_resources": "partly", "indicator_independence": "partly", "indicator_future": "not_achieved",
           "indicator_democratic_competence": "achieved", "closing_date": "2026-02-14",
           "closing_summary": PERSONAL[1]}
PROACTIVE = {"responsible_unit": "opferberatung", "territory": "lk-vorpommern-greifswald",
             "topics": ["gewalt", "rassismus"], "primary_topic": "gewalt", "occasion": PERSONAL[1],
             "justification": "Angriff mit rassistischem Motiv.", "intended_measures": "Kontaktangebot",
             "intervention_weeks": 6}


@dataclass
class Dataset:
    """Instance ids by name, and the database it lives in."""

    db: object
    cases: dict[str, int] = field(default_factory=dict)


class Driver:
    """Drives cases as people and the worker do. It restores specs into a cache of its own: in SpiffWorkflow
    3.2 starting an event subprocess connects it into the (shared, cached) spec, so a data set built after
    another test escalated a case would otherwise run on a changed spec (an engine issue, reported)."""

    def __init__(self, db):
        from engine.specs import SpecCache

        self.db = db
        self.specs = SpecCache()

    def runtime(self, session):
        from engine.runtime import Runtime

        return Runtime(session, clock=self.db.clock, specs=self.specs)

    def step(self, days: float = 1) -> None:
        self.db.clock.at = self.db.clock.at + timedelta(days=days)

    def start(self, key: str, user: str = "anna.berger") -> int:
        with self.db.transaction() as s:
            return self.runtime(s).start(key, user=user).id

    def complete(self, instance_id: int, element: str, data: dict | None = None, *, days: float = 1) -> None:
        with self.db.transaction() as s:
            row = s.scalars(select(Task).where(Task.instance_id == instance_id, Task.state == "open",
                                               Task.element_id == element)).one()
            user = demo._worker_for(s, row)
            assert user is not None, f"nobody may work on {element}"
            instance = self.runtime(s).complete(row.id, user=user, data=data or {})
            assert not instance.has_incident
        self.step(days)

    def message(self, instance_id: int, name: str, payload: dict, user: str = "anna.berger") -> None:
        with self.db.transaction() as s:
            self.runtime(s).send_message(instance_id, name, user=user, payload=payload)
        self.step()

    def cancel(self, instance_id: int, user: str = "anna.berger") -> None:
        with self.db.transaction() as s:
            self.runtime(s).cancel(instance_id, user=user, reason="Doppelt erfasst")
        self.step()


def setup_network(db) -> None:
    """Organisation, demo users (without passwords), the network's models; a supervisor outside a ministry."""
    with db.transaction() as s:
        identity.load_organisation(s, ROOT / "data" / "organisation.json")
        demo.create_users(s, db.clock, password=None)
        demo.deploy_models(s, ROOT, db.clock)
        identity.add_user(s, "sven", now=db.clock.now(), display_name="Sven Aufsicht",
                          memberships=[("lks", "supervisor")])


def build(db) -> Dataset:
    """The fixed data set (DATASET in the docstring of each step below); the clock ends at NOW."""
    db.clock.at = START
    setup_network(db)
    d, data = Driver(db), Dataset(db)
    # A (Feb 2): hro, Schule, two topics -> RZ Rostock; commissioned, experts, two sessions, closed in February
    a = data.cases["closed"] = d.start("consultation")
    d.complete(a, "Task_RecordRequest", request("hro", "schule", ["rechtsextremismus", "rassismus"],
                                                "rechtsextremismus"))
    d.complete(a, "Task_FirstContact", FIRST_CONTACT)
    d.complete(a, "Task_ClarifyMandate", COMMISSION)
    d.complete(a, "Task_GoalAgreement", GOALS)
    d.complete(a, "Task_ComposeTeam", {"case_team": "tom.richter", "experts_needed": True})
    d.complete(a, "Task_ExpertConsent", CONSENT)
    d.complete(a, "Task_InvolveExperts", {"experts_involved_date": "2026-02-08", "expert_contribution": PERSONAL[1]})
    d.complete(a, "Task_ProblemAnalysis", {"situation_analysis": PERSONAL[1], "perspectives": PERSONAL[1]})
    d.complete(a, "Task_Options", {"options_strategies": PERSONAL[1], "resources": PERSONAL[1]})
    d.complete(a, "Task_Session", {**SESSION, "another_session": True})
    d.complete(a, "Task_Session", {**SESSION, "another_session": False})
    d.complete(a, "Task_Closing", CLOSING)
    # B (Feb 14): hro, Verein -> RZ Rostock; no commission, request closed in February
    db.clock.at = datetime(2026, 2, 14, 9, 0, tzinfo=UTC)
    b = data.cases["no_commission"] = d.start("consultation")
    d.complete(b, "Task_RecordRequest", request("hro", "verein", ["rechtsextremismus"], "rechtsextremismus"))
    d.complete(b, "Task_FirstContact", FIRST_CONTACT)
    d.complete(b, "Task_ClarifyMandate", {"commission_given": False})
    d.complete(b, "Task_CloseRequest", {"closure_reason": "no_commission", "closure_note": PERSONAL[1]})
    # C (Mar 2): Schwerin, Schule -> RZ Westmecklenburg; commissioned, escalated (support), LKS takes over
    db.clock.at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    c = data.cases["escalated"] = d.start("consultation")
    d.complete(c, "Task_RecordRequest", request("sn", "schule", ["antisemitismus"], "antisemitismus"))
    d.complete(c, "Task_FirstContact", FIRST_CONTACT)
    d.complete(c, "Task_ClarifyMandate", COMMISSION)
    d.complete(c, "Task_GoalAgreement", GOALS)
    d.complete(c, "Task_ComposeTeam", {"case_team": "anna.berger", "experts_needed": False})
    d.message(c, "escalation_requested", {"escalation_kind": "support", "escalation_reason": PERSONAL[1]})
    d.complete(c, "Task_LksReview", {"escalation_kind": "support", "escalation_reason": PERSONAL[1],
                                     "escalation_decision": "takeover", "escalation_decision_reason": "Bedrohung"})
    d.complete(c, "Task_NotifyService", {"escalation_noted": True, "escalation_notice_comment": ""})
    d.complete(c, "Task_HandoverConsent", {"handover_consent": "refused"})
    # D (Mar 20): Landkreis Rostock, Kommune -> RZ Rostock; the first contact is never made (overdue)
    db.clock.at = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)
    data.cases["overdue"] = dd = d.start("consultation")
    d.complete(dd, "Task_RecordRequest", request("lk-rostock", "kommune", ["rassismus"], "rassismus"))
    # E (Apr 6): hro, Einzelperson, violence -> Opferberatung; cancelled the next day
    db.clock.at = datetime(2026, 4, 6, 9, 0, tzinfo=UTC)
    e = data.cases["cancelled"] = d.start("consultation")
    d.complete(e, "Task_RecordRequest", request("hro", "person", ["gewalt"], "gewalt"))
    d.cancel(e)
    # F, G (May 4, May 11): proactive interventions by the Opferberatung: one rejected, one approved
    db.clock.at = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    f = data.cases["proactive_rejected"] = d.start("proactive_intervention", user="ole.brandt")
    d.complete(f, "Task_RecordOccasion", PROACTIVE)
    d.complete(f, "Task_ApproveIntervention", {"approval_decision": "rejected", "approval_reason": "kein Ausnahmefall",
                                               "intervention_weeks": 6})
    db.clock.at = datetime(2026, 5, 11, 9, 0, tzinfo=UTC)
    g = data.cases["proactive_approved"] = d.start("proactive_intervention", user="ole.brandt")
    d.complete(g, "Task_RecordOccasion", PROACTIVE)
    d.complete(g, "Task_ApproveIntervention", {"approval_decision": "approved", "approval_reason": "begründet",
                                               "intervention_weeks": 6})
    # H..L (June 1..5): five requests, hro, Schule -> RZ Rostock; only recorded
    for i in range(5):
        db.clock.at = datetime(2026, 6, 1 + i, 9, 0, tzinfo=UTC)
        h = data.cases[f"june_{i}"] = d.start("consultation")
        d.complete(h, "Task_RecordRequest", request("hro", "schule", ["rechtsextremismus"], "rechtsextremismus"))
    db.clock.at = NOW
    return data


def personal_values_of(db) -> set[str]:
    """Every value stored under a personal key in any case (the demo data's personal values)."""
    from engine.forms import load_form
    from engine.models import ProcessDefinition, ProcessInstance
    from engine.policy import case_data
    from engine.runtime import Runtime
    from engine.specs import SpecCache

    values: set[str] = set()
    with db.transaction() as s:
        keys: set[str] = set()
        for definition in s.scalars(select(ProcessDefinition)):
            for form in json.loads(definition.forms_json or "{}").values():
                keys |= set(load_form(json.dumps(form).encode()).personal_keys)
        runtime = Runtime(s, specs=SpecCache())
        for instance in s.scalars(select(ProcessInstance)):
            data = case_data(runtime.load_workflow(instance))
            for key in keys:
                value = data.get(key)
                if isinstance(value, str) and len(value.strip()) >= 6:
                    values.add(value.strip())
    return values


@pytest.fixture(scope="module", name="dataset",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dataset_fixture(request, tmp_path_factory, sqlite_template):
    """The data set, built once per test module and backend (tests using it only read it)."""
    from tests.conftest import Database, _truncate_postgres

    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("reporting") / "fallwerk.sqlite3"
        shutil.copy(sqlite_template, path)
        database = Database(f"sqlite:///{path}")
    else:
        database = Database(request.getfixturevalue("postgres_url"))
    data = build(database)
    yield data
    if database.backend == "postgresql":
        _truncate_postgres(database.engine)
    database.engine.dispose()
