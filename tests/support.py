"""Test helpers: a real server on 127.0.0.1 (in-process or as a subprocess) and a raw
y-websocket protocol client built on pycrdt and our strict codec."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import msgpack
from aiohttp import web
from pycrdt import Doc, Map, Text, TransactionEvent

from collab.protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)
from collab.protocol.wire import (
    AwarenessMessage,
    PermissionDenied,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncType,
    SyncUpdate,
    decode_message,
    encode_message,
    encode_sync,
    encode_update,
)
from collab.server.app import create_app
from collab.server.keys import ROOMS
from collab.server.listener import CollabSite
from collab.server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunningServer:
    url: str
    app: web.Application

    def ws_url(self, doc_id: str) -> str:
        return self.url.replace("http://", "ws://") + "/ws/" + doc_id

    async def wait_until_unloaded(self, doc_id: str, timeout: float = 2.0) -> None:
        """Until the document's room is evicted; TimeoutError if it stays loaded."""
        rooms = self.app[ROOMS]
        async with asyncio.timeout(timeout):
            while rooms.get(doc_id) is not None:
                await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[RunningServer]:
    """The real app on a real socket (127.0.0.1, ephemeral port), stopped gracefully."""
    app = create_app(replace(settings, host="127.0.0.1", port=0))
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    site = CollabSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", app)
    finally:
        await runner.cleanup()


class ServerProcess:
    """``collab serve`` as a child process, for restarts and kill -9."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "collab",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--data-dir",
                str(self.data_dir),
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"http://[\d.]+:\d+", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        self.url = match.group(0)
        return self

    def ws_url(self, doc_id: str) -> str:
        return self.url.replace("http://", "ws://") + "/ws/" + doc_id

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


class RawClient:
    """A minimal y-websocket peer: answers step1, applies updates, tracks awareness."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        client_id: int | None = None,
        compress: int = 0,
    ):
        self._session = session
        self.url = url
        self._compress = compress  # permessage-deflate window bits to offer; 0: none
        self.doc = Doc(client_id=client_id) if client_id is not None else Doc()
        # unobserved in close(): pycrdt observers keep their Doc alive otherwise
        self._subscription = self.doc.observe(self._on_local_change)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.synced = asyncio.Event()
        self.received: list[bytes] = []
        self.awareness: dict[int, AwarenessEntry] = {}
        self.denied: list[str] = []
        self._step2_waiters: list[asyncio.Future[None]] = []
        self._applying = False
        self._reader: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.close_code: int | None = None

    async def connect(self, send_step1: bool = True) -> RawClient:
        self.ws = await self._session.ws_connect(self.url, max_msg_size=0, compress=self._compress)
        self._reader = asyncio.create_task(self._read())
        self._sender = asyncio.create_task(self._send_loop())
        if send_step1:
            await self.send(encode_sync(SyncType.STEP1, self.doc.get_state()))
        return self

    def _on_local_change(self, event: TransactionEvent) -> None:
        if not self._applying:
            self._outbox.put_nowait(encode_update(event.update))

    async def _send_loop(self) -> None:
        assert self.ws is not None
        while True:
            data = await self._outbox.get()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_bytes(data)

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.BINARY:
                break
            self.received.append(msg.data)
            message = decode_message(msg.data)
            match message:
                case SyncStep1(sv):
                    await self.send(encode_sync(SyncType.STEP2, self.doc.get_update(sv)))
                case SyncStep2(update) | SyncUpdate(update):
                    self._apply(update)
                    if isinstance(message, SyncStep2):
                        self.synced.set()
                        waiters, self._step2_waiters = self._step2_waiters, []
                        for waiter in waiters:
                            if not waiter.done():
                                waiter.set_result(None)
                case AwarenessMessage(payload):
                    for entry in decode_awareness_update(payload, 1 << 20):
                        if entry.state is None:
                            self.awareness.pop(entry.client_id, None)
                        else:
                            self.awareness[entry.client_id] = entry
                case PermissionDenied(reason):
                    self.denied.append(reason)
                case QueryAwareness():
                    pass
            async with self._changed:
                self._changed.notify_all()
        self.close_code = self.ws.close_code
        if self._sender is not None:
            self._sender.cancel()
        async with self._changed:
            self._changed.notify_all()

    def _apply(self, update: bytes) -> None:
        self._applying = True
        try:
            self.doc.apply_update(update)
        finally:
            self._applying = False

    async def send(self, data: bytes) -> None:
        """Queue a frame behind every local update already queued (order is kept)."""
        self._outbox.put_nowait(data)

    async def flush(self, timeout: float = 10) -> None:
        """Send step1 and wait for the step2 reply: the server's durability barrier."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._step2_waiters.append(waiter)
        await self.send(encode_sync(SyncType.STEP1, self.doc.get_state()))
        await asyncio.wait_for(waiter, timeout)

    async def set_awareness(self, clock: int, state: str | None) -> None:
        entry = AwarenessEntry(self.doc.client_id, clock, state)
        await self.send(encode_message(AwarenessMessage(encode_awareness_update([entry]))))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(wait(), timeout)

    async def wait_closed(self, timeout: float = 10) -> int | None:
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    def text(self, name: str = "content") -> Text:
        return self.doc.get(name, type=Text)

    def map(self, name: str) -> Map:
        return self.doc.get(name, type=Map)

    async def close(self) -> None:
        if self._subscription is not None:
            self.doc.unobserve(self._subscription)
            self._subscription = None
        if self._sender is not None:
            while not self._outbox.empty() and not self._sender.done():
                await asyncio.sleep(0.01)
            self._sender.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader


class LongPollClient:
    """Raw YLP/1 requests, so tests can replay, lose and reorder them at will."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._http = session
        self.base = base_url
        self.sid = ""
        self.info: dict = {}

    async def open(self, doc_id: str) -> LongPollClient:
        async with self._http.post(f"{self.base}/lp/open", params={"doc": doc_id}) as resp:
            assert resp.status == 200, await resp.text()
            self.info = await resp.json()
        self.sid = self.info["sid"]
        return self

    async def poll(self, ack: int) -> tuple[int, tuple[int, list[bytes]] | dict | bytes]:
        async with self._http.get(f"{self.base}/lp/{self.sid}/poll", params={"ack": ack}) as resp:
            return resp.status, _decode_body(resp.content_type, await resp.read())

    async def send(self, first_useq: int, frames: list[bytes]):
        body = msgpack.packb([first_useq, frames], use_bin_type=True)
        async with self._http.post(f"{self.base}/lp/{self.sid}/send", data=body) as resp:
            return resp.status, _decode_body(resp.content_type, await resp.read())

    async def close(self) -> int:
        async with self._http.post(f"{self.base}/lp/{self.sid}/close") as resp:
            return resp.status


def _decode_body(content_type: str, body: bytes):
    if content_type == "application/msgpack":
        return msgpack.unpackb(body)
    if content_type == "application/json":
        return json.loads(body)
    return body


class LongPollPeer:
    """A y-websocket peer over YLP/1: polls, applies, answers step1, sends local updates."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, client_id: int | None = None):
        self.lp = LongPollClient(session, base_url)
        self.doc = Doc(client_id=client_id) if client_id is not None else Doc()
        # unobserved in close(): pycrdt observers keep their Doc alive otherwise
        self._subscription = self.doc.observe(self._on_local_change)
        self.synced = asyncio.Event()
        self.awareness: dict[int, AwarenessEntry] = {}
        self.closed_with: dict | None = None
        self._ack = 0
        self._useq = 0
        self._unacked: list[tuple[int, bytes]] = []
        self._applying = False
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox_changed = asyncio.Event()

    async def open(self, doc_id: str) -> LongPollPeer:
        await self.lp.open(doc_id)
        self.queue(encode_sync(SyncType.STEP1, self.doc.get_state()))
        self._tasks = [
            asyncio.create_task(self._poll_loop()),
            asyncio.create_task(self._send_loop()),
        ]
        await asyncio.wait_for(self.synced.wait(), 10)
        return self

    def text(self, name: str = "content") -> Text:
        return self.doc.get(name, type=Text)

    def queue(self, frame: bytes) -> None:
        self._useq += 1
        self._unacked.append((self._useq, frame))
        self._outbox_changed.set()

    def _on_local_change(self, event: TransactionEvent) -> None:
        if not self._applying:
            self.queue(encode_update(event.update))

    async def set_awareness(self, clock: int, state: str | None) -> None:
        entry = AwarenessEntry(self.doc.client_id, clock, state)
        self.queue(encode_message(AwarenessMessage(encode_awareness_update([entry]))))

    async def _send_loop(self) -> None:
        while True:
            await self._outbox_changed.wait()
            self._outbox_changed.clear()
            while self._unacked:
                status, body = await self.lp.send(
                    self._unacked[0][0], [f for _, f in self._unacked]
                )
                if status == 410:
                    self.closed_with = body
                    return
                acked = body[0]
                self._unacked = [(u, f) for u, f in self._unacked if u > acked]

    async def _poll_loop(self) -> None:
        while True:
            status, body = await self.lp.poll(self._ack)
            if status == 410:
                self.closed_with = body
                return
            if status != 200:
                continue
            first, frames = body
            for offset, frame in enumerate(frames):
                self._handle(frame)
                self._ack = first + offset

    def _handle(self, frame: bytes) -> None:
        match decode_message(frame):
            case SyncStep1(sv):
                self.queue(encode_sync(SyncType.STEP2, self.doc.get_update(sv)))
            case SyncStep2(update) | SyncUpdate(update) as message:
                self._applying = True
                try:
                    self.doc.apply_update(update)
                finally:
                    self._applying = False
                if isinstance(message, SyncStep2):
                    self.synced.set()
            case AwarenessMessage(payload):
                for entry in decode_awareness_update(payload, 1 << 20):
                    if entry.state is None:
                        self.awareness.pop(entry.client_id, None)
                    else:
                        self.awareness[entry.client_id] = entry

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._subscription is not None:
            self.doc.unobserve(self._subscription)
            self._subscription = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.lp.close()
