"""Comments and attachments of a case. Files live outside the web root, in the instance folder, under
random names; their type is checked by extension and by their first bytes (magic numbers)."""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from engine import audit
from engine.models import CaseAttachment, CaseComment, ProcessInstance

#: extension -> content type; the checks below decide by the content too
ALLOWED = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "odt": "application/vnd.oasis.opendocument.text",
    "txt": "text/plain; charset=utf-8",
}
_ODT_MIMETYPE = b"mimetypeapplication/vnd.oasis.opendocument.text"


class Rejected(ValueError):
    """An upload that is not accepted; `reason` is one of "type", "content", "size", "empty"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Stored:
    path: Path
    content_type: str


def add_comment(session: Session, instance: ProcessInstance, *, author: str, body: str, now: datetime) -> CaseComment:
    comment = CaseComment(instance_id=instance.id, author=author, body=body.strip(), created_at=now)
    session.add(comment)
    audit.record(session, at=now, actor=author, action="comment", instance_id=instance.id)
    session.flush()
    return comment


def comments(session: Session, instance: ProcessInstance) -> list[CaseComment]:
    return list(session.scalars(select(CaseComment).where(CaseComment.instance_id == instance.id)
                                .order_by(CaseComment.id)))


def attachments(session: Session, instance: ProcessInstance) -> list[CaseAttachment]:
    return list(session.scalars(select(CaseAttachment).where(CaseAttachment.instance_id == instance.id)
                                .order_by(CaseAttachment.id)))


def clean_filename(name: str) -> str:
    """The file's own name without any path, control or format characters (bidirectional overrides could
    disguise `rechnung\u202etxt.exe` as `rechnungexe.txt`) or leading dots; at most 200 characters, its
    extension kept; never empty."""
    name = unicodedata.normalize("NFC", name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf") and c not in '"<>|:*?')
    name = name.strip().lstrip(".")
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = stem[:200 - len(ext) - 1] + dot + ext if dot and len(ext) <= 10 else name[:200]
    return name or "datei"


def extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def content_matches(ext: str, head: bytes, data: bytes) -> bool:
    """Whether the bytes are what the extension says (magic numbers; containers looked into)."""
    if ext == "pdf":
        return head.startswith(b"%PDF-")
    if ext == "png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if ext in ("jpg", "jpeg"):
        return head.startswith(b"\xff\xd8\xff")
    if ext in ("docx", "odt"):
        if not head.startswith(b"PK\x03\x04"):
            return False
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
                if ext == "docx":
                    return "[Content_Types].xml" in names and "word/document.xml" in names
                return data[30:30 + len(_ODT_MIMETYPE)] == _ODT_MIMETYPE and "content.xml" in names
        except zipfile.BadZipFile:
            return False
    if ext == "txt":
        if b"\x00" in data:
            return False
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return not re.search(r"[\x01-\x08\x0b\x0e-\x1f\x7f]", text)
    return False


def store_attachment(session: Session, instance: ProcessInstance, *, stream: BinaryIO, filename: str, folder: Path,
                     uploaded_by: str, now: datetime, max_size: int) -> CaseAttachment:
    name = clean_filename(filename)
    ext = extension(name)
    if ext not in ALLOWED:
        raise Rejected("type")
    data = stream.read(max_size + 1)
    if len(data) > max_size:
        raise Rejected("size")
    if not data:
        raise Rejected("empty")
    if not content_matches(ext, data[:64], data):
        raise Rejected("content")
    folder.mkdir(parents=True, exist_ok=True)
    stored_name = secrets.token_hex(24)
    (folder / stored_name).write_bytes(data)
    session.info.setdefault(_WRITTEN, []).append(folder / stored_name)  # removed again if the row is not kept
    row = CaseAttachment(instance_id=instance.id, uploaded_by=uploaded_by, filename=name, stored_name=stored_name,
                         content_type=ALLOWED[ext], size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                         created_at=now)
    session.add(row)
    audit.record(session, at=now, actor=uploaded_by, action="attach", instance_id=instance.id)
    session.flush()
    return row


def attachment_path(row: CaseAttachment, folder: Path) -> Path:
    if not re.fullmatch(r"[0-9a-f]{48}", row.stored_name):
        raise FileNotFoundError(row.stored_name)
    return folder / row.stored_name


# --- files of rows that were never committed -----------------------------------------------------------
_WRITTEN = "casefiles_written"


@event.listens_for(Session, "after_commit")
def _keep_written(session: Session) -> None:
    session.info.pop(_WRITTEN, None)


@event.listens_for(Session, "after_rollback")
def _remove_written(session: Session) -> None:
    """A file whose attachment row was rolled back would lie on disk with no case to answer for it."""
    for path in session.info.pop(_WRITTEN, ()):
        path.unlink(missing_ok=True)
