"""Restart under a reconnect storm: 500 SDK clients lose the server at once, come back with
jittered backoff when it restarts, and all resync; the server answers meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from collab.client import Session, connect
from tests.integration.test_crash_safety import free_port
from tests.support import ServerProcess

CLIENTS = 500
DOCS = 10


async def assert_responsive(http: aiohttp.ClientSession, url: str) -> None:
    """Answers a health check within 30 s: generous on a shared machine, never a hang."""
    async with http.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=30)) as resp:
        assert resp.status == 200


def marker(index: int, round_: int) -> str:
    return f"<c{index}.{round_}>"


def text_of(session: Session) -> str:
    return str(session.text())


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_500_clients_resync_after_a_restart(tmp_path: Path) -> None:
    port = free_port()
    extra = ("--port", str(port), "--connect-attempts-per-minute", "100000")
    server = await asyncio.to_thread(ServerProcess(tmp_path, *extra).start)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        sessions = [
            connect(server.url, f"storm/{index % DOCS}", transport="websocket", http=http)
            for index in range(CLIENTS)
        ]
        try:
            await asyncio.gather(*(session.start() for session in sessions))
            await asyncio.gather(*(session.synced() for session in sessions))
            for index, session in enumerate(sessions):
                session.text().insert(0, marker(index, 1))
            await asyncio.gather(*(session.flush() for session in sessions))

            await asyncio.to_thread(server.kill)  # every client loses its connection at once
            server = await asyncio.to_thread(ServerProcess(tmp_path, *extra).start)
            await assert_responsive(http, server.url)  # while the storm comes in

            for index, session in enumerate(sessions):  # written offline or just after
                session.text().insert(0, marker(index, 2))
            expected = {
                doc: {
                    marker(index, round_)
                    for index in range(doc, CLIENTS, DOCS)
                    for round_ in (1, 2)
                }
                for doc in range(DOCS)
            }

            def converged(index: int) -> bool:
                text = text_of(sessions[index])
                return all(text.count(m) == 1 for m in expected[index % DOCS])

            await asyncio.gather(
                *(
                    session.wait_for(lambda i=i: converged(i), 120)
                    for i, session in enumerate(sessions)
                )
            )
            await assert_responsive(http, server.url)
        finally:
            await asyncio.gather(*(session.close() for session in sessions))
            await asyncio.to_thread(server.stop)
