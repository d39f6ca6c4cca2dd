"""The case page: status, current step, answers, history, comments, attachments, diagram, actions."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.models import CaseAttachment, Task
from tests.web.conftest import case_at_advice, complete, login, open_task
from tests.web.models import PERSONAL

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _section(page: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}">(.*?)</(?:section|table)>', page, flags=re.S)
    return match.group(1) if match else ""


@pytest.fixture
def case(web, client):
    case = case_at_advice(web)
    login(client, "alice")
    return case


def _upload(client, case, name, content, **extra):
    return client.post(f"/cases/{case.id}/attachments", data={"file": (io.BytesIO(content), name), **extra},
                       content_type="multipart/form-data")


def _docx(with_document=True) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        if with_document:
            archive.writestr("word/document.xml", "<document/>")
    return buffer.getvalue()


def _odt() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", "<office:document-content/>")
    return buffer.getvalue()


def test_the_case_page_shows_status_step_answers_and_history(client, case):
    response = client.get(f"/cases/{case.id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and case.number in page
    assert "laufend" in _section(page, "status") or ">laufend<" in page
    assert "Beraten" in _section(page, "current-step")
    assert PERSONAL in _section(page, "case-data") and "RZ West" in _section(page, "case-data")
    assert "erledigt von Alice Beraterin am" in _section(page, "case-data")  # the name, not the user name
    history = _section(page, "history")
    assert "gestartet" in history and "Anfrage erfassen" in history and "Alice Beraterin" in history
    assert PERSONAL not in history and "RZ West" not in history and "Schule" not in history
    assert 'data-diagram-url="/cases/' in page or "Diagramm ist nicht verfügbar" in page
    assert response.headers["Cache-Control"] == "no-store"


def test_the_diagram_source_is_the_deployed_bpmn(client, case):
    response = client.get(f"/cases/{case.id}/diagram.bpmn")
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert 'id="advise"' in response.get_data(as_text=True)


def test_completed_and_active_elements_are_marked_for_the_diagram(client, case):
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    marks = re.search(r'data-completed="([^"]*)" data-active="([^"]*)"', page)
    if marks:  # the bundle is built
        assert "intake" in marks.group(1).split(",") and marks.group(2) == "advise"


def test_a_supervisor_sees_the_status_but_no_content(client, web, case):
    login(client, "sven")
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert case.number in page and "Beraten" in page
    assert PERSONAL not in page and 'data-testid="history"' not in page and 'data-testid="case-data"' not in page
    assert 'data-testid="comments"' not in page


def test_a_comment_is_saved_and_shown(client, web, case):
    response = client.post(f"/cases/{case.id}/comments", data={"body": "Rückruf am Dienstag vereinbart."})
    assert response.status_code == 303
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "Rückruf am Dienstag vereinbart." in _section(page, "comments") and "Kommentar gespeichert." in page
    assert "Kommentar geschrieben" in _section(page, "history")


def test_an_empty_comment_is_refused(client, case):
    response = client.post(f"/cases/{case.id}/comments", data={"body": ""})
    assert response.status_code == 422 and "Bitte schreiben Sie einen Kommentar." in response.get_data(as_text=True)


@pytest.mark.parametrize(("name", "content", "mimetype"), [
    ("Bericht.pdf", PDF, "application/pdf"),
    ("foto.PNG", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "image/png"),
    ("scan.jpeg", b"\xff\xd8\xff\xe0" + b"\x00" * 20, "image/jpeg"),
    ("protokoll.docx", _docx(), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("notiz.odt", _odt(), "application/vnd.oasis.opendocument.text"),
    ("notiz.txt", "Grüße aus Schwerin\n".encode(), "text/plain"),
])
def test_an_allowed_file_is_stored_outside_the_web_root_and_downloaded_as_attachment(app, client, case, name, content,
                                                                                      mimetype):
    assert _upload(client, case, name, content).status_code == 303
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "Alice Beraterin" in page.split('data-testid="attachments"')[1].split("</section>")[0]
    link = re.search(rf'href="(/cases/{case.id}/attachments/\d+)"', page).group(1)
    stored = list(Path(app.config["UPLOAD_FOLDER"]).iterdir())
    assert len(stored) == 1 and name not in stored[0].name and re.fullmatch(r"[0-9a-f]{48}", stored[0].name)
    response = client.get(link)
    assert response.status_code == 200 and response.get_data() == content and response.mimetype == mimetype
    assert response.headers["Content-Type"].count("charset") == (1 if mimetype == "text/plain" else 0)
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    response.close()


@pytest.mark.parametrize(("name", "kept"), [
    ("a" * 250 + ".txt", "a" * 196 + ".txt"),  # shortened before its extension, which decides the type
    ("rechnung\u202etxt.exe\u202c.txt", "rechnungtxt.exe.txt"),  # no direction overrides to disguise a name
    ("../../etc/.hidden.txt", "hidden.txt"),
])
def test_a_file_name_keeps_its_extension_and_loses_what_could_mislead(web, client, case, name, kept):
    assert _upload(client, case, name, b"Notiz\n").status_code == 303
    with web.transaction() as s:
        assert s.scalars(select(CaseAttachment.filename)).all() == [kept]


def test_a_stored_file_is_removed_when_its_row_is_rolled_back_and_kept_when_committed(web, tmp_path):
    from engine.models import ProcessInstance
    from webapp.services import casefiles

    case = case_at_advice(web)
    folder = tmp_path / "uploads"

    def store(session):
        return casefiles.store_attachment(session, session.get(ProcessInstance, case.id), stream=io.BytesIO(PDF),
                                          filename="Bericht.pdf", folder=folder, uploaded_by="alice",
                                          now=web.clock.now(), max_size=1000)

    with web.factory() as session:
        store(session)
        assert len(list(folder.iterdir())) == 1
        session.rollback()  # e.g. the request failed after the upload
    assert list(folder.iterdir()) == []
    with web.factory() as session:
        kept = folder / store(session).stored_name
        session.commit()
        session.rollback()  # nothing left to undo: the committed file stays
    assert list(folder.iterdir()) == [kept]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("programm.exe", b"MZ\x90\x00", "Dieser Dateityp ist nicht erlaubt."),
    ("ohne-endung", PDF, "Dieser Dateityp ist nicht erlaubt."),
    ("bild.png", PDF, "passt nicht zu ihrer Endung"),
    ("bericht.pdf", b"<html><script>alert(1)</script>", "passt nicht zu ihrer Endung"),
    ("brief.docx", _docx(with_document=False), "passt nicht zu ihrer Endung"),
    ("text.txt", b"\x00\x01binary", "passt nicht zu ihrer Endung"),
    ("leer.pdf", b"", "Die Datei ist leer."),
])
def test_a_refused_file_is_explained_and_not_stored(app, client, case, name, content, message):
    response = _upload(client, case, name, content)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert list(Path(app.config["UPLOAD_FOLDER"]).iterdir()) == []


def test_a_file_over_the_size_limit_is_refused(app, client, case):
    app.config["MAX_ATTACHMENT_SIZE"] = 100
    response = _upload(client, case, "gross.pdf", PDF + b"0" * 200)
    assert response.status_code == 413 and "höchstens 10 MB" in response.get_data(as_text=True)


def test_a_request_over_the_upload_limit_gets_the_413_page(app, client, case):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = _upload(client, case, "gross.pdf", PDF + b"0" * 5000)
    assert response.status_code == 413 and "Datei zu groß" in response.get_data(as_text=True)


def test_the_lead_cancels_a_case_with_a_reason(client, web, case):
    login(client, "lena")
    assert client.post(f"/cases/{case.id}/cancel", data={"reason": ""}).status_code == 422
    assert client.post(f"/cases/{case.id}/cancel", data={"reason": "a     "}).status_code == 422  # spaces are no reason
    response = client.post(f"/cases/{case.id}/cancel", data={"reason": "  Doppelt erfasst. "})
    assert response.status_code == 303
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "abgebrochen" in _section(page, "status") or ">abgebrochen<" in page
    assert "Doppelt erfasst." in page and open_task(web, case.id) is None
    assert 'data-testid="cancel-form"' not in page


def test_a_counsellor_who_did_not_start_the_case_cannot_cancel_it(client, web):
    case = case_at_advice(web, user="bob")
    login(client, "alice")
    assert 'data-testid="cancel-form"' not in client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert client.post(f"/cases/{case.id}/cancel", data={"reason": "Doppelt erfasst."}).status_code == 404


def test_support_is_requested_and_the_coordinators_see_the_case_without_personal_data(client, web, case):
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert 'data-testid="escalation-form"' in page
    response = client.post(f"/cases/{case.id}/escalate", data={"kind": "support", "reason": "Drohungen im Ort"})
    assert response.status_code == 303
    review = open_task(web, case.id, "review")
    assert review is not None
    login(client, "carla")
    assert review.id in client.get("/?view=team").get_data(as_text=True)
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert case.number in page and "Beraten" in page
    assert PERSONAL not in page and "Personenbezogene Angaben sind ausgeblendet." in page
    assert "RZ West" in _section(page, "case-data")
    assert client.get(f"/tasks/{review.id}").status_code == 200


def test_a_second_request_for_support_while_the_first_is_open_is_refused(client, web, case):
    """A double click, or a colleague who was quicker: one escalation, one review task."""
    for _ in range(3):
        assert client.post(f"/cases/{case.id}/escalate",
                           data={"kind": "support", "reason": "Drohungen im Ort"}).status_code == 303
    with web.transaction() as s:
        reviews = s.scalars(select(Task).where(Task.instance_id == case.id, Task.element_id == "review")).all()
    assert len(reviews) == 1
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "Für diesen Fall ist bereits eine Anfrage auf Unterstützung offen." in page
    assert 'data-testid="escalation-form"' not in page  # offered again once the first is handled


def test_after_consent_the_coordinators_see_personal_data(client, web, case):
    client.post(f"/cases/{case.id}/escalate", data={"kind": "statewide", "reason": "Landesweite Bedeutung"})
    complete(web, open_task(web, case.id, "advise").id, "alice", sessions=2, handover_consent=True)
    login(client, "carla")
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert PERSONAL in page


def test_support_cannot_be_requested_for_a_finished_case(client, web, case):
    login(client, "lena")
    client.post(f"/cases/{case.id}/cancel", data={"reason": "Doppelt erfasst."})
    assert client.post(f"/cases/{case.id}/escalate", data={"kind": "support", "reason": "x"}).status_code == 404


def test_an_escalation_needs_kind_and_reason(client, case):
    response = client.post(f"/cases/{case.id}/escalate", data={})
    assert response.status_code == 422
    assert "Bitte wählen Sie die Art der Unterstützung." in response.get_data(as_text=True)


def test_reading_a_case_with_personal_data_is_audited_but_not_listed(client, web, case):
    from sqlalchemy import select

    from engine.models import AuditEvent

    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    login(client, "sven")
    client.get(f"/cases/{case.id}")
    with web.transaction() as s:
        readers = s.scalars(select(AuditEvent.actor).where(AuditEvent.instance_id == case.id,
                                                           AuditEvent.action == "read")).all()
    assert readers == ["alice"]
    assert ">read<" not in page


def test_nul_characters_in_fields_and_query_arguments_are_dropped(client, web, case):
    """No text a person types has a NUL character, and PostgreSQL cannot store one: a comment, an inbox
    filter or a sign-in with it failed the request (500) there, and the comment was lost."""
    response = client.post(f"/cases/{case.id}/comments", data={"body": "Rückruf\x00 am Dienstag"})
    assert response.status_code == 303
    assert "Rückruf am Dienstag" in _section(client.get(f"/cases/{case.id}").get_data(as_text=True), "comments")
    response = client.get("/?view=team&text=Ber%00aten")
    assert response.status_code == 200 and 'value="Beraten"' in response.get_data(as_text=True)
    client.post("/logout")
    response = client.post("/login", data={"username": "al\x00ice", "password": "falsch"})
    assert response.status_code == 401 and "Anmeldung fehlgeschlagen" in response.get_data(as_text=True)
    client.post("/login", data={"username": "alice", "password": "falsch"})
    login(client, "alice")
    for path in ("/tasks/%00", f"/cases/{case.id}%00", "/tasks/abc%00/claim"):
        response = client.get(path) if "claim" not in path else client.post(path)
        assert response.status_code == 404, path
