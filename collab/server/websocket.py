"""The WebSocket endpoint ``/ws/{doc}``: one asyncio Protocol per socket, adapted to a room
Connection.

Why not aiohttp's WebSocketResponse: it keeps the upgrade request, two tasks, a reader
queue and a heartbeat timer alive per socket, about 15 KB of a 10 KB budget per idle
connection. Here an idle socket is this protocol, a frame parser and its Connection: no
task, no timer. A frame is handled inside ``data_received``; only a frame that must wait
(a sync step 1 behind its durability barrier, a full store backlog, the room still loading)
makes a task, and reading pauses until it is done, so frames keep their order. Heartbeats
and handshake deadlines are one periodic sweep over all sockets.

Rejections happen after the upgrade, with a close code: y-websocket 3.1 stops retrying on
4400-4499, while an HTTP error status would make it retry forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, cast

from aiohttp import web

from collab.protocol.doc_ids import validate_doc_id
from collab.protocol.frames import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameParser,
    binary_frame,
    close_frame,
    deflated_binary_frame,
    frame,
    parse_close,
)
from collab.protocol.handshake import (
    MAX_HEAD_BYTES,
    HandshakeError,
    UpgradeRequest,
    deflate_offered,
    error_response,
    head_end,
    parse_upgrade,
    switching_protocols,
    upgrade_request,
)
from collab.protocol.ratelimit import AttemptCounter
from collab.protocol.tokens import TokenError, TokenVerifier
from collab.protocol.wire import CloseCode, ProtocolError
from collab.server.auth import authorize_token, bearer_token, expire_with_grant
from collab.server.connection import Connection
from collab.server.keys import WEBSOCKETS
from collab.server.room import Room
from collab.server.rooms import OverCapacity, Rooms, RoomsFull
from collab.server.settings import Settings
from collab.store.base import Store, StoreError

if TYPE_CHECKING:
    from collab.server.origins import OriginPolicy

log = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 2.0  # for the peer's close reply
HANDSHAKE_SECONDS = 10.0  # to send a complete upgrade request
WRITE_BUFFER_HIGH_WATER = 64 * 1024  # asyncio's own default: past it, queue and wait
_SWEEP_SECONDS = 1.0  # at most; shorter when heartbeats are more frequent


class WebSocketEndpoint:
    """Everything the sockets of one server share: the checks before a join, the rooms,
    the set of live sockets and the sweep that pings them."""

    def __init__(
        self,
        settings: Settings,
        rooms: Rooms,
        store: Store,
        origins: OriginPolicy,
        verifier: TokenVerifier | None,
        attempts: AttemptCounter,
    ) -> None:
        self.settings = settings
        self.rooms = rooms
        self.store = store
        self.origins = origins
        self.verifier = verifier
        self.attempts = attempts
        self.sockets: set[WebSocketProtocol] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self, code: int, reason: str) -> None:
        """Close every socket (those in rooms are closed by the rooms first) and stop."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.gather(
            *(sock.close(code, reason) for sock in list(self.sockets)), return_exceptions=True
        )

    async def _sweep_forever(self) -> None:
        heartbeat = self.settings.ws_heartbeat_seconds
        interval = min(_SWEEP_SECONDS, heartbeat / 2) if heartbeat > 0 else _SWEEP_SECONDS
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for sock in list(self.sockets):
                sock.check_liveness(now, heartbeat)


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket from its upgrade request to its end; the Transport of its Connection."""

    __slots__ = (
        "_blocked",
        "_conn",
        "_deflate_bits",
        "_drained",
        "_endpoint",
        "_head",
        "_heard",
        "_lost",
        "_parser",
        "_peer_closed",
        "_ping_sent_at",
        "_room",
        "_sent_close",
        "_silent_since",
        "_transport",
        "_unblocking",
        "_writing_paused",
        "peer",
    )

    def __init__(self, endpoint: WebSocketEndpoint) -> None:
        self._endpoint = endpoint
        self._transport: asyncio.Transport | None = None
        self._head = b""  # the upgrade request until it is complete
        self._parser: FrameParser | None = None  # after the upgrade
        self._conn: Connection | None = None
        self._room: Room | None = None
        self._blocked: deque[bytes] | None = None  # frames held while one waits
        self._unblocking: asyncio.Task[None] | None = None  # the wait; handles them after
        self._deflate_bits: int | None = None
        self._sent_close = False
        self._peer_closed = False
        self._writing_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] | None = None
        self._heard = True
        self._silent_since = time.monotonic()
        self._ping_sent_at: float | None = None
        self.peer = "?"

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's too
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if peername else "?"
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # updates are small
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH_WATER)
        self._endpoint.sockets.add(self)

    def data_received(self, data: bytes) -> None:
        self._heard = True
        parser = self._parser
        if parser is None:
            self._receive_head(data)
            return
        try:
            messages = parser.feed(data)
        except ProtocolError as exc:
            self._refuse(exc.code, exc.reason)
            return
        for opcode, payload in messages:
            if self._sent_close and opcode != CLOSE:
                continue  # closing: only the peer's close reply matters
            if opcode == BINARY:
                self._receive_frame(payload)
            elif opcode == PING:
                self._write(frame(PONG, payload))
            elif opcode == CLOSE:
                self._receive_close(payload)
                return
            elif opcode == TEXT:
                self._refuse(CloseCode.BAD_REQUEST, "text frames are not part of the protocol")
                return

    def eof_received(self) -> bool:
        return False  # the peer is done: close our side too

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._endpoint.sockets.discard(self)
        for waiter in (self._drained, self._lost):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._blocked = None
        self._leave_room()
        if self._conn is not None:
            self._conn.close(CloseCode.NORMAL if self._peer_closed else CloseCode.GOING_AWAY, "")

    # -- the Transport a Connection writes to ------------------------------------------------

    def send_now(self, data: bytes) -> bool:
        """Write one frame straight into the socket's buffer while it is below its high-water
        mark: a broadcast then costs one ``write`` per peer, no task switch."""
        transport = self._transport
        if self._writing_paused or self._sent_close or transport is None or transport.is_closing():
            return False
        transport.write(self._frame(data))
        return True

    async def send(self, data: bytes) -> None:
        """For the Connection's writer task: waits while the socket pushes back."""
        while self._writing_paused and not self._lost_or_closing():
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        if self._lost_or_closing() or self._sent_close:
            raise ConnectionResetError("socket closed")
        assert self._transport is not None
        self._transport.write(self._frame(data))

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code``. A peer that stopped reading has a backlog in our send buffer
        and would never let the close frame out: its TCP connection is dropped instead; so is
        one whose close handshake stalls."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > 0:
            transport.abort()
            return
        if not self._sent_close:
            self._sent_close = True
            transport.write(close_frame(code, reason))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                await self.wait_lost()
        if not transport.is_closing():
            transport.abort()

    # -- the sweep ---------------------------------------------------------------------------

    def check_liveness(self, now: float, heartbeat: float) -> None:
        """Ping a socket that has been silent for ``heartbeat`` seconds; drop it if the pong
        does not come within half of that. A socket still in its handshake gets a deadline."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._parser is None:  # still in the handshake: counted from the connect
            if now - self._silent_since >= HANDSHAKE_SECONDS:
                log.warning("dropping %s: no complete WebSocket handshake", self.peer)
                transport.abort()
            return
        if self._heard:
            self._heard, self._silent_since, self._ping_sent_at = False, now, None
            return
        if heartbeat <= 0 or now - self._silent_since < heartbeat:
            return
        if self._ping_sent_at is None:
            self._ping_sent_at = now
            if not self._writing_paused:
                transport.write(frame(PING, b""))
        elif now - self._ping_sent_at >= heartbeat / 2:
            log.info("dropping %s: no answer to a heartbeat ping", self._label())
            transport.abort()

    # -- handshake ---------------------------------------------------------------------------

    def _receive_head(self, data: bytes) -> None:
        head = self._head + data
        end = head_end(head)
        if end > MAX_HEAD_BYTES or (end < 0 and len(head) > MAX_HEAD_BYTES):
            self._reject(431, "request head too large")
            return
        if end < 0:
            self._head = head
            return
        self._head = b""
        try:
            request = parse_upgrade(head[:end])
        except HandshakeError as exc:
            self._reject(exc.status, exc.reason)
            return
        self.upgrade(request)
        if len(head) > end and self._parser is not None:  # frames sent before our 101
            self.data_received(head[end:])

    def upgrade(self, request: UpgradeRequest) -> None:
        """Answer a valid upgrade request: 429, or 101 and then the checks and the join."""
        if not self._endpoint.attempts.allow(self.peer, time.monotonic()):
            self._reject(429, "too many connection attempts")
            return
        self._accept(request)

    async def wait_lost(self) -> None:
        if self._lost_or_closing():
            return
        self._lost = self._lost or asyncio.get_running_loop().create_future()
        await asyncio.shield(self._lost)

    def _reject(self, status: int, reason: str) -> None:
        log.warning("refused websocket upgrade from %s: %d %s", self.peer, status, reason)
        assert self._transport is not None
        self._transport.write(error_response(status, reason))
        self._transport.close()

    def _accept(self, request: UpgradeRequest) -> None:
        endpoint = self._endpoint
        settings = endpoint.settings
        if settings.ws_compress:
            self._deflate_bits = deflate_offered(request.headers)
        self._parser = FrameParser(settings.max_message_bytes, self._deflate_bits is not None)
        self._write(switching_protocols(request.key, self._deflate_bits))
        origin = request.headers.get("origin")
        if not endpoint.origins.allows(origin, request.host):
            log.warning("refused websocket from origin %s", origin)
            self._close_now(CloseCode.FORBIDDEN, "origin not allowed")
            return
        try:
            validate_doc_id(request.doc_id)
            token = bearer_token(request.headers.get("authorization", ""))
            grant = authorize_token(
                endpoint.verifier, token or request.query.get("token"), request.doc_id
            )
        except (ProtocolError, TokenError) as exc:
            log.warning("rejected websocket from %s: %s", self.peer, exc.reason)
            self._close_now(exc.code, exc.reason)
            return
        self._conn = conn = Connection.for_settings(
            self,
            settings,
            can_write=grant is None or grant.can_write,
            label=f"ws {self.peer} {request.doc_id}"
            + (f" sub={grant.subject}" if grant and grant.subject else ""),
            transport_name="websocket",
        )
        expire_with_grant(conn, grant)
        self._block(self._join(request.doc_id, conn))

    async def _join(self, doc_id: str, conn: Connection) -> None:
        try:
            self._room = await self._endpoint.rooms.join(doc_id, conn)
        except OverCapacity as exc:
            log.warning("rejected %s: %s", conn.label, exc)
            conn.close(CloseCode.OVER_CAPACITY, str(exc))
        except RoomsFull as exc:
            log.warning("rejected %s: %s", conn.label, exc)
            conn.close(CloseCode.TRY_AGAIN_LATER, "server busy: too many documents loaded")
        except StoreError as exc:
            log.error("cannot load %r: %s", doc_id, exc)
            conn.close(CloseCode.INTERNAL_ERROR, "storage error")
        else:
            if conn.closed or self._lost_or_closing():  # gone while the room loaded
                self._leave_room()
            else:
                conn.on_close(self._leave_room)

    def _leave_room(self) -> None:
        """At once when the connection closes, not when TCP ends (up to the close grace)."""
        room, self._room = self._room, None
        if room is not None and self._conn is not None:
            self._endpoint.rooms.leave(room, self._conn)

    # -- frames ------------------------------------------------------------------------------

    def _receive_frame(self, data: bytes) -> None:
        if self._blocked is not None:
            self._blocked.append(data)
            return
        waiting = self._handle(data)
        if waiting is not None:
            self._block(waiting)

    def _handle(self, data: bytes) -> Awaitable[None] | None:
        """Handle one frame now; returns what must finish before the next frame is read."""
        conn, room = self._conn, self._room
        if conn is None or room is None or conn.closed:
            return None
        try:
            conn.admit(len(data))
            pending = room.receive(conn, data)
        except ProtocolError as exc:
            log.warning("closing %s (%d): %s", conn.label, exc.code, exc.reason)
            conn.close(exc.code, exc.reason)
            return None
        except StoreError as exc:
            log.error("closing %s: %s", conn.label, exc)
            conn.close(CloseCode.INTERNAL_ERROR, "storage error")
            return None
        store, limit = self._endpoint.store, self._endpoint.settings.max_store_backlog
        if store.backlog + room.queued_updates >= limit:
            return _after(pending, store.wait_for_backlog(limit // 2))
        return pending

    def _block(self, waiting: Awaitable[None]) -> None:
        """Stop reading until ``waiting`` is done, then handle the frames held meanwhile."""
        self._blocked = deque()
        assert self._transport is not None
        self._transport.pause_reading()
        self._unblocking = asyncio.get_running_loop().create_task(self._unblock(waiting))

    async def _unblock(self, waiting: Awaitable[None] | None) -> None:
        conn = self._conn
        while waiting is not None:
            try:
                await waiting
            except ProtocolError as exc:
                log.warning("closing %s (%d): %s", self._label(), exc.code, exc.reason)
                if conn is not None:
                    conn.close(exc.code, exc.reason)
            except StoreError as exc:
                log.error("closing %s: %s", self._label(), exc)
                if conn is not None:
                    conn.close(CloseCode.INTERNAL_ERROR, "storage error")
            except Exception:
                log.exception("closing %s: unexpected error", self._label())
                self._close_now(CloseCode.INTERNAL_ERROR, "internal error")
            waiting = None
            blocked = self._blocked
            while blocked and waiting is None:
                waiting = self._handle(blocked.popleft())
        self._blocked = self._unblocking = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _receive_close(self, payload: bytes) -> None:
        """The peer's close: answer it (unless it answers ours) and end the TCP connection."""
        self._peer_closed = True
        try:
            code, _ = parse_close(payload)
        except ProtocolError as exc:
            code, _ = exc.code, exc.reason
        assert self._transport is not None
        if not self._sent_close:
            self._sent_close = True
            reply = CloseCode.NORMAL if code == CloseCode.NO_STATUS else code
            self._transport.write(close_frame(reply))
        self._transport.close()

    # -- helpers -----------------------------------------------------------------------------

    def _frame(self, data: bytes) -> bytes:
        if self._deflate_bits is None:
            return binary_frame(data)
        return deflated_binary_frame(data, self._deflate_bits)

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _refuse(self, code: int, reason: str) -> None:
        """A frame broke the rules: close with ``code`` (through the Connection once joined)."""
        log.warning("closing %s (%d): %s", self._label(), code, reason)
        self._close_now(code, reason)

    def _close_now(self, code: int, reason: str) -> None:
        if self._conn is not None:
            self._conn.close(code, reason)
        else:
            asyncio.get_running_loop().create_task(self.close(code, reason))

    def _lost_or_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def _label(self) -> str:
        return self._conn.label if self._conn is not None else f"ws {self.peer}"


async def _after(first: Awaitable[None] | None, then: Awaitable[None]) -> None:
    if first is not None:
        await first
    await then


class _AnsweredByWebSocket(web.StreamResponse):
    """What an upgrade handler gives back to aiohttp: the socket has already been answered
    and closed by WebSocketProtocol, so there is nothing to send and nothing to keep alive."""

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


async def upgrade_reused_connection(request: web.Request) -> web.StreamResponse:
    """``GET /ws/{doc}`` on a connection that already carried HTTP requests (aiohttp's
    client reuses them), so aiohttp, not the listener, parsed it. The socket is handed to
    WebSocketProtocol all the same; only this handler stays parked until it ends, because
    aiohttp closes a connection once its handler returns."""
    headers = {name.lower(): ", ".join(request.headers.getall(name)) for name in request.headers}
    try:
        upgrade = upgrade_request(request.match_info["doc"], dict(request.query), headers)
    except HandshakeError as exc:
        log.warning(
            "refused websocket upgrade from %s: %d %s", request.remote, exc.status, exc.reason
        )
        return web.json_response({"error": exc.reason}, status=exc.status)
    transport = request.transport
    if transport is None:
        return _AnsweredByWebSocket()
    protocol = WebSocketProtocol(request.app[WEBSOCKETS])
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    protocol.upgrade(upgrade)
    await protocol.wait_lost()
    request.protocol.connection_lost(None)  # aiohttp's handler never heard of the socket's end
    return _AnsweredByWebSocket()
