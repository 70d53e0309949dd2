"""aiohttp WebSocket endpoint ``/ws/{doc}``: adapts a WebSocket to a room Connection.

Rejections happen after the upgrade, with a close code: y-websocket 3.1 stops retrying on
4400-4499, while an HTTP error status would make it retry forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import struct
import time

from aiohttp import WSCloseCode, WSMsgType, web

from collab.protocol.doc_ids import validate_doc_id
from collab.protocol.tokens import TokenError
from collab.protocol.wire import CloseCode, ProtocolError
from collab.server.auth import authorize, expire_with_grant
from collab.server.connection import Connection
from collab.server.keys import ATTEMPTS, ORIGINS, ROOMS, SETTINGS, STORE, WEBSOCKETS
from collab.server.room import Room
from collab.server.rooms import OverCapacity, Rooms, RoomsFull
from collab.server.settings import Settings
from collab.store.base import Store, StoreError

log = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 2.0
MAX_REASON_BYTES = 123  # a close frame's reason must fit in 125 bytes with the code
WRITE_BUFFER_HIGH_WATER = 64 * 1024  # asyncio's own default: past it, wait for the socket


def _reason_bytes(reason: str) -> bytes:
    return reason.encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")


@functools.lru_cache(maxsize=4)
def binary_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented binary WebSocket frame (RFC 6455 §5.2): what a server sends.
    A broadcast hands every peer the same bytes object, so the frame is built once for all."""
    length = len(payload)
    if length < 126:
        header = bytes((0x82, length))
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x82, 126, length)
    else:
        header = struct.pack("!BBQ", 0x82, 127, length)
    return header + payload


class CollabWebSocketResponse(web.WebSocketResponse):
    """Answers a frame over the size limit with 4413 (aiohttp's own 1009 would be retried)."""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True):
        if code == WSCloseCode.MESSAGE_TOO_BIG:
            code, message = CloseCode.TOO_LARGE, b"message too large"
        return await super().close(code=code, message=message, drain=drain)


class WebSocketTransport:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self._ws = ws
        self._request = request
        self._direct = not ws.compress  # negotiated by prepare(); deflate needs aiohttp's writer

    def send_now(self, data: bytes) -> bool:
        """Write one binary frame straight to the socket's buffer while it is below its
        high-water mark: a broadcast then costs one ``write`` per peer, no task switch.
        Compressed frames and a backed-up or closing socket take aiohttp's way (``send``)."""
        transport = self._request.transport
        if (
            not self._direct
            or self._ws.closed
            or transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > WRITE_BUFFER_HIGH_WATER
        ):
            return False
        transport.write(binary_frame(data))
        return True

    async def send(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code``. A peer that stopped reading has a backlog in our send buffer
        and would never let the close frame out: its TCP connection is dropped instead (which
        also ends the handler's read loop); so is one whose close handshake stalls."""
        if self._ws.closed:
            return  # aiohttp closed it already (an oversized frame, the peer's close)
        transport = self._request.transport
        if transport is not None and transport.get_write_buffer_size() > 0:
            transport.abort()
            return
        closed = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                closed = await self._ws.close(code=code, message=_reason_bytes(reason))
        transport = self._request.transport
        if not closed and transport is not None:
            transport.abort()


def _peer(request: web.Request) -> str:
    return request.remote or "?"


async def handle_websocket(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    rooms: Rooms = request.app[ROOMS]
    if not request.app[ATTEMPTS].allow(_peer(request), time.monotonic()):
        log.warning("refused websocket from %s: too many connection attempts", _peer(request))
        return web.json_response({"error": "too many connection attempts"}, status=429)
    ws = CollabWebSocketResponse(
        timeout=CLOSE_GRACE_SECONDS,  # for the peer's close reply
        max_msg_size=settings.max_message_bytes,
        compress=settings.ws_compress,
        heartbeat=settings.ws_heartbeat_seconds or None,
    )
    await ws.prepare(request)
    request.app[WEBSOCKETS].add(ws)
    try:
        joined = await _join(request, ws, settings, rooms)
        if joined is not None:
            await _serve(ws, *joined, settings, rooms, request.app[STORE])
    finally:
        request.app[WEBSOCKETS].discard(ws)
    return ws


async def _join(
    request: web.Request, ws: web.WebSocketResponse, settings: Settings, rooms: Rooms
) -> tuple[Connection, Room] | None:
    """Check the request and join its room; None when refused (already closed)."""
    doc_id = request.match_info["doc"]
    if not request.app[ORIGINS].allows(request.headers.get("Origin"), request.host):
        log.warning("refused websocket from origin %s", request.headers.get("Origin"))
        await ws.close(code=CloseCode.FORBIDDEN, message=b"origin not allowed")
        return None
    try:
        validate_doc_id(doc_id)
        grant = authorize(request, doc_id)
    except (ProtocolError, TokenError) as exc:
        log.warning("rejected websocket from %s: %s", _peer(request), exc.reason)
        await ws.close(code=exc.code, message=_reason_bytes(exc.reason))
        return None
    conn = Connection.for_settings(
        WebSocketTransport(ws, request),
        settings,
        can_write=grant is None or grant.can_write,
        label=f"ws {_peer(request)} {doc_id}"
        + (f" sub={grant.subject}" if grant and grant.subject else ""),
        transport_name="websocket",
    )
    expire_with_grant(conn, grant)
    try:
        room = await rooms.join(doc_id, conn)
    except OverCapacity as exc:
        log.warning("rejected %s: %s", conn.label, exc)
        conn.close(CloseCode.OVER_CAPACITY, str(exc))
        await conn.wait_closed()
        return None
    except RoomsFull as exc:
        log.warning("rejected %s: %s", conn.label, exc)
        conn.close(CloseCode.TRY_AGAIN_LATER, "server busy: too many documents loaded")
        await conn.wait_closed()
        return None
    except StoreError as exc:
        log.error("cannot load %r: %s", doc_id, exc)
        conn.close(CloseCode.INTERNAL_ERROR, "storage error")
        await conn.wait_closed()
        return None
    return conn, room


async def _serve(
    ws: web.WebSocketResponse,
    conn: Connection,
    room: Room,
    settings: Settings,
    rooms: Rooms,
    store: Store,
) -> None:
    """The connection's read loop: the one frame an idle connection keeps besides aiohttp's."""
    try:
        while True:
            msg = await ws.receive()
            if conn.closed:
                break
            if msg.type is WSMsgType.BINARY:
                try:
                    conn.admit(len(msg.data))
                    await room.receive(conn, msg.data)
                    if store.backlog >= settings.max_store_backlog:
                        await store.wait_for_backlog(settings.max_store_backlog // 2)
                except ProtocolError as exc:
                    log.warning("closing %s (%d): %s", conn.label, exc.code, exc.reason)
                    conn.close(exc.code, exc.reason)
                    break
                except StoreError as exc:
                    log.error("closing %s: %s", conn.label, exc)
                    conn.close(CloseCode.INTERNAL_ERROR, "storage error")
                    break
            elif msg.type is WSMsgType.TEXT:
                log.warning("closing %s: text frame", conn.label)
                conn.close(CloseCode.BAD_REQUEST, "text frames are not part of the protocol")
                break
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                break
            msg = None  # not kept while idle
    finally:
        rooms.leave(room, conn)
        conn.close(ws.close_code or CloseCode.NORMAL, "")
        await conn.wait_closed()
