"""Lean y-websocket peers for load generation: readers that only time frames, one Yjs writer.

Readers keep no CRDT: they decode each frame with the strict codec, count it and, when asked,
timestamp the updates they recognise. Recognition does not rely on ordering: every writer
update inserts a marker ``[#<writer>:<seq>]`` into the Y.Text, and a Yjs v1 update carries
inserted text verbatim, so a reader finds the markers in the payload even if a server merges
or re-encodes updates. The writer uses a real pycrdt Doc, so servers see genuine updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import msgpack
from pycrdt import Doc, Subscription, Text, TransactionEvent

from collab.protocol.wire import (
    EMPTY_UPDATE,
    AwarenessMessage,
    ProtocolError,
    SyncStep1,
    SyncStep2,
    SyncType,
    SyncUpdate,
    decode_message,
    encode_sync,
    encode_update,
)

TEXT_NAME = "content"  # the Y.Text the editor page binds to
EMPTY_STATE_VECTOR = b"\x00"
_MARKER = re.compile(rb"\[#(\d+):(\d+)\]")
_MARKER_PREFIX = b"[#"
_UPDATE_PREFIX = b"\x00\x02"  # message type sync, sync type update


def doc_url(base_url: str, doc_id: str) -> str:
    """Join like y-websocket's provider: ``serverUrl + '/' + room`` (trailing slashes cut)."""
    return base_url.rstrip("/") + "/" + doc_id


def new_session() -> aiohttp.ClientSession:
    """One session for every peer; aiohttp's default pool would cap us at 100 sockets."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))


@dataclass(slots=True)
class PeerStats:
    frames: int = 0
    bytes: int = 0
    updates: int = 0  # sync update frames (00 02)
    markers: int = 0  # writer updates recognised inside them
    echoes: int = 0  # a writer's own updates sent back to it (when counting markers)
    keepalives: int = 0
    duplicates: int = 0
    reordered: int = 0
    bad_frames: int = 0
    close_code: int | None = None
    closed_by_server: bool = False
    last_update_at: float = 0.0  # perf_counter of the latest update frame


@dataclass(slots=True)
class Arrivals:
    """Arrival time of each update of writer 0, by sequence number (NaN: not received)."""

    times: array = field(default_factory=lambda: array("d"))
    last_seq: int = -1

    @classmethod
    def expecting(cls, count: int) -> Arrivals:
        return cls(array("d", [math.nan]) * count)


class BasePeer:
    """What every bench peer shares, whatever the transport: counters, sync state, markers.

    ``handle`` processes one decoded frame and returns the frame to send back, if any; the
    server's step1 is answered with step2, like the stock client does, and ``synced`` is set
    when the server's step2 arrives. Frames the strict codec rejects are counted, not fatal.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.stats = PeerStats()
        self.synced = asyncio.Event()
        self.arrivals: Arrivals | None = None  # set by latency-measuring scenarios
        self.count_markers = False
        self.on_awareness: Callable[[bytes, float], None] | None = None  # presence scenario
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def state_vector(self) -> bytes:
        return EMPTY_STATE_VECTOR

    def update_for(self, state_vector: bytes) -> bytes:
        return EMPTY_UPDATE

    def on_step2(self, update: bytes) -> None:
        """Readers ignore document content; the convergence checker overrides this."""

    def handle(self, data: bytes, now: float) -> bytes | None:
        stats = self.stats
        stats.frames += 1
        stats.bytes += len(data)
        try:
            message = decode_message(data)
        except ProtocolError:
            stats.bad_frames += 1
            return None
        if type(message) is SyncUpdate:
            stats.updates += 1
            self._recognise(message.update, now)
        elif type(message) is AwarenessMessage:
            if message.payload == b"\x00":
                stats.keepalives += 1
            elif self.on_awareness is not None:
                self.on_awareness(message.payload, now)
        elif type(message) is SyncStep1:
            return encode_sync(SyncType.STEP2, self.update_for(message.state_vector))
        elif type(message) is SyncStep2:
            self.on_step2(message.update)
            self.synced.set()
        return None

    def _recognise(self, update: bytes, now: float) -> None:
        stats = self.stats
        stats.last_update_at = now
        arrivals = self.arrivals
        if arrivals is not None:
            times = arrivals.times
            for writer, digits in _MARKER.findall(update):
                stats.markers += 1
                seq = int(digits)
                if writer != b"0" or seq >= len(times):
                    continue
                if times[seq] != times[seq]:  # NaN: first arrival
                    times[seq] = now
                else:
                    stats.duplicates += 1
                if seq < arrivals.last_seq:
                    stats.reordered += 1
                else:
                    arrivals.last_seq = seq
        elif self.count_markers:
            stats.markers += update.count(_MARKER_PREFIX)

    async def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Peer(BasePeer):
    """One WebSocket connection speaking the y-websocket sync handshake."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, label: str) -> None:
        super().__init__(label)
        self.ws = ws

    @classmethod
    async def open(
        cls, session: aiohttp.ClientSession, url: str, label: str, **kwargs: int
    ) -> Peer:
        """Connect (the caller bounds the time) and start reading; call ``sync`` next."""
        ws = await session.ws_connect(url, max_msg_size=0, autoping=True)
        peer = cls(ws, label, **kwargs)
        peer.start()
        return peer

    @property
    def closed(self) -> bool:
        return self.ws.closed

    def start(self) -> None:
        self._task = asyncio.create_task(self._receive_loop(), name=f"bench {self.label}")

    async def sync(self, timeout: float) -> None:
        await self.ws.send_bytes(encode_sync(SyncType.STEP1, self.state_vector()))
        async with asyncio.timeout(timeout):
            await self.synced.wait()

    async def resync(self, timeout: float) -> float | None:
        """Seconds until a new step1 is answered (None: not within ``timeout``).

        Servers that make step2 a durability barrier (Collab does) answer only once this
        peer's updates are stored, so this shows how far the store lags behind.
        """
        self.synced.clear()
        started = time.perf_counter()
        try:
            await self.sync(timeout)
        except TimeoutError:
            return None
        return time.perf_counter() - started

    async def _receive_loop(self) -> None:
        ws = self.ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    if msg.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSING,
                        aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR,
                    ):
                        break
                    self.stats.bad_frames += 1
                    continue
                reply = self.handle(msg.data, time.perf_counter())
                if reply is not None:
                    await ws.send_bytes(reply)
        except (aiohttp.ClientError, ConnectionError):
            pass
        finally:
            self.stats.close_code = ws.close_code
            self.stats.closed_by_server = not self._closing  # a close frame or a dropped socket

    async def close(self) -> None:
        self._closing = True
        with contextlib.suppress(Exception):
            await self.ws.close()
        await self._stop_task()


class CountingReader(Peer):
    """A reader that only counts: update frames are recognised by their first two bytes and
    their writer markers counted with ``bytes.count``, without decoding them.

    A server that merges updates sends fewer frames carrying the same markers, so markers count
    delivered updates and frames count messages. Other frames (handshake, presence) are rare
    and go through the strict codec.
    """

    def handle(self, data: bytes, now: float) -> bytes | None:
        if data[:2] != _UPDATE_PREFIX:
            return super().handle(data, now)
        stats = self.stats
        stats.frames += 1
        stats.bytes += len(data)
        stats.updates += 1
        stats.markers += data.count(_MARKER_PREFIX)
        stats.last_update_at = now
        return None


class LongPollReader(BasePeer):
    """A reader over YLP/1 (Collab's long-poll transport): one poll loop, sends on demand.

    ``url`` is the session-open URL, ``http://HOST:PORT/lp/open?doc=ID``. Frames are the
    WebSocket ones; each poll acknowledges every frame processed so far, and the rare frames
    this reader sends (step1, the step2 answer) go one POST at a time, numbered from 1.
    """

    def __init__(self, session: aiohttp.ClientSession, base: str, sid: str, label: str) -> None:
        super().__init__(label)
        self._http = session
        self._base = f"{base}/lp/{sid}"
        self._ack = 0
        self._useq = 0
        self._send_lock = asyncio.Lock()
        self._ended = False

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str, label: str) -> LongPollReader:
        async with session.post(url) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message="open refused"
                )
            sid = (await response.json())["sid"]
        peer = cls(session, url.split("/lp/open", 1)[0], sid, label)
        peer._task = asyncio.create_task(peer._poll_loop(), name=f"bench {label}")
        return peer

    @property
    def closed(self) -> bool:
        return self._ended

    async def sync(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._send(encode_sync(SyncType.STEP1, self.state_vector()))
            await self.synced.wait()

    async def _send(self, frame: bytes) -> None:
        async with self._send_lock:
            self._useq += 1
            body = msgpack.packb([self._useq, [frame]], use_bin_type=True)
            async with self._http.post(f"{self._base}/send", data=body) as response:
                if response.status != 200:
                    self.stats.bad_frames += 1

    async def _poll_loop(self) -> None:
        try:
            while True:
                async with self._http.get(
                    f"{self._base}/poll", params={"ack": self._ack}
                ) as response:
                    if response.status == 410:
                        self.stats.close_code = 410
                        break
                    if response.status != 200:
                        continue
                    first, frames = msgpack.unpackb(await response.read())
                now = time.perf_counter()
                for offset, frame in enumerate(frames):
                    if first + offset <= self._ack:
                        continue  # a retried poll repeats frames already processed
                    reply = self.handle(frame, now)
                    self._ack = first + offset
                    if reply is not None:
                        await self._send(reply)
        except (aiohttp.ClientError, ConnectionError, ValueError):
            pass
        finally:
            self._ended = True
            self.stats.closed_by_server = not self._closing

    async def close(self) -> None:
        self._closing = True
        await self._stop_task()
        with contextlib.suppress(Exception):
            async with self._http.post(f"{self._base}/close"):
                pass


class Writer(Peer):
    """A peer with a pycrdt Doc: each ``send_next`` appends one marked insert to the Y.Text."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, label: str, index: int = 0) -> None:
        super().__init__(ws, label)
        self.index = index
        self.sent = 0
        self.sent_bytes = 0
        self.written_chars = 0
        self._doc = Doc()
        self._text = self._doc.get(TEXT_NAME, type=Text)
        self._last_update = b""
        self._subscription: Subscription = self._doc.observe(self._capture)

    def _capture(self, event: TransactionEvent) -> None:
        self._last_update = event.update

    def _recognise(self, update: bytes, now: float) -> None:
        super()._recognise(update, now)
        if self.count_markers:  # some servers send an update to its sender too
            self.stats.echoes += update.count(b"[#%d:" % self.index)

    def state_vector(self) -> bytes:
        return self._doc.get_state()

    def update_for(self, state_vector: bytes) -> bytes:
        return self._doc.get_update(state_vector)

    def adopt(self, update: bytes) -> bytes:
        """Make ``update`` (a whole document, e.g. a replayed trace) this writer's state too;
        returns it as one ``00 02`` frame, so the server receives it in a single message."""
        self._doc.apply_update(update)
        return encode_update(update)

    def next_update(self) -> bytes:
        """Encode the next marked insert as a ``00 02`` frame (CPU work kept out of timing)."""
        chunk = f"[#{self.index}:{self.sent}]"
        self._text.insert(self.written_chars, chunk)
        self.written_chars += len(chunk)
        return encode_update(self._last_update)

    async def send(self, frame: bytes, timeout: float) -> float:
        """Send one frame; returns the send timestamp used for latency.

        A server that stops reading makes the send wait for TCP to drain: ``timeout`` bounds it.
        """
        sent_at = time.perf_counter()
        async with asyncio.timeout(timeout):
            await self.ws.send_bytes(frame)
        self.sent += 1
        self.sent_bytes += len(frame)
        return sent_at

    def text(self) -> str:
        return str(self._text)


class Observer(Peer):
    """A fresh client that keeps the document: used once at the end to check convergence."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, label: str) -> None:
        super().__init__(ws, label)
        self.step2_bytes = 0
        self.step2_received_at = 0.0  # perf_counter, before it is applied (the server's part)
        self._doc = Doc()
        self._text = self._doc.get(TEXT_NAME, type=Text)

    def on_step2(self, update: bytes) -> None:
        self.step2_received_at = time.perf_counter()
        self.step2_bytes = len(update)
        self._doc.apply_update(update)

    def text(self) -> str:
        return str(self._text)


async def fetch_text(
    session: aiohttp.ClientSession, url: str, timeout: float
) -> tuple[str | None, str]:
    """Sync a fresh pycrdt client and return (the Y.Text content, "" or why it failed)."""
    try:
        async with asyncio.timeout(timeout):
            observer = await Observer.open(session, url, "observer")
            try:
                await observer.sync(timeout)
                return observer.text(), ""
            finally:
                await observer.close()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return None, f"convergence check failed: {type(exc).__name__}: {exc}"
