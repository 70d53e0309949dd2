"""The WebSocket endpoint, spoken to by raw protocol clients over real sockets."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import weakref
from dataclasses import replace

import aiohttp
import pytest
from pycrdt import Doc, Text

from collab.protocol.awareness import encode_awareness_update
from collab.protocol.wire import (
    KEEP_ALIVE,
    AwarenessMessage,
    CloseCode,
    QueryAwareness,
    SyncStep1,
    SyncType,
    SyncUpdate,
    decode_message,
    encode_message,
    encode_sync,
    encode_update,
)
from collab.server.keys import ROOMS, STORE
from collab.server.settings import Settings
from tests.support import RawClient, RunningServer, running_server


async def connected(http, server: RunningServer, doc_id: str = "doc", **kw) -> RawClient:
    client = await RawClient(http, server.ws_url(doc_id), **kw).connect()
    await asyncio.wait_for(client.synced.wait(), 10)
    return client


def updates_of(client: RawClient) -> list[bytes]:
    return [m for m in client.received if m[:2] == b"\x00\x02"]


async def log_count(server: RunningServer, doc_id: str) -> int:
    info = await server.app[STORE].info(doc_id)
    return 0 if info is None else info.log_count


async def test_server_greets_with_step1_and_answers_step1_with_step2(http, server) -> None:
    client = await RawClient(http, server.ws_url("greet")).connect(send_step1=False)
    await client.wait_for(lambda: len(client.received) >= 1)
    assert decode_message(client.received[0]) == SyncStep1(b"\x00")
    await client.send(encode_sync(SyncType.STEP1, b"\x00"))
    await asyncio.wait_for(client.synced.wait(), 5)
    await client.close()


async def test_concurrent_edits_converge(http, server) -> None:
    clients = [await connected(http, server) for _ in range(3)]
    for round_ in range(5):
        for index, client in enumerate(clients):
            text = client.text()
            text.insert(len(text) // 2, f"<{index}.{round_}>")
            client.map("meta")[f"k{index}"] = round_
    expected_length = 3 * 5 * len("<0.0>")
    for client in clients:
        await client.wait_for(lambda c=client: len(str(c.text())) == expected_length)
    texts = {str(client.text()) for client in clients}
    maps = [client.map("meta").to_py() for client in clients]
    assert len(texts) == 1
    assert maps[0] == maps[1] == maps[2] == {"k0": 4.0, "k1": 4.0, "k2": 4.0}
    for client in clients:
        await client.close()


async def test_late_joiner_gets_the_whole_document(http, server) -> None:
    writer = await connected(http, server)
    writer.text().insert(0, "written before you came")
    await writer.flush()
    await writer.close()
    late = await connected(http, server)
    assert str(late.text()) == "written before you came"
    await late.close()


async def test_an_update_is_broadcast_once_to_others_and_not_echoed(http, server) -> None:
    a, b = await connected(http, server), await connected(http, server)
    a.text().insert(0, "x")
    await b.wait_for(lambda: str(b.text()) == "x")
    await a.flush()
    assert updates_of(a) == []
    assert len(updates_of(b)) == 1
    await a.close()
    await b.close()


async def test_duplicate_and_empty_updates_are_neither_stored_nor_broadcast(http, server) -> None:
    a, b = await connected(http, server, "dups"), await connected(http, server, "dups")
    a.text().insert(0, "once")
    await a.flush()
    update = a.doc.get_update()
    for _ in range(3):
        await a.send(encode_update(update))
        await a.send(encode_sync(SyncType.STEP2, update))
        await a.send(encode_update(b"\x00\x00"))
    await a.flush()
    await b.flush()
    assert str(b.text()) == "once"
    assert len(updates_of(b)) == 1
    assert await log_count(server, "dups") == 1
    await a.close()
    await b.close()


async def test_read_your_writes_after_reconnect(http, server) -> None:
    a = await connected(http, server)
    a.text().insert(0, "mine")
    await a.flush()
    await a.close()
    again = await connected(http, server)
    assert str(again.text()) == "mine"
    await again.close()


async def test_offline_edits_are_sent_in_step2_on_reconnect(http, server) -> None:
    peer = await connected(http, server)
    offline = RawClient(http, server.ws_url("doc"))
    offline.text().insert(0, "typed offline")
    await offline.connect()
    await peer.wait_for(lambda: str(peer.text()) == "typed offline")
    await offline.close()
    await peer.close()


async def test_awareness_is_shared_updated_and_removed_on_close(http, server) -> None:
    a, b = await connected(http, server, client_id=101), await connected(http, server)
    await a.set_awareness(1, '{"user":{"name":"Zoë"}}')
    await b.wait_for(lambda: 101 in b.awareness)
    await a.wait_for(lambda: 101 in a.awareness)  # echoed to the sender: keeps it alive
    await a.set_awareness(2, '{"cursor":5}')
    await b.wait_for(lambda: b.awareness[101].clock == 2)
    c = await connected(http, server)
    await c.wait_for(lambda: 101 in c.awareness)  # a new joiner sees existing presence
    await a.close()
    await b.wait_for(lambda: 101 not in b.awareness)
    await c.wait_for(lambda: 101 not in c.awareness)
    await b.close()
    await c.close()


async def test_awareness_echoes_are_not_relayed(http, server) -> None:
    a, b = await connected(http, server, client_id=1), await connected(http, server, client_id=2)
    await a.set_awareness(1, '{"n":"a"}')
    await b.set_awareness(1, '{"n":"b"}')
    await a.wait_for(lambda: 2 in a.awareness)
    await b.wait_for(lambda: 1 in b.awareness)
    before = len(a.received)
    # B echoes A's state back, as every y-websocket client does: nobody hears about it.
    entry = b.awareness[1]
    await b.send(encode_message(AwarenessMessage(encode_awareness_update([entry]))))
    await b.flush()
    await a.flush()
    awareness_after = [m for m in a.received[before:] if m[0] == 1]
    assert awareness_after == []
    await a.close()
    await b.close()


async def test_query_awareness_is_answered_with_all_states(http, server) -> None:
    a, b = await connected(http, server, client_id=7), await connected(http, server)
    await a.set_awareness(3, '{"n":1}')
    await b.wait_for(lambda: 7 in b.awareness)
    b.awareness.clear()
    await b.send(encode_message(QueryAwareness()))
    await b.wait_for(lambda: 7 in b.awareness)
    await a.close()
    await b.close()


async def test_keep_alive_is_sent_after_silence(http, settings) -> None:
    async with running_server(replace(settings, keepalive_seconds=0.2)) as server:
        client = await connected(http, server)
        await client.wait_for(lambda: KEEP_ALIVE in client.received, timeout=5)
        await client.close()


async def expect_close(http, url: str, frame: bytes | str | None, code: int) -> None:
    ws = await http.ws_connect(url)
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    elif isinstance(frame, str):
        await ws.send_str(frame)
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            break
    # the code of the server's close frame (ws.close_code turns 1006 when the server drops
    # the connection before the client's close reply got out)
    received = msg.data if msg.type is aiohttp.WSMsgType.CLOSE else ws.close_code
    assert received == code, (received, msg.extra)
    assert msg.extra, "a close reason is given"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x09", CloseCode.BAD_REQUEST),  # unknown message type
        (b"\x00\x00\x05\x00", CloseCode.BAD_REQUEST),  # length beyond the frame
        (b"\x00\x02\x02\xff\xff", CloseCode.BAD_REQUEST),  # not a Yjs update
        (b"\x00\x00\x02\xff\xff", CloseCode.BAD_REQUEST),  # not a state vector
        (b"\x01\x05\x01\x01\x01\x01{", CloseCode.BAD_REQUEST),  # awareness JSON broken
        (b"\x02\x00\x00", CloseCode.BAD_REQUEST),  # auth travels server -> client only
        ("text", CloseCode.BAD_REQUEST),
    ],
    ids=["type", "length", "update", "state-vector", "awareness", "auth", "text"],
)
async def test_bad_frames_close_only_that_connection(http, server, frame, code) -> None:
    bystander = await connected(http, server)
    bystander.text().insert(0, "safe")
    await bystander.flush()
    await expect_close(http, server.ws_url("doc"), frame, code)
    bystander.text().insert(4, "!")
    await bystander.flush()
    fresh = await connected(http, server)
    assert str(fresh.text()) == "safe!"
    await fresh.close()
    await bystander.close()


async def test_oversized_frames_close_with_4413(http, settings) -> None:
    async with running_server(replace(settings, max_message_bytes=1024)) as server:
        await expect_close(http, server.ws_url("doc"), b"\x00\x02" + bytes(4096), 4413)


@pytest.mark.parametrize("doc_id", ["a//b", "bad!", "x" * 256, "trailing/"])
async def test_bad_document_ids_close_with_4400(http, server, doc_id: str) -> None:
    await expect_close(http, server.ws_url(doc_id), None, CloseCode.BAD_REQUEST)


async def test_a_consumer_that_falls_behind_is_closed_with_1013(http, settings) -> None:
    async with running_server(replace(settings, send_queue_messages=5)) as server:
        writer = await connected(http, server)
        slow = await http.ws_connect(server.ws_url("doc"))  # never reads
        stats = server.app[ROOMS].stats
        for index in range(400):  # separate turns, so not merged; past the socket buffers
            writer.text().insert(0, str(index % 10) * 50_000)
            await writer.flush()
            if stats.closes[CloseCode.TRY_AGAIN_LATER]:
                break
        assert stats.closes[CloseCode.TRY_AGAIN_LATER] == 1
        # its socket buffers are full, so the close frame may not get through: then the
        # server drops the TCP connection
        assert await slow_close_code(slow) in (CloseCode.TRY_AGAIN_LATER, 1006)
        await writer.close()


async def test_a_burst_of_updates_reaches_readers_merged(http, server) -> None:
    writer = await connected(http, server, client_id=1)
    reader = await connected(http, server, client_id=2)
    for index in range(500):  # one write each, all in the server's socket buffer at once
        writer.text().insert(len(writer.text()), f"<{index}>")
    expected = "".join(f"<{index}>" for index in range(500))
    await reader.wait_for(lambda: str(reader.text()) == expected)
    assert len(updates_of(reader)) < 500
    await writer.close()
    await reader.close()


async def slow_close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The code of the close frame (the server may drop the TCP connection right after it)."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return msg.data
        if msg.type is not aiohttp.WSMsgType.BINARY:
            return ws.close_code


async def test_idle_documents_are_evicted_and_reload_identically(http, settings) -> None:
    async with running_server(replace(settings, idle_evict_seconds=0.1)) as server:
        rooms = server.app[ROOMS]
        client = await connected(http, server, "evict/me")
        client.text().insert(0, "kept")
        await client.close()
        for _ in range(100):
            if rooms.get("evict/me") is None:
                break
            await asyncio.sleep(0.05)
        assert rooms.get("evict/me") is None
        again = await connected(http, server, "evict/me")
        assert str(again.text()) == "kept"
        await again.close()


async def test_the_loaded_room_cap_evicts_idle_rooms_first(http, settings) -> None:
    async with running_server(replace(settings, max_rooms=2)) as server:
        rooms = server.app[ROOMS]
        active = await connected(http, server, "active")
        idle = await connected(http, server, "idle")
        idle.text().insert(0, "idle text")
        await idle.close()
        third = await connected(http, server, "third")
        assert rooms.get("idle") is None and len(rooms) == 2
        await expect_close(http, server.ws_url("fourth"), None, CloseCode.TRY_AGAIN_LATER)
        await third.close()
        back = await connected(http, server, "idle")
        assert str(back.text()) == "idle text"
        await back.close()
        await active.close()


async def test_a_store_failure_closes_the_documents_connections_with_1011(
    http, settings: Settings
) -> None:
    async with running_server(replace(settings, busy_timeout_ms=20)) as server:
        client = await connected(http, server, "locked")
        client.text().insert(0, "before")
        await client.flush()
        blocker = sqlite3.connect(settings.database_path, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            client.text().insert(0, "during ")
            assert await client.wait_closed() == CloseCode.INTERNAL_ERROR
        finally:
            blocker.rollback()
            blocker.close()
        again = await connected(http, server, "locked")
        assert str(again.text()) == "before"
        again.text().insert(0, "after ")
        await again.flush()
        await again.close()
    with sqlite3.connect(settings.database_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_graceful_shutdown_closes_with_1001_and_commits_pending_writes(
    http, settings: Settings
) -> None:
    async with running_server(settings) as server:
        client = await connected(http, server, "bye")
        watcher = await connected(http, server, "bye")
        for index in range(200):
            client.text().insert(0, str(index % 10))
        await watcher.wait_for(lambda: len(str(watcher.text())) == 200)  # applied, maybe unstored
    assert await client.wait_closed() == CloseCode.GOING_AWAY
    async with running_server(settings) as server:
        again = await connected(http, server, "bye")
        assert len(str(again.text())) == 200
        await again.close()


async def test_concurrent_first_connections_load_the_document_once(http, server) -> None:
    clients = await asyncio.gather(*(connected(http, server, "stampede") for _ in range(20)))
    assert server.app[ROOMS].loads == 1
    for client in clients:
        await client.close()


async def test_an_evicted_document_is_freed(http, settings) -> None:
    async with running_server(replace(settings, idle_evict_seconds=0.05)) as server:
        client = await connected(http, server, "freed")
        client.text().insert(0, "x")
        await client.flush()
        room = weakref.ref(server.app[ROOMS].get("freed"))
        await client.close()
        await server.wait_until_unloaded("freed")
        gc.collect()
        assert room() is None, "the evicted room (and its document) is still in memory"


@pytest.mark.timeout(20)
async def test_a_join_right_after_an_eviction_finished_loads_the_document_again(http, settings):
    """The soak found the server spinning forever: an eviction task had finished but the
    callback forgetting it had not run yet, and a join awaited the finished task in a loop."""
    async with running_server(replace(settings, idle_evict_seconds=0.05)) as server:
        rooms = server.app[ROOMS]
        for round_ in range(30):
            client = await connected(http, server, "churn")
            client.text().insert(0, "x")
            await client.flush()
            await client.close()
            await server.wait_until_unloaded("churn")
            # the eviction is done; its task may still sit in the bookkeeping
            finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            finished.set_result(None)
            rooms._evicting.setdefault("churn", finished)
            again = await asyncio.wait_for(connected(http, server, "churn"), 10)
            assert len(str(again.text())) == round_ + 1
            await again.close()
            rooms._evicting.pop("churn", None)


async def test_a_reader_that_fell_behind_gets_its_backlog_merged(http, server) -> None:
    writer = await connected(http, server, client_id=1)
    lagging = await http.ws_connect(server.ws_url("doc"), max_msg_size=0)  # not reading yet
    parts = [f"<{index}>" + "x" * 100_000 for index in range(150)]
    for part in parts:  # about one server turn each; far more than the socket buffers hold
        writer.text().insert(len(writer.text()), part)
        await asyncio.sleep(0.002)
    await writer.flush()
    doc, updates = Doc(), 0
    while str(doc.get("content", type=Text)) != "".join(parts):
        message = decode_message((await asyncio.wait_for(lagging.receive(), 10)).data)
        if isinstance(message, SyncUpdate):
            doc.apply_update(message.update)
            updates += 1
    assert updates < len(parts)
    await lagging.close()
    await writer.close()
