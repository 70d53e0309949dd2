"""Document id rules, shared by every entry point (WebSocket path, long-poll, HTTP API).

1-255 characters of ``[A-Za-z0-9._~/-]``; ``/`` separates path segments, which must not be
empty, ``.`` or ``..`` (ids map onto URL paths and must never be ambiguous there).
"""

from __future__ import annotations

import re

from collab.protocol.wire import ProtocolError

MAX_DOC_ID_LENGTH = 255
_ALLOWED = re.compile(r"[A-Za-z0-9._~/-]+")


def validate_doc_id(doc_id: str) -> str:
    """Return ``doc_id`` unchanged, or raise ProtocolError (close 4400) saying what is wrong."""
    if not doc_id or len(doc_id) > MAX_DOC_ID_LENGTH:
        raise ProtocolError(f"document id must be 1-{MAX_DOC_ID_LENGTH} characters")
    if not _ALLOWED.fullmatch(doc_id):
        raise ProtocolError("document id may only contain A-Z a-z 0-9 . _ ~ / -")
    for segment in doc_id.split("/"):
        if segment in ("", ".", ".."):
            raise ProtocolError("document id has an empty, '.' or '..' path segment")
    return doc_id
