"""`collab serve --workers N`: several processes on one port behave as one server."""

from __future__ import annotations

import asyncio
import secrets
import socket
from pathlib import Path

import aiohttp
import pytest

from tests.integration.test_cluster import REDIS_URL
from tests.support import LongPollPeer, RawClient, ServerProcess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
async def test_workers_share_documents_and_route_long_poll_sessions(tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(
        tmp_path, "--workers", "3", "--redis-url", REDIS_URL,
        "--redis-prefix", f"test-{secrets.token_hex(4)}", "--port", str(port),
    )  # fmt: skip
    await asyncio.to_thread(server.start)
    # A new TCP connection per request: the kernel spreads them over the workers.
    fresh = aiohttp.TCPConnector(force_close=True)
    try:
        async with aiohttp.ClientSession(connector=fresh) as http:
            writers = [await RawClient(http, server.ws_url("shared")).connect() for _ in range(6)]
            for index, writer in enumerate(writers):
                await asyncio.wait_for(writer.synced.wait(), 10)
                writer.text().insert(0, f"<{index}>")
            polled = [await LongPollPeer(http, server.url).open("shared") for _ in range(12)]
            nodes = {peer.lp.sid.partition(".")[0] for peer in polled}
            assert len(nodes) >= 2, "sessions should land on several workers"
            expected_length = sum(len(f"<{i}>") for i in range(6))
            for peer in polled:  # every poll and send may reach another worker: routed
                await peer.wait_for(lambda p=peer: len(str(p.text())) == expected_length, 20)
            polled[0].text().insert(0, "LP!")
            for writer in writers:
                await writer.wait_for(lambda w=writer: str(w.text()).startswith("LP!"), 20)
            for peer in polled:
                await peer.close()
            for writer in writers:
                await writer.close()
    finally:
        assert await asyncio.to_thread(server.stop) == 0
