"""Who may do what: tokens at connect, the admin key for operators (thin adapter over
collab.protocol.tokens)."""

from __future__ import annotations

import asyncio
import hmac
import time

from aiohttp import web

from collab.protocol.tokens import Grant, TokenError, TokenVerifier
from collab.protocol.wire import CloseCode
from collab.server.connection import Connection
from collab.server.keys import SETTINGS, VERIFIER


def bearer_token(authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def request_token(request: web.Request) -> str | None:
    """``Authorization: Bearer <token>`` or ``?token=`` (browsers cannot set WebSocket headers)."""
    return bearer_token(request.headers.get("Authorization", "")) or request.query.get("token")


def authorize(request: web.Request, doc_id: str, write: bool = False) -> Grant | None:
    """The grant for ``doc_id``; None when auth is off. Raises TokenError (4401/4403)."""
    return authorize_token(request.app[VERIFIER], request_token(request), doc_id, write)


def authorize_token(
    verifier: TokenVerifier | None, token: str | None, doc_id: str, write: bool = False
) -> Grant | None:
    if verifier is None:
        return None
    return verifier.authorize(token, doc_id, write=write)


def is_admin(request: web.Request) -> bool:
    admin_key = request.app[SETTINGS].admin_key
    if not admin_key:
        return request.app[VERIFIER] is None  # everything is open when no key is configured
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), admin_key)


def expire_with_grant(conn: Connection, grant: Grant | None) -> None:
    """Close the connection with 4401 when its token expires (the client fetches a new one)."""
    if grant is None:
        return
    delay = max(0.0, grant.expires_at - time.time())
    handle = asyncio.get_running_loop().call_later(
        delay, conn.close, CloseCode.UNAUTHORIZED, "token expired"
    )
    conn.on_close(handle.cancel)


HTTP_STATUS = {CloseCode.UNAUTHORIZED: 401, CloseCode.FORBIDDEN: 403}


def http_status(error: TokenError) -> int:
    return HTTP_STATUS.get(error.code, 401)
