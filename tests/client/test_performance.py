"""Figures for the SDK (run with ``-m slow -s`` to see them): how many updates one session
pushes with a flush() every 100 updates, and how much memory a synced session costs. The
server runs in its own process, so the figures are the client's. The asserted floors are
deliberately loose: they catch regressions by an order of magnitude, not noise."""

from __future__ import annotations

import asyncio
import gc
import resource
import time
import tracemalloc
from pathlib import Path

import aiohttp
import pytest

from collab.client import Session, connect
from tests.support import ServerProcess

UPDATES = 5_000
SESSIONS = 100


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


@pytest.fixture
def server_process(tmp_path: Path):
    server = ServerProcess(tmp_path).start()
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["websocket", "longpoll"])
async def test_updates_per_second_with_a_flush_every_100(
    server_process: ServerProcess, transport: str
) -> None:
    async with connect(server_process.url, f"bench/{transport}", transport=transport) as s:
        await asyncio.wait_for(s.synced(), 10)
        text = s.text()
        started = time.perf_counter()
        for index in range(UPDATES):
            text += "x"  # one update each
            if index % 100 == 99:
                await s.flush()
        elapsed = time.perf_counter() - started
    rate = UPDATES / elapsed
    print(f"\n{transport}: {UPDATES} updates, flush every 100: {rate:,.0f} updates/s")
    assert rate > 200


@pytest.mark.slow
@pytest.mark.parametrize("shared_http", [False, True], ids=["own-http", "shared-http"])
@pytest.mark.parametrize("measure", ["rss", "tracemalloc"])
async def test_memory_per_session(
    server_process: ServerProcess, shared_http: bool, measure: str
) -> None:
    """RSS counts everything (pycrdt's Rust heap too); tracemalloc only Python objects, and
    inflates RSS by its own bookkeeping, hence two separate runs."""
    http = aiohttp.ClientSession() if shared_http else None
    sessions: list[Session] = []
    gc.collect()
    if measure == "tracemalloc":
        tracemalloc.start()
    before = rss_bytes()
    try:
        for index in range(SESSIONS):
            session = connect(
                server_process.url, f"mem/{index % 10}", user={"name": f"bot {index}"}, http=http
            )
            await session.start()
            sessions.append(session)
        await asyncio.wait_for(asyncio.gather(*(s.synced() for s in sessions)), 60)
        await asyncio.sleep(0.5)  # the presence of all the others has arrived
        gc.collect()
        if measure == "tracemalloc":
            used, _ = tracemalloc.get_traced_memory()
        else:
            used = rss_bytes() - before
    finally:
        tracemalloc.stop()
        await asyncio.gather(*(s.close() for s in sessions))
        if http is not None:
            await http.close()
    label = "shared aiohttp session" if shared_http else "one aiohttp session each"
    print(f"\n{SESSIONS} synced sessions, {label}: {measure} {used / SESSIONS / 1024:.0f} KiB each")
    assert used / SESSIONS < 1024 * 1024
