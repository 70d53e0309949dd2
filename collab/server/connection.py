"""A transport-agnostic peer of a room: bounded outbound queue, one writer task, keep-alive.

Rooms call ``send`` synchronously (it never blocks the sender's loop); one writer task per
connection drains the queue in order. A consumer that falls behind past the queue limits is
closed with 1013 (the client reconnects and resyncs by state vector, so nothing is lost),
which keeps server memory bounded whatever the client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from collab.protocol.ratelimit import TokenBucket
from collab.protocol.wire import KEEP_ALIVE, CloseCode, ProtocolError
from collab.server.settings import Settings

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class Transport(Protocol):
    async def send(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class Connection:
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
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._max_messages = max_queue_messages
        self._max_bytes = max_queue_bytes
        self._keepalive = keepalive_seconds
        self._wakeup = asyncio.Event()
        self._closed = asyncio.Event()
        self._on_close: list[Callable[[], object]] = []
        self._closing: asyncio.Task[None] | None = None
        now = time.monotonic()
        self.last_sent = now
        self._message_bucket = TokenBucket(messages_per_second, 2 * messages_per_second, now)
        self._byte_bucket = TokenBucket(bytes_per_second, 2 * bytes_per_second, now)
        self._writer = asyncio.create_task(self._run_writer(), name=f"writer {self.label}")

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
        if not self._queue and now - self.last_sent >= self._keepalive:
            self.last_sent = now
            self.send(KEEP_ALIVE)

    def admit(self, size: int) -> None:
        """Charge one incoming frame to the rate limits; ProtocolError(4529) when over."""
        now = time.monotonic()
        if not (self._message_bucket.take(1, now) and self._byte_bucket.take(size, now)):
            raise ProtocolError("sending too fast: rate limit exceeded", CloseCode.RATE_LIMITED)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def send(self, data: bytes) -> None:
        if self._closed.is_set():
            return
        too_many = len(self._queue) >= self._max_messages
        if too_many or self._queued_bytes + len(data) > self._max_bytes:
            log.warning("%s: send queue full (%d messages), closing", self.label, len(self._queue))
            self.close(CloseCode.TRY_AGAIN_LATER, "send queue overflow: client too slow")
            return
        self._queue.append(data)
        self._queued_bytes += len(data)
        self._wakeup.set()

    def close(self, code: int, reason: str) -> None:
        """Close once; queued messages are dropped (the client resyncs on reconnect)."""
        if self._closed.is_set():
            return
        self.close_code, self.close_reason = code, reason
        self._closed.set()
        self._queue.clear()
        self._queued_bytes = 0
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
        await self._closed.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    async def _close_transport(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self._transport.close(code, reason)

    async def _run_writer(self) -> None:
        queue, transport = self._queue, self._transport
        try:
            while True:
                while queue:
                    data = queue.popleft()
                    self._queued_bytes -= len(data)
                    await transport.send(data)
                self.last_sent = time.monotonic()  # once per burst, not per message
                self._wakeup.clear()
                await self._wakeup.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-send
            log.debug("%s: send failed: %s", self.label, exc)
            self.close(CloseCode.GOING_AWAY, "send failed")
