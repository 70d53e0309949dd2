"""Long-polling where WebSockets do not pass: the automatic fallback, and lost HTTP answers."""

from __future__ import annotations

import asyncio
import itertools
import re

from aiohttp import web

from collab.client import connect
from tests.client.helpers import HttpOnlyProxy
from tests.support import RawClient, RunningServer

MARKER = re.compile(r"<\d+>|\[\d+\]")


async def test_auto_falls_back_to_long_polling(server: RunningServer, http) -> None:
    proxy = await HttpOnlyProxy(server.url).start()
    try:
        async with connect(proxy.url, "fallback", user={"name": "bot"}) as s:
            await asyncio.wait_for(s.synced(), 15)
            assert s.transport == "longpoll"
            assert proxy.refused_upgrades == 2
            raw = await RawClient(http, server.ws_url("fallback")).connect()
            await raw.wait_for(lambda: s.client_id in raw.awareness)
            text = s.text()
            text += "over http"
            await raw.wait_for(lambda: str(raw.text()) == "over http")
            raw.text().insert(0, "> ")
            await s.wait_for(lambda: str(text) == "> over http", timeout=10)
            await raw.close()
    finally:
        await proxy.stop()


async def test_lost_answers_neither_lose_nor_duplicate_frames(server: RunningServer, http) -> None:
    counter = itertools.count()

    def lose(request: web.Request) -> bool:
        return request.path.endswith(("/send", "/poll")) and next(counter) % 3 == 1

    proxy = await HttpOnlyProxy(server.url, lose=lose).start()
    try:
        raw = await RawClient(http, server.ws_url("lossy")).connect()
        async with connect(proxy.url, "lossy", transport="longpoll") as s:
            await asyncio.wait_for(s.synced(), 15)
            text = s.text()
            for index in range(30):
                text += f"[{index}]"
                raw.text().insert(0, f"<{index}>")
                if index % 10 == 9:
                    await asyncio.wait_for(s.flush(), 15)
            # Both sides end up with every marker exactly once, in the same order (concurrent
            # inserts at one position are ordered by client id, so the order is not fixed).
            expected = sorted([f"<{i}>" for i in range(30)] + [f"[{i}]" for i in range(30)])
            await raw.wait_for(lambda: sorted(MARKER.findall(str(raw.text()))) == expected, 15)
            await s.wait_for(lambda: str(text) == str(raw.text()), timeout=15)
        await raw.close()
    finally:
        await proxy.stop()
    assert any("send" in lost for lost in proxy.lost)
    assert any("poll" in lost for lost in proxy.lost)
