"""Signed access tokens (JWT, HS256 with key ids for rotation): mint and verify.

Claims: ``doc`` (an exact document id, or a prefix ending in ``/*``), ``perm`` (``r`` or
``w``), ``exp`` (unix seconds, required) and optionally ``sub`` (the user id). Any backend in
any language can mint them with a shared secret; the server only verifies.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import jwt

from collab.protocol.wire import CloseCode

MAX_TOKEN_LENGTH = 4096
LEEWAY_SECONDS = 30
_KID = re.compile(r"[A-Za-z0-9_-]{1,16}")
DEFAULT_KID = "k1"


class TokenError(Exception):
    """``code`` is 4401 (missing, invalid or expired: get a new token) or 4403 (valid, but
    not for this document or this permission)."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Grant:
    doc: str
    perm: str
    expires_at: float
    subject: str | None = None

    @property
    def can_write(self) -> bool:
        return self.perm == "w"

    def covers(self, doc_id: str) -> bool:
        if self.doc.endswith("/*"):
            return doc_id.startswith(self.doc[:-1])
        return self.doc == "*" or doc_id == self.doc


def parse_key(text: str) -> tuple[str, bytes]:
    """``kid:secret`` or a bare secret (key id ``k1``); secrets need at least 32 bytes."""
    kid, sep, secret = text.partition(":")
    if not sep or not _KID.fullmatch(kid):
        kid, secret = DEFAULT_KID, text
    raw = secret.encode()
    if len(raw) < 32:
        raise ValueError(f"auth key {kid!r} is shorter than 32 bytes")
    return kid, raw


def mint(
    key: tuple[str, bytes],
    doc: str,
    perm: str,
    ttl_seconds: float,
    subject: str | None = None,
    now: float | None = None,
) -> str:
    if perm not in ("r", "w"):
        raise ValueError("perm must be 'r' or 'w'")
    kid, secret = key
    claims: dict[str, object] = {
        "doc": doc,
        "perm": perm,
        "exp": int((now if now is not None else time.time()) + ttl_seconds),
    }
    if subject is not None:
        claims["sub"] = subject
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})


class TokenVerifier:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._keys = dict(keys)

    def verify(self, token: str | None, now: float | None = None) -> Grant:
        """Check signature, expiry and claim shapes; raise TokenError(4401) otherwise."""
        if not token:
            raise TokenError(CloseCode.UNAUTHORIZED, "missing token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError(CloseCode.UNAUTHORIZED, "token too long")
        try:
            kid = jwt.get_unverified_header(token).get("kid", DEFAULT_KID)
            secret = self._keys.get(kid) if isinstance(kid, str) else None
            if secret is None:
                raise TokenError(CloseCode.UNAUTHORIZED, "unknown token key id")
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                options={"require": ["exp", "doc", "perm"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(CloseCode.UNAUTHORIZED, "invalid token") from exc
        doc, perm, exp, sub = claims["doc"], claims["perm"], claims["exp"], claims.get("sub")
        if not isinstance(doc, str) or perm not in ("r", "w") or type(exp) not in (int, float):
            raise TokenError(CloseCode.UNAUTHORIZED, "invalid token claims")
        if sub is not None and not isinstance(sub, str):
            raise TokenError(CloseCode.UNAUTHORIZED, "invalid token claims")
        if exp < (now if now is not None else time.time()) - LEEWAY_SECONDS:
            raise TokenError(CloseCode.UNAUTHORIZED, "token expired")
        return Grant(doc, perm, float(exp), sub)

    def authorize(
        self, token: str | None, doc_id: str, write: bool = False, now: float | None = None
    ) -> Grant:
        """Verify ``token`` and check it covers ``doc_id`` (and writing, if asked)."""
        grant = self.verify(token, now)
        if not grant.covers(doc_id):
            raise TokenError(CloseCode.FORBIDDEN, "token does not grant this document")
        if write and not grant.can_write:
            raise TokenError(CloseCode.FORBIDDEN, "token is read-only")
        return grant
