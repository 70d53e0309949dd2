"""The SDK against the real server over both transports, with a raw y-websocket peer."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
from pycrdt import Array

from collab.client import (
    Change,
    ChangeStream,
    PermanentCloseError,
    RootEvent,
    apply,
    connect,
    fetch_text,
)
from tests.client.helpers import free_port
from tests.support import RawClient, RunningServer, ServerProcess


async def raw_peer(http, url: str, client_id: int | None = None) -> RawClient:
    client = await RawClient(http, url, client_id=client_id).connect()
    await asyncio.wait_for(client.synced.wait(), 10)
    return client


async def next_change(stream: ChangeStream, accept: Callable[[Change], bool]) -> Change:
    async with asyncio.timeout(10):
        async for change in stream:
            if accept(change):
                return change
    raise AssertionError("the stream ended")


async def test_sync_and_edits_both_ways_name_their_author(
    server: RunningServer, http, transport: str
) -> None:
    raw = await raw_peer(http, server.ws_url("notes/a"), client_id=4242)
    await raw.set_awareness(1, json.dumps({"user": {"name": "ada"}}))
    raw.text().insert(0, "from raw\n")
    await raw.flush()
    async with connect(server.url, "notes/a", transport=transport, user={"name": "bot"}) as s:
        changes = s.changes()
        await asyncio.wait_for(s.synced(), 10)
        assert s.transport == transport
        text = s.text()
        assert str(text) == "from raw\n"
        initial = await next_change(changes, lambda change: True)
        assert initial.initial and initial.clients == {4242}

        text += "from bot\n"
        await raw.wait_for(lambda: str(raw.text()) == "from raw\nfrom bot\n")

        raw.text().insert(0, "!")
        change = await next_change(changes, lambda change: True)
        assert str(text) == "!from raw\nfrom bot\n"
        assert not change.initial
        assert change.clients == {4242}
        assert change.names == ["ada"]
        assert change.events == (RootEvent("content", (), delta=[{"insert": "!"}]),)
    await raw.close()


async def test_changes_report_maps_and_arrays(server: RunningServer, http, transport: str) -> None:
    raw = await raw_peer(http, server.ws_url("notes/roots"), client_id=7)
    async with connect(server.url, "notes/roots", transport=transport) as s:
        meta, items = s.map("meta"), s.array("items")
        changes = s.changes()
        await asyncio.wait_for(s.synced(), 10)
        with raw.doc.transaction():
            raw.map("meta")["count"] = 3
            raw.doc.get("items", type=Array).append("a")
        change = await next_change(changes, lambda change: not change.initial)
        events = {event.root: event for event in change.events}
        assert events["meta"].keys == {"count": {"action": "add", "newValue": 3.0}}
        assert events["items"].delta == [{"insert": ["a"]}]
        assert meta["count"] == 3.0  # JavaScript numbers: ints come back as floats
        assert items.to_py() == ["a"]
        assert change.clients == {7}
        assert change.users == {}  # the peer announced no presence
    await raw.close()


async def test_presence_both_ways(server: RunningServer, http, transport: str) -> None:
    watcher = await raw_peer(http, server.ws_url("notes/p"), client_id=11)
    leaver = await raw_peer(http, server.ws_url("notes/p"), client_id=12)
    async with connect(server.url, "notes/p", transport=transport, user={"name": "bot"}) as s:
        await asyncio.wait_for(s.synced(), 10)
        bot = s.client_id

        def bot_state() -> dict:
            entry = watcher.awareness.get(bot)
            return json.loads(entry.state) if entry and entry.state else {}

        await watcher.wait_for(lambda: bot_state() == {"user": {"name": "bot"}})
        s.presence.set({"status": "thinking"})
        await watcher.wait_for(lambda: bot_state().get("status") == "thinking")
        assert bot_state()["user"] == {"name": "bot"}

        await leaver.set_awareness(1, json.dumps({"user": {"name": "ada"}}))
        await s.wait_for(lambda: s.peers.get(12) == {"user": {"name": "ada"}}, timeout=10)
        await leaver.close()
        await s.wait_for(lambda: 12 not in s.peers, timeout=10)
    await watcher.wait_for(lambda: bot not in watcher.awareness)
    await watcher.close()


async def test_flush_then_kill_9_keeps_the_edit(http, tmp_path: Path, transport: str) -> None:
    server = await asyncio.to_thread(ServerProcess(tmp_path).start)
    try:
        async with connect(server.url, "durable", transport=transport) as s:
            await asyncio.wait_for(s.synced(), 10)
            text = s.text()
            for index in range(200):
                text += f"[{index}]"
            await s.flush()
            await asyncio.to_thread(server.kill)
    finally:
        if server.proc is not None and server.proc.poll() is None:
            await asyncio.to_thread(server.kill)
    server = await asyncio.to_thread(ServerProcess(tmp_path).start)
    try:
        assert await fetch_text(server.url, "durable") == "".join(f"[{i}]" for i in range(200))
    finally:
        await asyncio.to_thread(server.stop)


async def test_offline_edits_reach_others_after_a_restart(
    http, tmp_path: Path, transport: str
) -> None:
    port = str(free_port())
    server = await asyncio.to_thread(ServerProcess(tmp_path, "--port", port).start)
    try:
        async with connect(server.url, "offline", transport=transport) as s:
            await asyncio.wait_for(s.synced(), 10)
            text = s.text()
            text += "before "
            await s.flush()
            await asyncio.to_thread(server.stop)
            text += "offline"  # nobody hears it now
            server = await asyncio.to_thread(ServerProcess(tmp_path, "--port", port).start)
            # A long-poll session may not have noticed the outage yet: its next request gets
            # 410 (the restarted server does not know it) and it reconnects then.
            raw = await raw_peer(http, server.ws_url("offline"))
            await raw.wait_for(lambda: str(raw.text()) == "before offline", timeout=20)
            raw.text().insert(0, ">")
            await s.wait_for(lambda: str(text) == ">before offline", timeout=10)
            await raw.close()
    finally:
        await asyncio.to_thread(server.stop)


async def test_an_invalid_document_id_is_a_permanent_close(
    server: RunningServer, transport: str
) -> None:
    async with connect(server.url, "bad doc!", transport=transport) as s:
        with pytest.raises(PermanentCloseError) as raised:
            await asyncio.wait_for(s.synced(), 10)
        with pytest.raises(PermanentCloseError):
            await s.flush()
    assert raised.value.code == 4400
    assert "document id" in raised.value.reason


async def test_an_unobserved_permanent_close_is_raised_on_exit(server: RunningServer) -> None:
    with pytest.raises(PermanentCloseError) as raised:
        async with connect(server.url, "a/../b"):
            await asyncio.sleep(1)  # the refusal arrives meanwhile; nobody asks for it
    assert raised.value.code == 4400


async def test_changes_end_with_the_permanent_close(server: RunningServer) -> None:
    async with connect(server.url, "a//b") as s:
        with pytest.raises(PermanentCloseError):
            async for _ in s.changes():
                pass


async def test_one_shot_helpers(server: RunningServer) -> None:
    def edit(session) -> str:
        session.text().insert(0, "hé😀 world")
        session.map("meta")["n"] = 3
        return "done"

    assert await apply(server.url, "one/shot", edit) == "done"
    assert await fetch_text(server.url, "one/shot") == "hé😀 world"
    assert await fetch_text(server.url, "one/shot", name="other") == ""
    async with connect(server.url, "one/shot") as s:
        await s.synced()
        assert s.map("meta").to_py() == {"n": 3.0}


async def test_a_closed_session_releases_its_document(server) -> None:
    async with connect(server.url, "released", transport="websocket") as session:
        await session.synced()
        session.text("content").insert(0, "x")
        await session.flush()
        doc = weakref.ref(session.doc)
    del session
    gc.collect()
    assert doc() is None, "the session's document is still in memory"
