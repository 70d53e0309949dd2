"""A transport-agnostic peer of a room: bounded outbound queue, writer on demand, keep-alive.

Rooms call ``send`` synchronously (it never blocks the sender's loop). While the transport
takes data at once (its buffers are not full) a message is written right there: no task, no
wake-up, no queue. Once it pushes back, messages queue and a writer task drains them in
order, merging consecutive document updates into one; the task ends when the queue is empty,
so an idle connection owns no task. A consumer that falls behind past the queue limits is
closed with 1013 (the client reconnects and resyncs by state vector, so nothing is lost),
which keeps server memory bounded whatever the client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from pycrdt import merge_updates

from collab.protocol.ratelimit import TokenBucket
from collab.protocol.wire import (
    KEEP_ALIVE,
    UPDATE_PREFIX,
    CloseCode,
    ProtocolError,
    SyncUpdate,
    decode_message,
    encode_update,
)
from collab.server.settings import Settings

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class Transport(Protocol):
    def send_now(self, data: bytes) -> bool:
        """Write ``data`` without waiting if the transport can take it; False otherwise."""
        ...

    async def send(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class Connection:
    # An idle connection is mostly this object: slots, no per-connection Event or deque.
    __slots__ = (
        "_byte_bucket",
        "_closed",
        "_closed_waiter",
        "_closing",
        "_keepalive",
        "_max_bytes",
        "_max_messages",
        "_message_bucket",
        "_on_close",
        "_queue",
        "_queued_bytes",
        "_sends",
        "_sends_seen",
        "_transport",
        "_writer",
        "can_write",
        "close_code",
        "close_reason",
        "id",
        "label",
        "last_sent",
        "pending_write",
        "told_read_only",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        max_queue_messages: int,
        max_queue_bytes: int,
        keepalive_seconds: float,
        can_write: bool = True,
        label: str = "",
        transport_name: str = "websocket",
        messages_per_second: float = float("inf"),
        bytes_per_second: float = float("inf"),
    ) -> None:
        self.id = next(_ids)
        self.label = label or f"conn-{self.id}"
        self.can_write = can_write
        self.transport = transport_name
        self.pending_write: asyncio.Future[int] | None = None  # the last update sent to the store
        self.told_read_only = False
        self.close_code: int | None = None
        self.close_reason = ""
        self._transport = transport
        self._queue: deque[bytes] | None = None  # only while the transport pushes back
        self._queued_bytes = 0
        self._max_messages = max_queue_messages
        self._max_bytes = max_queue_bytes
        self._keepalive = keepalive_seconds
        self._closed = False
        self._closed_waiter: asyncio.Future[None] | None = None  # made by wait_closed
        self._on_close: list[Callable[[], object]] = []
        self._closing: asyncio.Task[None] | None = None
        now = time.monotonic()
        self.last_sent = now  # as of the last keep-alive check that saw sends
        self._sends = 0
        self._sends_seen = 0
        self._message_bucket = TokenBucket(messages_per_second, 2 * messages_per_second, now)
        self._byte_bucket = TokenBucket(bytes_per_second, 2 * bytes_per_second, now)
        self._writer: asyncio.Task[None] | None = None  # only while messages are queued

    def __repr__(self) -> str:
        return f"<Connection {self.label}>"

    @classmethod
    def for_settings(
        cls,
        transport: Transport,
        settings: Settings,
        *,
        can_write: bool,
        label: str,
        transport_name: str,
    ) -> Connection:
        return cls(
            transport,
            max_queue_messages=settings.send_queue_messages,
            max_queue_bytes=settings.send_queue_bytes,
            keepalive_seconds=settings.keepalive_seconds,
            can_write=can_write,
            label=label,
            transport_name=transport_name,
            messages_per_second=settings.messages_per_second,
            bytes_per_second=settings.bytes_per_second,
        )

    def keep_alive(self, now: float) -> None:
        """Send the no-op frame if nothing went out for the keep-alive interval (called by a
        periodic sweep: no timer per connection or per message)."""
        if self._sends != self._sends_seen:
            self._sends_seen = self._sends
            self.last_sent = now
        elif not self._queue and now - self.last_sent >= self._keepalive:
            self.last_sent = now
            self.send(KEEP_ALIVE)

    def admit(self, size: int) -> None:
        """Charge one incoming frame to the rate limits; ProtocolError(4529) when over."""
        now = time.monotonic()
        if not (self._message_bucket.take(1, now) and self._byte_bucket.take(size, now)):
            raise ProtocolError("sending too fast: rate limit exceeded", CloseCode.RATE_LIMITED)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def send(self, data: bytes) -> None:
        if self._closed:
            return
        if self._writer is None and self._transport.send_now(data):
            self._sends += 1
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= self._max_messages or self._queued_bytes + len(data) > self._max_bytes:
            log.warning("%s: send queue full (%d messages), closing", self.label, len(queue))
            self.close(CloseCode.TRY_AGAIN_LATER, "send queue overflow: client too slow")
            return
        queue.append(data)
        self._queued_bytes += len(data)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._drain_queue(), name=f"writer {self.label}"
            )

    def close(self, code: int, reason: str) -> None:
        """Close once; queued messages are dropped (the client resyncs on reconnect)."""
        if self._closed:
            return
        self.close_code, self.close_reason = code, reason
        self._closed = True
        if self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        self._queue = None
        self._queued_bytes = 0
        if self._writer is not None:
            self._writer.cancel()
        loop = asyncio.get_running_loop()
        callbacks, self._on_close = self._on_close, []  # they hold rooms: let them go
        for callback in callbacks:
            loop.call_soon(callback)  # not now: the caller may be iterating over a room
        self._closing = loop.create_task(self._close_transport(code, reason))

    def on_close(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once when the connection closes (timers to cancel, counters)."""
        self._on_close.append(callback)

    async def wait_closed(self) -> None:
        """Until closed and the close reached the transport (a WebSocket's close handshake)."""
        if not self._closed:
            if self._closed_waiter is None:
                self._closed_waiter = asyncio.get_running_loop().create_future()
            await self._closed_waiter
        for task in (self._writer, self._closing):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _close_transport(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self._transport.close(code, reason)

    async def _drain_queue(self) -> None:
        queue, transport = self._queue, self._transport
        assert queue is not None
        try:
            while queue:
                data = queue.popleft()
                self._queued_bytes -= len(data)
                if queue and is_update_message(data) and is_update_message(queue[0]):
                    data = self._merge_queued_updates(data)
                await transport.send(data)
                self._sends += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-send
            log.debug("%s: send failed: %s", self.label, exc)
            self.close(CloseCode.GOING_AWAY, "send failed")
            return
        self._writer = self._queue = None  # back to direct writes; the deque is freed

    def _merge_queued_updates(self, first: bytes) -> bytes:
        """``first`` and the update messages queued right after it, as one message."""
        run = [first]
        queue = self._queue
        assert queue is not None
        while queue and is_update_message(queue[0]):
            data = queue.popleft()
            self._queued_bytes -= len(data)
            run.append(data)
        return merge_update_messages(tuple(run))


def is_update_message(data: bytes) -> bool:
    return data.startswith(UPDATE_PREFIX)


@functools.lru_cache(maxsize=16)
def merge_update_messages(messages: tuple[bytes, ...]) -> bytes:
    """One sync update message with the effect of all ``messages``. Readers that fell behind
    together hold the same messages (a broadcast shares its bytes), so the merge is cached."""
    updates = []
    for message in messages:
        decoded = decode_message(message)
        assert isinstance(decoded, SyncUpdate)
        updates.append(decoded.update)
    return encode_update(merge_updates(*updates))
