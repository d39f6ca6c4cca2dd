"""The network's procedures driven through every branch through the engine, on SQLite and PostgreSQL.

A small helper layer (:class:`Run` with ``start``, ``complete``, ``send_message``, ``fire_timers``,
``save_and_reload``) is the only place that touches the engine. Tasks are completed by a demo user who is
a candidate, with data validated against the task's form; timers fire through the worker with a moved
clock. Every test saves and reloads the instance mid-run and checks that nothing changed.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from uuid import UUID

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from tests.corpus_driver import reference_dump

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ROOT / "processes"
FORMS = ROOT / "forms"
ORGANISATION = json.loads((ROOT / "data" / "organisation.json").read_text(encoding="utf-8"))
CAMUNDA_NS = "{http://camunda.org/schema/1.0/bpmn}"


# --------------------------------------------------------------------------- forms


def _components(components):
    for component in components:
        yield component
        yield from _components(component.get("components", []))


def load_forms() -> dict[str, dict]:
    forms = {}
    for path in sorted(FORMS.glob("*.form")):
        form = json.loads(path.read_text(encoding="utf-8"))
        forms[form["id"]] = form
    return forms


FORM_DEFINITIONS = load_forms()
PERSONAL_KEYS = {
    component["key"]
    for form in FORM_DEFINITIONS.values()
    for component in _components(form["components"])
    if component.get("properties", {}).get("personal") == "true"
}


# --------------------------------------------------------------------------- helper layer: the engine's API

_CURRENT: dict = {}


@pytest.fixture(autouse=True)
def network(db):
    """The real organisation, the demo users and the network's models, deployed through the engine."""
    from engine import demo, identity

    with db.transaction() as s:
        identity.load_organisation(s, ROOT / "data" / "organisation.json")
        demo.create_users(s, db.clock, password=None)  # no argon2 work: nobody signs in here
        demo.deploy_models(s, ROOT, db.clock)
    _CURRENT["db"] = db
    yield db
    _CURRENT.clear()


class Run:
    """One running instance of a procedure, driven through the engine the way people and the worker do."""

    STARTER = "anna.berger"

    def __init__(self, instance_id: int):
        self.db = _CURRENT["db"]
        self.instance_id = instance_id

    # -- starting and finding tasks
    @classmethod
    def start(cls, process_id: str, **start_data) -> Run:
        db = _CURRENT["db"]
        with db.transaction() as s:
            instance = db.runtime(s).start(process_id, user=cls.STARTER, data=start_data)
            assert not instance.has_incident, cls._incidents(s, instance.id)
            return cls(instance.id)

    @staticmethod
    def _incidents(session, instance_id):
        from engine.models import Incident

        return [(i.element_id, i.message) for i in session.scalars(
            select(Incident).where(Incident.instance_id == instance_id))]

    def _rows(self):
        from engine.models import Task

        with self.db.transaction() as s:
            return s.scalars(select(Task).where(Task.instance_id == self.instance_id, Task.state == "open")).all()

    def ready(self) -> list[str]:
        """Ids (BPMN element ids) of the tasks waiting for a person."""
        return sorted(row.element_id for row in self._rows())

    def _row(self, task_id: str):
        rows = [row for row in self._rows() if row.element_id == task_id]
        assert len(rows) == 1, f"{task_id} is not ready; ready: {self.ready()}"
        return rows[0]

    def task(self, task_id: str):
        row = self._row(task_id)
        return self._workflow().get_task_from_id(UUID(row.id))

    def attribute(self, task_id: str, name: str) -> str | None:
        """A Camunda attribute of a user task as written in the model (candidate groups, form ...)."""
        return _element_attribute(task_id, name)

    # -- acting
    def complete(self, task_id: str, data: dict) -> Run:
        """Submit the form of a ready task as one of the people allowed to, validated like the web form."""
        from engine import demo

        row = self._row(task_id)
        with self.db.transaction() as s:
            user = demo._worker_for(s, row)
            assert user is not None, f"nobody may work on {task_id}"
            instance = self.db.runtime(s).complete(row.id, user=user, data=data)
            assert not instance.has_incident, self._incidents(s, self.instance_id)
        return self

    def send_message(self, name: str, payload: dict) -> Run:
        with self.db.transaction() as s:
            self.db.runtime(s).send_message(self.instance_id, name, user=self.STARTER, payload=payload)
        return self

    def fire_timers(self, after: datetime.timedelta = datetime.timedelta(0)) -> Run:
        """What the timer worker does, after ``after`` has passed."""
        from engine import worker

        self.db.clock.at += after
        worker.run_once(self.db.factory, self.db.clock)
        return self

    def save_and_reload(self) -> Run:
        """The engine saves after every step: the stored state restores to the same state."""
        from engine import serialization
        from engine.models import ProcessInstance

        with self.db.transaction() as s:
            instance = s.get(ProcessInstance, self.instance_id)
            restored = self.db.runtime(s).load_workflow(instance)
            dumped = serialization.dump_state(restored)
            assert json.loads(dumped) == json.loads(instance.state_json)
            assert dumped == reference_dump(restored)
        return self

    # -- looking at the end state
    def _workflow(self):
        from engine.models import ProcessInstance

        with self.db.transaction() as s:
            return self.db.runtime(s).load_workflow(s.get(ProcessInstance, self.instance_id))

    @property
    def completed(self) -> bool:
        from engine.models import ProcessInstance

        with self.db.transaction() as s:
            return s.get(ProcessInstance, self.instance_id).status == "completed"

    def ended_at(self) -> list[str]:
        workflow = self._workflow()
        return sorted(
            t.task_spec.bpmn_id
            for t in workflow.get_tasks(state=TaskState.COMPLETED)
            if type(t.task_spec).__name__ == "EndEvent" and t.workflow is workflow
        )

    @property
    def data(self) -> dict:
        from engine.runtime import instance_data

        return instance_data(self._workflow())


def _element_attribute(task_id: str, name: str) -> str | None:
    from lxml import etree

    for path in PROCESSES.glob("*.bpmn"):
        for element in etree.parse(str(path)).iter():
            if element.get("id") == task_id:
                return element.get(CAMUNDA_NS + name)
    return None


def _check_form_data(task_id: str, data: dict) -> None:
    """A completed form only submits keys that its form declares (like the engine's form layer)."""
    form_id = _element_attribute(task_id, "formRef")
    assert form_id in FORM_DEFINITIONS, f"{task_id} references unknown form {form_id}"
    keys = {c["key"] for c in _components(FORM_DEFINITIONS[form_id]["components"]) if "key" in c}
    assert set(data) <= keys, f"{task_id}: keys {set(data) - keys} are not in form {form_id}"


def assert_anonymous(statistics: dict) -> None:
    assert not set(statistics) & PERSONAL_KEYS
    flat = json.dumps(statistics, ensure_ascii=False)
    for secret in ("Erika", "Mustermann", "Geheim", "0381"):
        assert secret not in flat


# --------------------------------------------------------------------------- form data a user would submit

REQUEST = {
    "requester_name": "Erika Mustermann",
    "requester_contact": "0381 123456",
    "organisation_name": "",
    "client_type": "schule",
    "territory": "hro",
    "topics": ["rechtsextremismus", "rassismus"],
    "primary_topic": "rechtsextremismus",
    "concern": "Geheim: Schmierereien an der Schule",
    "urgency": "normal",
    "channel": "telefon",
}
FIRST_CONTACT = {
    "first_contact_date": "2025-03-03",
    "first_contact_channel": "telefon",
    "first_contact_notes": "Geheim",
}
COMMISSION = {
    "commission_given": True,
    "mandate_description": "Geheim: Umgang mit Vorfällen",
    "commission_date": "2025-03-05",
}
GOALS = {"consultation_goals": "Geheim: Leitbild der Schule", "agreement_date": "2025-03-10"}
SESSION = {
    "session_date": "2025-03-20",
    "session_format": "vor_ort",
    "session_participants": 12,
    "session_notes": "Geheim",
}
CLOSING = {
    "indicator_problem_clarity": "achieved",
    "indicator_sensitisation": "achieved",
    "indicator_resources": "partly",
    "indicator_independence": "partly",
    "indicator_future": "not_achieved",
    "indicator_democratic_competence": "achieved",
    "closing_date": "2025-06-30",
    "closing_summary": "Geheim: Erika Mustermann ist zufrieden",
}


def request_recorded(**overrides) -> Run:
    run = Run.start("consultation")
    assert run.ready() == ["Task_RecordRequest"]
    assert run.attribute("Task_RecordRequest", "assignee") == "${initiator}"
    run.complete("Task_RecordRequest", {**REQUEST, **overrides})
    return run


def commissioned(run: Run, experts: bool = False) -> Run:
    run.complete("Task_FirstContact", FIRST_CONTACT)
    run.complete("Task_ClarifyMandate", COMMISSION)
    run.complete("Task_GoalAgreement", GOALS)
    run.complete("Task_ComposeTeam", {"case_team": "anna.beispiel, ben.beispiel", "experts_needed": experts})
    return run


def through_sessions(run: Run, sessions: int = 1) -> Run:
    run.complete("Task_ProblemAnalysis", {"situation_analysis": "Geheim", "perspectives": "Geheim"})
    run.complete("Task_Options", {"options_strategies": "Geheim", "resources": "Geheim"})
    for number in range(sessions):
        run.complete("Task_Session", {**SESSION, "another_session": number < sessions - 1})
    return run


# --------------------------------------------------------------------------- the models themselves


def test_every_model_passes_the_engines_check():
    from engine.check import check_files

    result = check_files(sorted(PROCESSES.glob("*")))
    assert result.findings == []
    assert set(result.processes) >= {"consultation", "proactive_intervention"}


def test_every_form_reference_points_to_a_form_in_forms():
    from lxml import etree

    refs = set()
    for path in PROCESSES.glob("*.bpmn"):
        for element in etree.parse(str(path)).iter("{http://www.omg.org/spec/BPMN/20100524/MODEL}userTask"):
            ref = element.get(CAMUNDA_NS + "formRef")
            assert ref, f"user task {element.get('id')} has no formRef"
            assert ref in FORM_DEFINITIONS, f"{path.name}: {element.get('id')} -> {ref}"
            assert element.get(CAMUNDA_NS + "candidateGroups"), element.get("id")
            refs.add(ref)
    assert refs == set(FORM_DEFINITIONS), "every form is used by a task"


def test_forms_have_unique_component_ids_and_german_labels():
    for form_id, form in FORM_DEFINITIONS.items():
        assert form["schemaVersion"] == 16 and form["type"] == "default"
        ids = [c["id"] for c in _components(form["components"])]
        assert len(ids) == len(set(ids)), form_id
        keys = [c["key"] for c in _components(form["components"]) if "key" in c]
        assert len(keys) == len(set(keys)), form_id
        assert all(k == k.lower() for k in keys)


def test_every_element_of_every_model_has_an_id_and_a_diagram_shape():
    from lxml import etree

    bpmn = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
    for path in PROCESSES.glob("*.bpmn"):
        tree = etree.parse(str(path))
        drawn = {e.get("bpmnElement") for e in tree.iter() if e.tag.endswith(("BPMNShape", "BPMNEdge"))}
        for process in tree.iter(bpmn + "process"):
            for element in process.iter():
                if not isinstance(element.tag, str) or element is process:
                    continue
                local = element.tag.split("}")[1]
                if local in {
                    "documentation",
                    "incoming",
                    "outgoing",
                    "script",
                    "conditionExpression",
                    "sourceRef",
                    "targetRef",
                    "timeDate",
                    "extensionElements",
                    "properties",
                    "property",
                    "in",
                    "out",
                    "dataObject",
                }:
                    continue
                if element.tag.startswith(CAMUNDA_NS) or local.endswith("EventDefinition"):
                    continue
                assert element.get("id"), f"{path.name}: {local} without id"
                assert element.get("id") in drawn, f"{path.name}: {element.get('id')} is not drawn"


def test_routing_table_sends_each_territory_to_its_regionalzentrum_and_special_topics_to_their_service():
    for territory in ORGANISATION["territorial_units"]:
        run = request_recorded(territory=territory["id"], primary_topic="antisemitismus")
        assert run.task("Task_FirstContact").data["responsible_unit"] == territory["regionalzentrum"]
    for topic, unit in [
        ("gewalt", "opferberatung"),
        ("arbeitswelt", "betriebliche-beratung"),
        ("ausstieg", "ausstieg"),
        ("islamismus", "islamismus-praevention"),
    ]:
        run = request_recorded(territory="lk-vorpommern-ruegen", primary_topic=topic)
        assert run.task("Task_FirstContact").data["responsible_unit"] == unit
    units = {u["id"] for u in ORGANISATION["units"]}
    assert {t["regionalzentrum"] for t in ORGANISATION["territorial_units"]} <= units


# --------------------------------------------------------------------------- consultation


def test_a_commissioned_consultation_runs_to_its_close_and_leaves_an_anonymous_statistics_record():
    run = request_recorded()
    assert run.ready() == ["Task_FirstContact"]
    assert run.attribute("Task_FirstContact", "candidateGroups") == "${responsible_unit}"
    run.save_and_reload()
    commissioned(run, experts=False)
    through_sessions(run, sessions=1)
    run.save_and_reload()
    run.complete("Task_Closing", CLOSING)

    assert run.completed
    assert run.ended_at() == ["EndEvent_ConsultationClosed"]
    statistics = run.data["statistics"]
    assert statistics["outcome"] == "consultation_closed"
    assert statistics["responsible_unit"] == "rz-rostock"
    assert statistics["client_type"] == "schule"
    assert statistics["sessions"] == 1
    assert statistics["indicators"]["future"] == "not_achieved"
    assert statistics["experts_involved"] is False
    assert statistics["escalated"] is False
    assert len(statistics["request_month"]) == 7
    assert_anonymous(statistics)


def test_a_request_without_commission_closes_with_a_reason_and_no_consultation():
    run = request_recorded()
    run.complete("Task_FirstContact", FIRST_CONTACT)
    run.save_and_reload()
    run.complete("Task_ClarifyMandate", {"commission_given": False})
    assert run.ready() == ["Task_CloseRequest"]
    run.complete("Task_CloseRequest", {"closure_reason": "no_commission", "closure_note": "Geheim"})

    assert run.completed
    assert run.ended_at() == ["EndEvent_RequestClosed"]
    statistics = run.data["statistics"]
    assert statistics["outcome"] == "request_closed"
    assert statistics["commission_given"] is False
    assert statistics["closure_reason"] == "no_commission"
    assert_anonymous(statistics)
    assert "consultation_goals" not in run.data


def test_experts_are_involved_after_recorded_consent():
    run = commissioned(request_recorded(), experts=True)
    assert run.ready() == ["Task_ExpertConsent"]
    run.save_and_reload()
    run.complete(
        "Task_ExpertConsent",
        {
            "expert_consent": "given",
            "experts": "Jugendamt Rostock",
            "expert_scope": "Geheim: Sachstand",
            "expert_consent_date": "2025-03-12",
            "expert_consent_given_by": "Erika Mustermann",
        },
    )
    assert run.ready() == ["Task_InvolveExperts"]
    run.complete("Task_InvolveExperts", {"experts_involved_date": "2025-03-15", "expert_contribution": "Geheim"})
    through_sessions(run)
    run.complete("Task_Closing", CLOSING)
    assert run.ended_at() == ["EndEvent_ConsultationClosed"]
    assert run.data["statistics"]["experts_involved"] is True
    assert_anonymous(run.data["statistics"])


def test_refused_consent_skips_the_experts():
    run = commissioned(request_recorded(), experts=True)
    run.complete("Task_ExpertConsent", {"expert_consent": "refused"})
    assert run.ready() == ["Task_ProblemAnalysis"]
    run.save_and_reload()
    through_sessions(run)
    run.complete("Task_Closing", CLOSING)
    assert run.completed
    assert run.data["statistics"]["experts_involved"] is False
    assert "experts_involved_date" not in run.data


def test_several_sessions_are_each_documented():
    run = commissioned(request_recorded())
    run.complete("Task_ProblemAnalysis", {"situation_analysis": "Geheim", "perspectives": "Geheim"})
    run.complete("Task_Options", {"options_strategies": "Geheim", "resources": "Geheim"})
    for number in range(3):
        assert run.ready() == ["Task_Session"]
        run.complete(
            "Task_Session",
            {
                **SESSION,
                "session_date": f"2025-04-0{number + 1}",
                "session_notes": f"Sitzung {number + 1}",
                "another_session": number < 2,
            },
        )
        if number == 1:
            run.save_and_reload()
    assert run.ready() == ["Task_Closing"]
    run.complete("Task_Closing", CLOSING)
    assert [s["notes"] for s in run.data["sessions"]] == ["Sitzung 1", "Sitzung 2", "Sitzung 3"]
    assert run.data["statistics"]["sessions"] == 3


def test_an_overdue_first_contact_creates_a_reminder_for_the_lead():
    run = request_recorded()
    run.fire_timers()
    assert run.ready() == ["Task_FirstContact"], "not due yet"
    run.save_and_reload()
    run.fire_timers(after=datetime.timedelta(days=3, minutes=1))
    assert run.ready() == ["Task_FirstContact", "Task_FirstContactReminder"]
    assert run.attribute("Task_FirstContactReminder", "candidateGroups") == "${responsible_unit}:lead"
    run.save_and_reload()
    run.complete("Task_FirstContactReminder", {"reminder_action": "reminded", "reminder_note": ""})
    run.complete("Task_FirstContact", FIRST_CONTACT)
    run.complete("Task_ClarifyMandate", {"commission_given": False})
    run.complete("Task_CloseRequest", {"closure_reason": "unreachable", "closure_note": ""})
    assert run.completed
    assert run.ended_at() == ["EndEvent_ReminderHandled", "EndEvent_RequestClosed"]


def test_an_urgent_request_is_due_for_first_contact_within_a_day():
    run = request_recorded(urgency="akut")
    due = datetime.datetime.fromisoformat(run.task("Task_FirstContact").data["first_contact_due"])
    assert due - datetime.datetime.now(datetime.UTC) < datetime.timedelta(days=1, minutes=1)
    run.fire_timers(after=datetime.timedelta(days=1, minutes=1))
    assert "Task_FirstContactReminder" in run.ready()


def test_a_completed_first_contact_cancels_the_reminder_timer():
    run = request_recorded()
    run.complete("Task_FirstContact", FIRST_CONTACT)
    run.fire_timers(after=datetime.timedelta(days=30))
    assert run.ready() == ["Task_ClarifyMandate"]


# --------------------------------------------------------------------------- escalation to the statewide network


def escalated(kind: str = "support") -> Run:
    run = commissioned(request_recorded())
    run.send_message(
        "escalation_requested", {"escalation_kind": kind, "escalation_reason": "Geheim: Bedrohung der Schulleitung"}
    )
    assert run.ready() == ["Task_LksReview", "Task_ProblemAnalysis"]
    assert run.attribute("Task_LksReview", "candidateGroups") == "lks:coordinator"
    review = run.task("Task_LksReview").data
    assert review["responsible_unit"] == "rz-rostock"
    assert review["escalation_kind"] == kind
    run.save_and_reload()
    return run


def lks_decides(run: Run, decision: str) -> Run:
    review = run.task("Task_LksReview").data
    run.complete(
        "Task_LksReview",
        {
            "escalation_kind": review["escalation_kind"],
            "escalation_reason": review["escalation_reason"],
            "escalation_decision": decision,
            "escalation_decision_reason": "Begründung der LKS",
        },
    )
    assert "Task_NotifyService" in run.ready()
    run.complete("Task_NotifyService", {"escalation_noted": True, "escalation_notice_comment": ""})
    return run


def finish_consultation(run: Run) -> Run:
    through_sessions(run)
    run.complete("Task_Closing", CLOSING)
    return run


def test_the_network_takes_over_with_consent_and_receives_the_case_data():
    run = lks_decides(escalated("statewide"), "takeover")
    assert "Task_HandoverConsent" in run.ready()
    run.complete(
        "Task_HandoverConsent",
        {
            "handover_consent": "given",
            "handover_scope": "Geheim",
            "handover_consent_date": "2025-03-20",
            "handover_consent_given_by": "Erika Mustermann",
        },
    )
    run.save_and_reload()
    run.complete("Task_HandOverCaseData", {"handover_date": "2025-03-21", "handover_contents": "Geheim"})
    run.complete("Task_NetworkSupport", {"network_support_notes": "Geheim", "network_support_outcome": "completed"})
    assert not run.completed, "the consultation itself is still open"
    finish_consultation(run)
    assert run.completed
    assert run.ended_at() == ["EndEvent_ConsultationClosed"]
    assert run.data["statistics"]["escalated"] is True
    assert_anonymous(run.data["statistics"])


def test_the_network_supports_without_case_data_when_consent_is_refused():
    run = lks_decides(escalated("support"), "support")
    run.complete("Task_HandoverConsent", {"handover_consent": "refused"})
    assert "Task_HandOverCaseData" not in run.ready()
    assert "Task_NetworkSupport" in run.ready()
    run.save_and_reload()
    run.complete(
        "Task_NetworkSupport", {"network_support_notes": "ohne Falldaten", "network_support_outcome": "returned"}
    )
    finish_consultation(run)
    assert run.completed
    assert run.data["statistics"]["escalated"] is True


def test_a_declined_escalation_is_reported_to_the_service_and_ends():
    run = lks_decides(escalated("support"), "declined")
    assert run.ready() == ["Task_ProblemAnalysis"]
    run.save_and_reload()
    finish_consultation(run)
    assert run.completed
    assert run.ended_at() == ["EndEvent_ConsultationClosed"]
    assert run.data["statistics"]["escalated"] is True


def test_a_consultation_can_be_escalated_more_than_once():
    run = lks_decides(escalated("support"), "declined")
    run.send_message("escalation_requested", {"escalation_kind": "statewide", "escalation_reason": "erneut"})
    assert "Task_LksReview" in run.ready()
    run.save_and_reload()
    lks_decides(run, "declined")
    finish_consultation(run)
    assert run.completed


def test_the_consultation_waits_for_an_open_escalation_before_it_completes():
    run = escalated("support")
    finish_consultation(run)
    assert not run.completed
    assert run.ready() == ["Task_LksReview"]
    lks_decides(run, "declined")
    assert run.completed


# --------------------------------------------------------------------------- proactive intervention

PROACTIVE = {
    "responsible_unit": "opferberatung",
    "territory": "lk-vorpommern-greifswald",
    "topics": ["gewalt", "rassismus"],
    "primary_topic": "gewalt",
    "occasion": "Geheim: Presseberichte über einen Angriff auf Erika Mustermann",
    "justification": "Angriff mit rassistischem Motiv, Betroffene kennen das Angebot vermutlich nicht.",
    "intended_measures": "Kontaktangebot über die Kommune",
    "intervention_weeks": 6,
}


def proactive_recorded() -> Run:
    run = Run.start("proactive_intervention")
    assert run.ready() == ["Task_RecordOccasion"]
    run.complete("Task_RecordOccasion", PROACTIVE)
    assert run.ready() == ["Task_ApproveIntervention"]
    approval = run.task("Task_ApproveIntervention")
    assert approval.data["recorded_by"] == Run.STARTER
    assert approval.task_spec.extensions["not_user"] == "${recorded_by}"
    assert run.attribute("Task_ApproveIntervention", "candidateGroups") == "${responsible_unit}:lead,lks:coordinator"
    return run


def approved(run: Run) -> Run:
    run.complete(
        "Task_ApproveIntervention",
        {"approval_decision": "approved", "approval_reason": "begründet", "intervention_weeks": 6},
    )
    assert run.ready() == ["Task_DocumentIntervention"]
    return run


def test_a_rejected_proactive_intervention_ends_with_the_reason_recorded():
    run = proactive_recorded()
    run.save_and_reload()
    run.complete(
        "Task_ApproveIntervention",
        {"approval_decision": "rejected", "approval_reason": "kein Ausnahmefall", "intervention_weeks": 6},
    )
    assert run.completed
    assert run.ended_at() == ["EndEvent_Rejected"]
    assert run.data["approval_reason"] == "kein Ausnahmefall"
    assert run.data["statistics"]["outcome"] == "rejected"
    assert_anonymous(run.data["statistics"])


def test_an_approved_intervention_is_reviewed_when_its_time_limit_expires_and_then_ends():
    run = approved(proactive_recorded())
    run.fire_timers(after=datetime.timedelta(weeks=5))
    assert run.ready() == ["Task_DocumentIntervention"]
    run.save_and_reload()
    run.fire_timers(after=datetime.timedelta(weeks=6, minutes=1))
    assert run.ready() == ["Task_ReviewIntervention"]
    run.complete("Task_ReviewIntervention", {"review_outcome": "end", "review_note": "erledigt"})
    assert run.completed
    assert run.ended_at() == ["EndEvent_InterventionEnded"]
    statistics = run.data["statistics"]
    assert statistics["outcome"] == "end" and statistics["reviews"] == 1
    assert_anonymous(statistics)


def test_an_extension_needs_a_new_approval():
    run = approved(proactive_recorded())
    run.complete("Task_DocumentIntervention", {"activity_notes": "Geheim", "contact_established": False})
    run.complete(
        "Task_ReviewIntervention",
        {"review_outcome": "extend", "intervention_weeks": 4, "review_note": "Kontakt steht noch aus"},
    )
    assert run.ready() == ["Task_ApproveIntervention"]
    run.save_and_reload()
    approved(run)
    run.complete("Task_DocumentIntervention", {"activity_notes": "Geheim", "contact_established": True})
    run.complete("Task_ReviewIntervention", {"review_outcome": "end", "review_note": "erledigt"})
    assert run.completed
    assert run.data["statistics"]["reviews"] == 2


def test_an_intervention_turns_into_a_consultation_when_the_clients_commission_one():
    run = approved(proactive_recorded())
    run.complete("Task_DocumentIntervention", {"activity_notes": "Geheim", "contact_established": True})
    run.save_and_reload()
    run.complete("Task_ReviewIntervention", {"review_outcome": "commissioned", "review_note": "Beratung gewünscht"})
    assert run.ready() == ["Task_RecordRequest"]
    handed_over = run.task("Task_RecordRequest").data
    assert handed_over["territory"] == "lk-vorpommern-greifswald"
    assert handed_over["channel"] == "proaktiv"
    assert handed_over["statistics"]["outcome"] == "commissioned"
    run.save_and_reload()
    run.complete(
        "Task_RecordRequest",
        {
            "requester_name": "Erika Mustermann",
            "requester_contact": "",
            "organisation_name": "",
            "client_type": "person",
            "territory": "lk-vorpommern-greifswald",
            "topics": ["gewalt"],
            "primary_topic": "gewalt",
            "concern": "Geheim",
            "urgency": "normal",
            "channel": "proaktiv",
        },
    )
    assert run.task("Task_FirstContact").data["responsible_unit"] == "opferberatung"
    commissioned(run)
    finish_consultation(run)
    assert run.completed
    assert run.ended_at() == ["EndEvent_ConsultationStarted"]
    assert run.data["statistics"]["procedure"] == "consultation"
    assert_anonymous(run.data["statistics"])


def test_a_consultation_called_from_an_intervention_can_be_escalated():
    """SpiffWorkflow 3.2 alone triggers message event subprocesses only in the top process; the engine
    routes `escalation_requested` into the called consultation too."""
    run = approved(proactive_recorded())
    run.complete("Task_DocumentIntervention", {"activity_notes": "Geheim", "contact_established": True})
    run.complete("Task_ReviewIntervention", {"review_outcome": "commissioned", "review_note": "Beratung gewünscht"})
    run.complete("Task_RecordRequest", {**REQUEST, "channel": "proaktiv"})
    from webapp.services import casework

    assert casework.waits_for_message(run._workflow(), casework.ESCALATION_MESSAGE)  # the case page offers it
    run.send_message("escalation_requested", {"escalation_kind": "support", "escalation_reason": "x"})
    with run.db.transaction() as s:
        assert Run._incidents(s, run.instance_id) == []
    assert "Task_LksReview" in run.ready()


def test_an_escalation_in_one_case_does_not_change_any_other_case():
    """SpiffWorkflow wires a triggered event subprocess into the process spec, which every case of a
    version shares: other cases, older and newer, must neither wait for an escalation nor get one."""
    older = commissioned(request_recorded())
    escalated("statewide")
    newer = commissioned(request_recorded())
    for run in (older, newer):
        assert "Task_LksReview" not in run.ready()
        finish_consultation(run)
        assert run.completed, run.ready()
        assert run.ended_at() == ["EndEvent_ConsultationClosed"]
