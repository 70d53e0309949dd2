"""Tokens from the SDK: ``?token=`` on WebSocket, ``Authorization: Bearer`` on long-poll, a
provider asked again when the server closes with 4401, read-only sessions told at flush()."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from collab.client import PermanentCloseError, PermissionDeniedError, connect, fetch_text
from collab.protocol.tokens import mint, parse_key
from collab.server.settings import Settings
from tests.support import RunningServer, running_server

KEY = "k1:" + "s" * 40


def token(doc: str, perm: str = "w", ttl: float = 600) -> str:
    return mint(parse_key(KEY), doc, perm, ttl)


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    async with running_server(replace(settings, auth_keys=(KEY,))) as running:
        yield running


async def test_a_token_opens_the_document(server: RunningServer, transport: str) -> None:
    async with connect(server.url, "secret", token=token("secret"), transport=transport) as s:
        await asyncio.wait_for(s.synced(), 10)
        text = s.text()
        text += "hello"
        await s.flush()
    assert await fetch_text(server.url, "secret", token=token("secret", "r")) == "hello"


@pytest.mark.parametrize(("tok", "code"), [(None, 4401), ("garbage", 4401), (token("other"), 4403)])
async def test_refused_tokens_raise(
    server: RunningServer, transport: str, tok: str | None, code: int
) -> None:
    with pytest.raises(PermanentCloseError) as raised:
        await fetch_text(server.url, "secret", token=tok, transport=transport)
    assert raised.value.code == code


async def test_a_fresh_token_refused_ends_the_session(
    server: RunningServer, transport: str
) -> None:
    calls = []

    def provider() -> str:
        calls.append(1)
        return "garbage"

    with pytest.raises(PermanentCloseError) as raised:
        await fetch_text(server.url, "secret", token=provider, transport=transport)
    assert raised.value.code == 4401
    assert len(calls) == 1  # not asked in a loop


async def test_the_provider_is_asked_again_after_the_token_expires(
    server: RunningServer, transport: str
) -> None:
    issued: list[float] = []

    async def provider() -> str:
        issued.append(1.0 if not issued else 600.0)
        return token("renewed", ttl=issued[-1])

    async with connect(server.url, "renewed", token=provider, transport=transport) as s:
        await asyncio.wait_for(s.synced(), 10)
        # The server closes with 4401 when the first token expires, one second in.
        await s.wait_for(lambda: len(issued) == 2 and s.is_synced, timeout=10)
        text = s.text()
        text += "still here"
        await s.flush()
    assert await fetch_text(server.url, "renewed", token=token("renewed")) == "still here"


async def test_flush_tells_a_read_only_session(server: RunningServer, transport: str) -> None:
    async with connect(server.url, "ro", token=token("ro", "r"), transport=transport) as s:
        await asyncio.wait_for(s.synced(), 10)
        text = s.text()
        text += "not allowed"
        with pytest.raises(PermissionDeniedError) as raised:
            await s.flush()
    assert raised.value.reason == "read-only"
    assert await fetch_text(server.url, "ro", token=token("ro")) == ""
