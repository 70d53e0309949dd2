"""Every limit triggers its own close code or status, with a reason."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import aiohttp
import pytest

from collab.protocol.awareness import AwarenessEntry, encode_awareness_update
from collab.protocol.wire import AwarenessMessage, CloseCode, encode_message
from collab.server.keys import STORE
from collab.server.settings import Settings
from tests.support import RawClient, running_server


async def close_of(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return msg.data, msg.extra
        if msg.type is not aiohttp.WSMsgType.BINARY:
            return ws.close_code or 0, ""


async def synced(http, server, doc_id: str = "doc") -> RawClient:
    client = await RawClient(http, server.ws_url(doc_id)).connect()
    await asyncio.wait_for(client.synced.wait(), 10)
    return client


async def test_document_size_limit_closes_with_4413(http, settings: Settings) -> None:
    async with running_server(replace(settings, max_document_bytes=2000)) as server:
        writer = await synced(http, server)
        writer.text().insert(0, "x" * 500)
        await writer.flush()
        writer.text().insert(0, "y" * 3000)
        assert await writer.wait_closed() == CloseCode.TOO_LARGE
        reader = await synced(http, server)
        assert str(reader.text()) == "x" * 500
        await reader.close()


async def test_connections_per_document_are_capped_with_4503(http, settings) -> None:
    async with running_server(replace(settings, max_connections_per_document=2)) as server:
        first, second = await synced(http, server), await synced(http, server)
        ws = await http.ws_connect(server.ws_url("doc"))
        code, reason = await close_of(ws)
        assert code == CloseCode.OVER_CAPACITY and "document" in reason
        other_doc = await synced(http, server, "other")  # other documents are unaffected
        for client in (first, second, other_doc):
            await client.close()


async def test_connections_per_server_are_capped_with_4503(http, settings) -> None:
    async with running_server(replace(settings, max_connections=2)) as server:
        first, second = await synced(http, server, "a"), await synced(http, server, "b")
        ws = await http.ws_connect(server.ws_url("c"))
        code, reason = await close_of(ws)
        assert code == CloseCode.OVER_CAPACITY and "server" in reason
        async with http.post(f"{server.url}/lp/open", params={"doc": "c"}) as resp:
            assert resp.status == 503 and (await resp.json())["code"] == 4503
        await first.close()
        await asyncio.sleep(0.05)
        third = await synced(http, server, "c")  # a freed slot is usable again
        for client in (second, third):
            await client.close()


async def test_connection_attempts_per_address_are_limited_with_429(http, settings) -> None:
    async with running_server(replace(settings, connect_attempts_per_minute=3)) as server:
        for _ in range(3):
            client = await synced(http, server)
            await client.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(server.ws_url("doc"))
        assert caught.value.status == 429
        async with http.post(f"{server.url}/lp/open", params={"doc": "doc"}) as resp:
            assert resp.status == 429 and (await resp.json())["error"]


@pytest.mark.parametrize(
    "limits",
    [{"messages_per_second": 20.0}, {"bytes_per_second": 2000.0}],
    ids=["messages", "bytes"],
)
async def test_sending_too_fast_closes_with_4529(http, settings, limits) -> None:
    async with running_server(replace(settings, **limits)) as server:
        writer = await synced(http, server)
        for index in range(200):
            writer.text().insert(0, f"{index:04d}" * 5)
        assert await writer.wait_closed() == CloseCode.RATE_LIMITED


async def test_oversized_presence_closes_with_4413(http, settings) -> None:
    async with running_server(replace(settings, max_awareness_state_bytes=100)) as server:
        ws = await http.ws_connect(server.ws_url("doc"))
        entry = AwarenessEntry(1, 1, '{"x":"' + "a" * 200 + '"}')
        await ws.send_bytes(encode_message(AwarenessMessage(encode_awareness_update([entry]))))
        code, reason = await close_of(ws)
        assert code == CloseCode.TOO_LARGE and "awareness" in reason


async def test_a_store_that_falls_behind_pauses_writers_instead_of_queueing(http, settings) -> None:
    slow_disk = replace(settings, max_store_backlog=50, busy_timeout_ms=20_000)
    async with running_server(slow_disk) as server:
        store = server.app[STORE]
        writer = await synced(http, server)
        reader = await synced(http, server)
        blocker = sqlite3.connect(settings.database_path, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # commits stall until it lets go
        try:
            for _ in range(500):
                writer.text().insert(0, "x")
            for _ in range(200):  # however loaded the machine, the backlog nears its cap
                if store.backlog >= 25:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            assert 25 <= store.backlog < 150  # the server stopped reading, not queueing 500
        finally:
            blocker.rollback()
            blocker.close()
        await writer.flush(timeout=30)
        await reader.wait_for(lambda: len(str(reader.text())) == 500, timeout=30)
        assert store.backlog == 0
        await writer.close()
        await reader.close()
