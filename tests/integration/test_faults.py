"""Faults around the server: a disk that refuses writes, consumers that stall or vanish."""

from __future__ import annotations

import asyncio
import resource
import socket
import sqlite3
from dataclasses import replace
from pathlib import Path

import aiohttp

from collab.protocol.wire import CloseCode
from collab.server.keys import ROOMS
from tests.support import RawClient, ServerProcess, running_server


async def synced(http, url: str, state: bytes | None = None) -> RawClient:
    client = RawClient(http, url)
    if state:
        client.doc.apply_update(state)  # a client that already holds edits (an offline replica)
    await client.connect()
    await asyncio.wait_for(client.synced.wait(), 10)
    return client


async def test_a_full_disk_closes_with_1011_and_nothing_acknowledged_is_lost(
    http, tmp_path: Path
) -> None:
    server = await asyncio.to_thread(ServerProcess(tmp_path).start)
    pid = server.proc.pid
    try:
        writer = await synced(http, server.ws_url("disk"))
        writer.text().insert(0, "acknowledged. ")
        await writer.flush()
        soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1024, hard))  # the disk is now "full"
        try:
            writer.text().insert(len(writer.text()), "written while full.")
            assert await writer.wait_closed(timeout=15) == CloseCode.INTERNAL_ERROR
            async with http.get(f"{server.url}/healthz") as resp:
                assert resp.status == 200  # the server stays up
            with sqlite3.connect(f"file:{tmp_path / 'collab.sqlite3'}?mode=ro", uri=True) as db:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))  # the fault clears
        replica = await synced(http, server.ws_url("disk"), writer.doc.get_update())
        await replica.flush()
        await replica.close()
        await asyncio.to_thread(server.stop)
        server = await asyncio.to_thread(ServerProcess(tmp_path).start)
        reader = await synced(http, server.ws_url("disk"))
        assert str(reader.text()) == "acknowledged. written while full."
        await reader.close()
    finally:
        await asyncio.to_thread(server.stop)
    with sqlite3.connect(tmp_path / "collab.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_a_consumer_that_never_reads_cannot_grow_server_memory(http, tmp_path) -> None:
    cap = 1 << 20
    server = await asyncio.to_thread(ServerProcess(tmp_path, "--send-queue-bytes", str(cap)).start)
    try:
        writer = await synced(http, server.ws_url("doc"))
        healthy = await synced(http, server.ws_url("doc"))
        # A raw socket that completes the handshake and then never reads a byte.
        host, port = server.url.removeprefix("http://").split(":")
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect((host, int(port)))
        stalled.sendall(
            b"GET /ws/doc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await asyncio.sleep(0.2)
        rss_before = _rss_bytes(server.proc.pid)
        chunk = "x" * 8192
        for index in range(2500):  # 40 MB flow through the room; the document stays small
            text = writer.text()
            if index % 2 == 0:
                text.insert(0, chunk)
            else:
                del text[0 : len(chunk)]
            # One update per turn: a turn's insertion and deletion would go out merged, tiny.
            await writer.flush()
        await healthy.flush()
        assert str(healthy.text()) == str(writer.text())  # everyone else was served
        growth = _rss_bytes(server.proc.pid) - rss_before
        assert growth < 24 * cap, f"server RSS grew by {growth / cap:.1f} MiB"
        async with http.get(f"{server.url}/metrics") as resp:
            assert 'collab_connection_closes_total{code="1013"} 1.0' in await resp.text()
        stalled.close()
        await writer.close()
        await healthy.close()
    finally:
        await asyncio.to_thread(server.stop)


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_half_open_connections_are_detected_by_heartbeats(http, settings) -> None:
    fast = replace(settings, ws_heartbeat_seconds=0.3)
    async with running_server(fast) as server:
        watcher = await synced(http, server.ws_url("doc"))
        ghost = await synced(http, server.ws_url("doc"))
        await ghost.set_awareness(1, '{"user":"ghost"}')
        await watcher.wait_for(lambda: ghost.doc.client_id in watcher.awareness)
        # Stop answering pings without closing: the peer's machine vanished.
        ghost._reader.cancel()
        transport = ghost.ws._response.connection.transport  # the raw socket, kept open
        transport.pause_reading()
        await watcher.wait_for(lambda: ghost.doc.client_id not in watcher.awareness, timeout=10)
        assert len(server.app[ROOMS].get("doc").connections) == 1
        transport.close()
        await watcher.close()


async def test_the_server_survives_a_client_dropping_mid_message(http, settings) -> None:
    async with running_server(settings) as server:
        host, port = server.url.removeprefix("http://").split(":")
        for _ in range(20):
            sock = socket.create_connection((host, int(port)))
            sock.sendall(
                b"GET /ws/doc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                b"\x82\xfe\x10\x00\x01\x02\x03\x04partial"  # a 4 KiB frame that never completes
            )
            sock.close()
        async with aiohttp.ClientSession() as fresh:
            client = await synced(fresh, server.ws_url("doc"))
            await client.close()
