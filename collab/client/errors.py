"""Exceptions the SDK raises to its users."""

from __future__ import annotations


class CollabClientError(Exception):
    """Base class of every error the SDK raises."""


class PermanentCloseError(CollabClientError):
    """The server refused the session for good (close code 4400-4499): retrying cannot help.

    ``code`` and ``reason`` are those of the close frame (or of the long-poll error body), e.g.
    4400 for an invalid document id, 4401 for a missing or expired token, 4403 for a forbidden
    document, 4413 for a frame over the server's size limit.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"server closed the session with {code}: {reason or 'no reason given'}")
        self.code = code
        self.reason = reason


class PermissionDeniedError(CollabClientError):
    """The server refused this session's edits (e.g. a read-only token): they are not stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the server refused our edits: {reason}")
        self.reason = reason


class SessionClosedError(CollabClientError):
    """The session was closed by its owner; it cannot sync or flush any more."""


def is_permanent(code: int | None) -> bool:
    """4400-4499 means "do not retry" (the rule y-websocket 3.1 follows too)."""
    return code is not None and 4400 <= code <= 4499
