"""Crash safety: clients of every kind keep writing while the server is killed with SIGKILL
again and again; in the end every edit is there exactly once, on every client and on disk."""

from __future__ import annotations

import asyncio
import random
import re
import socket
from pathlib import Path

import aiohttp
import pytest
from pycrdt import Text

from collab.client import connect
from tests.support import LongPollPeer, RawClient, ServerProcess

KILLS = 5
MARKER = re.compile(r"<[a-z]+\d+\.\d+>")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def markers(text: str) -> list[str]:
    return MARKER.findall(text)


class Replica:
    """A WebSocket or long-poll peer that comes back after a crash with everything it had."""

    def __init__(self, kind: str, http: aiohttp.ClientSession) -> None:
        self.kind = kind
        self.http = http
        self.state = b""
        self.peer: RawClient | LongPollPeer | None = None
        self.written: list[str] = []

    async def attach(self, server: ServerProcess) -> None:
        if self.kind == "ws":
            peer = RawClient(self.http, server.ws_url("crash"))
            if self.state:
                peer.doc.apply_update(self.state)
            await peer.connect()
            await asyncio.wait_for(peer.synced.wait(), 15)
        else:
            peer = LongPollPeer(self.http, server.url)
            if self.state:
                peer.doc.apply_update(self.state)
            await peer.open("crash")
        self.peer = peer

    def write(self, marker: str) -> None:
        assert self.peer is not None
        text = self.peer.doc.get("content", type=Text)
        text.insert(len(text), marker)
        self.written.append(marker)
        self.state = self.peer.doc.get_update()

    async def detach(self) -> None:
        if self.peer is not None:
            self.state = self.peer.doc.get_update()
            task = asyncio.create_task(self.peer.close())
            await asyncio.wait({task}, timeout=2)
            self.peer = None


@pytest.mark.slow
async def test_every_edit_survives_repeated_kill_9(tmp_path: Path) -> None:
    rng = random.Random(7)
    port = free_port()

    def start() -> ServerProcess:
        return ServerProcess(tmp_path, "--port", str(port)).start()

    server = await asyncio.to_thread(start)
    sdk_written: list[str] = []
    async with aiohttp.ClientSession() as http:
        replicas = [Replica("ws", http), Replica("lp", http)]
        async with connect(server.url, "crash", transport="websocket") as session:
            await session.synced()
            for round_ in range(KILLS + 1):
                for replica in replicas:
                    await replica.attach(server)
                for index in range(rng.randint(20, 60)):
                    for replica in replicas:
                        replica.write(f"<{replica.kind}{round_}.{index}>")
                    marker = f"<sdk{round_}.{index}>"
                    text = session.text("content")
                    text.insert(len(text), marker)
                    sdk_written.append(marker)
                    await asyncio.sleep(rng.random() * 0.004)
                for replica in replicas:
                    await replica.detach()
                if round_ < KILLS:
                    await asyncio.to_thread(server.kill)  # at a random point of the flow
                    server = await asyncio.to_thread(start)
            await session.flush()
            for replica in replicas:  # the last reconnect re-sends what the kills cut off
                await replica.attach(server)
            expected = sorted(sdk_written + [m for r in replicas for m in r.written])
            for replica in replicas:
                assert replica.peer is not None
                await replica.peer.wait_for(
                    lambda r=replica: (
                        sorted(markers(str(r.peer.doc.get("content", type=Text)))) == expected
                    ),
                    timeout=30,
                )
            await _until(lambda: sorted(markers(str(session.text("content")))) == expected)
            for replica in replicas:
                await replica.detach()
    await asyncio.to_thread(server.stop)
    server = await asyncio.to_thread(start)  # and on disk, read by a fresh server
    try:
        async with aiohttp.ClientSession() as http:
            reader = await RawClient(http, server.ws_url("crash")).connect()
            await asyncio.wait_for(reader.synced.wait(), 15)
            assert sorted(markers(str(reader.text()))) == expected
            await reader.close()
    finally:
        await asyncio.to_thread(server.stop)
    assert len(set(expected)) == len(expected)  # none duplicated


async def _until(predicate, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)
