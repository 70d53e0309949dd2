"""One-shot helpers for scripts: read a text, or apply an edit and know it is stored."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from collab.client.session import TransportName, connect
from collab.client.tokens import Token

T = TypeVar("T")


async def fetch_text(
    url: str,
    doc_id: str,
    name: str = "content",
    *,
    token: Token = None,
    transport: TransportName = "auto",
) -> str:
    """The current content of the Y.Text ``name`` (empty if the document does not exist)."""
    async with connect(url, doc_id, token=token, transport=transport) as session:
        await session.synced()
        return str(session.text(name))


async def apply(
    url: str,
    doc_id: str,
    fn: Callable[[Any], T | Awaitable[T]],
    *,
    token: Token = None,
    transport: TransportName = "auto",
    user: dict[str, Any] | None = None,
) -> T:
    """Sync, call ``fn(session)``, wait until the server stored its edits; return its result.

    A plain function runs in one transaction (its edits travel as one update); a coroutine
    function may await, e.g. to wait for other peers.
    """
    async with connect(url, doc_id, token=token, transport=transport, user=user) as session:
        await session.synced()
        if inspect.iscoroutinefunction(fn):
            result = await fn(session)
        else:
            with session.transaction():
                result = fn(session)
        await session.flush()
        return result  # type: ignore[return-value]
