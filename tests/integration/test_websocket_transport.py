"""The WebSocket layer itself, spoken byte by byte over real sockets: the handshake, frames,
the close handshake, deadlines, compression, and what an idle socket costs the server."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import struct
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest

from collab.protocol.frames import BINARY, CLOSE, CONTINUATION, PING, PONG
from collab.protocol.wire import SyncStep2, SyncType, decode_message, encode_sync
from collab.server import listener, websocket
from collab.server.settings import Settings
from tests.support import RawClient, RunningServer, running_server
from tests.unit.test_frames import client_frame

EMPTY_STEP1 = encode_sync(SyncType.STEP1, b"\x00")


def upgrade_head(doc_id: str, *extra: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET /ws/{doc_id} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawSocket:
    """A WebSocket client with nothing but a TCP stream: no task of its own."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: RunningServer, first_bytes: bytes = b"") -> RawSocket:
        port = int(server.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if first_bytes:
            writer.write(first_bytes)
        return cls(reader, writer)

    async def upgrade(self, doc_id: str, then: bytes = b"") -> None:
        self.writer.write(upgrade_head(doc_id) + then)
        status = await self.http_answer()
        assert status.startswith(b"HTTP/1.1 101 ")

    async def http_answer(self) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)

    def send(self, opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> None:
        self.writer.write(client_frame(opcode, payload, fin=fin, masked=masked))

    async def receive(self) -> tuple[int, bytes]:
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 5)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def receive_step2(self) -> SyncStep2:
        while True:
            message = decode_message(await self.receive_until(BINARY))
            if isinstance(message, SyncStep2):
                return message

    async def receive_until(self, opcode: int) -> bytes:
        while True:
            received, payload = await self.receive()
            if received == opcode:
                return payload

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def raw_server(settings: Settings) -> AsyncIterator[RunningServer]:
    async with running_server(replace(settings, idle_evict_seconds=0.2)) as server:
        yield server


def server_tasks() -> set[asyncio.Task]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_an_idle_websocket_costs_the_server_no_task(raw_server: RunningServer) -> None:
    before = len(server_tasks())
    sockets = [await RawSocket.open(raw_server) for _ in range(20)]
    for index, sock in enumerate(sockets):
        await sock.upgrade(f"idle/{index % 2}")
        sock.send(BINARY, EMPTY_STEP1)
        await sock.receive_step2()
    await asyncio.sleep(0.1)
    assert len(server_tasks()) == before
    for sock in sockets:
        sock.close()


async def test_ping_pong_fragments_and_frames_sent_with_the_upgrade(
    raw_server: RawSocket,
) -> None:
    sock = await RawSocket.open(raw_server)
    await sock.upgrade("frames", then=client_frame(PING, b"early"))
    assert await sock.receive_until(PONG) == b"early"
    sock.send(BINARY, EMPTY_STEP1[:2], fin=False)
    sock.send(PING, b"between")
    sock.send(CONTINUATION, EMPTY_STEP1[2:])
    assert await sock.receive_until(PONG) == b"between"
    await sock.receive_step2()
    sock.close()


async def test_the_close_handshake_echoes_the_peer_code_then_ends_tcp(
    raw_server: RunningServer,
) -> None:
    sock = await RawSocket.open(raw_server)
    await sock.upgrade("closing")
    sock.send(CLOSE, struct.pack("!H", 4000) + b"bye")
    assert struct.unpack("!H", (await sock.receive_until(CLOSE))[:2]) == (4000,)
    assert await sock.at_eof()
    await raw_server.wait_until_unloaded("closing", timeout=5)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(BINARY, EMPTY_STEP1, masked=False), 1002),
        (client_frame(0x1, b"hello"), 4400),
        (client_frame(BINARY, b"\x00\x00"), 4400),
    ],
    ids=["unmasked", "text", "truncated-message"],
)
async def test_broken_frames_get_a_close_code(
    raw_server: RunningServer, frame: bytes, code: int
) -> None:
    sock = await RawSocket.open(raw_server)
    await sock.upgrade("broken")
    sock.writer.write(frame)
    assert struct.unpack("!H", (await sock.receive_until(CLOSE))[:2]) == (code,)
    sock.close()


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /ws/doc HTTP/1.1\r\nHost: x\r\n\r\n", 426),
        (upgrade_head("doc", "X-Huge: " + "x" * 20_000), 431),
        (upgrade_head("doc", "Broken header"), 400),
    ],
    ids=["no-upgrade", "huge-head", "malformed"],
)
async def test_bad_upgrade_requests_get_an_http_error(
    raw_server: RunningServer, head: bytes, status: int
) -> None:
    sock = await RawSocket.open(raw_server, head)
    answer = await sock.http_answer()
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert "error" in json.loads(await sock.reader.read())
    sock.close()


async def test_connections_that_never_finish_their_handshake_are_dropped(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener, "HANDSHAKE_SECONDS", 0.3)
    monkeypatch.setattr(websocket, "HANDSHAKE_SECONDS", 0.3)
    monkeypatch.setattr(websocket, "_SWEEP_SECONDS", 0.1)
    async with running_server(settings) as server:
        silent = await RawSocket.open(server)
        half_sent = await RawSocket.open(server, b"GET /ws/slow HTTP/1.1\r\nHost: x\r\n")
        assert await silent.at_eof()
        assert await half_sent.at_eof()


async def test_an_upgrade_on_a_reused_http_connection_works_and_leaves_nothing(
    raw_server: RunningServer,
) -> None:
    """aiohttp's client sends the upgrade over a kept-alive connection, which aiohttp's
    server then parses instead of the listener."""
    before = len(server_tasks())
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(raw_server.url + "/healthz") as resp:
            assert resp.status == 200
        first = await RawClient(http, raw_server.ws_url("reused")).connect()
        second = await RawClient(aiohttp.ClientSession(), raw_server.ws_url("reused")).connect()
        await asyncio.wait_for(first.synced.wait(), 5)
        await asyncio.wait_for(second.synced.wait(), 5)
        first.text().insert(0, "over a reused connection")
        await second.wait_for(lambda: str(second.text()) == "over a reused connection")
        await first.close()
        await second.close()
        await second._session.close()
    await raw_server.wait_until_unloaded("reused", timeout=5)
    await asyncio.sleep(0.1)
    assert len(server_tasks()) <= before


async def test_compressed_websockets_sync_when_the_server_allows_them(settings: Settings) -> None:
    async with (
        running_server(replace(settings, ws_compress=True)) as server,
        aiohttp.ClientSession() as http,
    ):
        deflating = await RawClient(http, server.ws_url("zip"), compress=15).connect()
        plain = await RawClient(aiohttp.ClientSession(), server.ws_url("zip")).connect()
        await asyncio.wait_for(deflating.synced.wait(), 5)
        await asyncio.wait_for(plain.synced.wait(), 5)
        assert deflating.ws is not None and deflating.ws.compress == 15
        assert plain.ws is not None and plain.ws.compress == 0
        deflating.text().insert(0, "squeezed " * 50)
        await plain.wait_for(lambda: str(plain.text()) == "squeezed " * 50)
        plain.text().insert(0, "back: ")
        await deflating.wait_for(lambda: str(deflating.text()).startswith("back: squeezed"))
        await deflating.close()
        await plain.close()
        await plain._session.close()


async def test_random_bytes_after_the_upgrade_never_hurt_the_server_or_a_bystander(
    http: aiohttp.ClientSession, raw_server: RunningServer
) -> None:
    """Seeded: mangled frame headers, lengths, masks and opcodes, split at random points."""
    bystander = await RawClient(http, raw_server.ws_url("bystander")).connect()
    await asyncio.wait_for(bystander.synced.wait(), 5)
    rng = random.Random(6455)
    for _ in range(200):
        sock = await RawSocket.open(raw_server)
        await sock.upgrade("bystander")
        stream = bytearray(client_frame(rng.choice((BINARY, PING, 0x1)), rng.randbytes(40)))
        for _ in range(rng.randint(1, 6)):
            stream[rng.randrange(len(stream))] = rng.randrange(256)
        stream += rng.randbytes(rng.randint(0, 64))
        cut = rng.randint(0, len(stream))
        sock.writer.write(bytes(stream[:cut]))
        await asyncio.sleep(0)
        sock.writer.write(bytes(stream[cut:]))
        sock.close()
    async with http.get(raw_server.url + "/healthz") as resp:
        assert resp.status == 200
    bystander.text().insert(0, "still here")
    await bystander.flush()
    check = await RawClient(http, raw_server.ws_url("bystander")).connect()
    await check.wait_for(lambda: "still here" in str(check.text()))
    await check.close()
    await bystander.close()
