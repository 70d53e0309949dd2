"""aiohttp YLP/1 endpoints and their session registry: a long-poll session is one more
Connection of a room, with HTTP requests instead of a socket underneath.

Frames the room sends are retained (numbered) until the client acks them; the room's own
Connection queue and keep-alive work unchanged on top. A session closed with a close code
answers later requests with 410 and that code, so the client can apply the same retry policy
as for a WebSocket close.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from collab.protocol.doc_ids import validate_doc_id
from collab.protocol.longpoll import (
    Downstream,
    LongPollError,
    Upstream,
    UpstreamGap,
    decode_send_body,
    encode_poll_response,
    encode_send_ack,
    parse_ack,
)
from collab.protocol.tokens import Grant, TokenError
from collab.protocol.wire import CloseCode, ProtocolError
from collab.server.auth import authorize, expire_with_grant, http_status
from collab.server.connection import Connection
from collab.server.keys import ATTEMPTS, LONGPOLL, SETTINGS, STORE
from collab.server.room import Room
from collab.server.rooms import OverCapacity, Rooms, RoomsFull
from collab.server.settings import Settings
from collab.store.base import StoreError

log = logging.getLogger(__name__)

MSGPACK = "application/msgpack"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSION_GONE = (CloseCode.GOING_AWAY, "unknown or expired session")


def error_response(status: int, reason: str, code: int | None = None) -> web.Response:
    body: dict[str, object] = {"error": reason}
    if code is not None:
        body["code"] = int(code)
    return web.json_response(body, status=status)


class LongPollSession:
    """The transport under one long-poll Connection."""

    def __init__(self, sid: str, doc_id: str, settings: Settings) -> None:
        self.sid = sid
        self.doc_id = doc_id
        self.downstream = Downstream()
        self.upstream = Upstream()
        self.last_seen = time.monotonic()
        self.close_code: int | None = None
        self.close_reason = ""
        self.conn: Connection | None = None
        self.room: Room | None = None
        self.send_lock = asyncio.Lock()
        self._settings = settings
        self._changed = asyncio.Event()  # frames arrived, the session closed, or a new GET
        self._generation = 0  # of the newest GET; an older one still held answers 409
        self._held = 0  # GETs being held right now

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    @property
    def polling(self) -> bool:
        return self._held > 0

    # Transport protocol, used by the Connection.
    def send_now(self, data: bytes) -> bool:
        """Retaining a frame never waits: a poll takes it when it comes."""
        self._retain(data)
        return True

    async def send(self, data: bytes) -> None:
        self._retain(data)

    def _retain(self, data: bytes) -> None:
        self.downstream.push(data)
        settings = self._settings
        if self.downstream.retained_frames > 1 and (
            self.downstream.retained_bytes > settings.lp_retained_bytes
            or self.downstream.retained_frames > settings.lp_retained_frames
        ):
            assert self.conn is not None
            log.warning(
                "long-poll %s: client not polling, %d frames retained",
                self.sid,
                self.downstream.retained_frames,
            )
            self.conn.close(CloseCode.TRY_AGAIN_LATER, "too many unacknowledged frames")
        self._changed.set()

    async def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self._changed.set()

    async def poll(self, ack: int) -> web.Response:
        """Answer ``GET poll?ack=A``: retained frames after A, or wait for some."""
        self._generation += 1
        generation = self._generation
        self._changed.set()  # wakes an older held GET, which then answers 409
        self.last_seen = time.monotonic()
        self.downstream.ack(ack)
        self._held += 1
        try:
            async with asyncio.timeout(self._settings.lp_poll_timeout_seconds):
                while not self.closed and not self.downstream.retained_frames:
                    self._changed.clear()
                    await self._changed.wait()
                    if generation != self._generation:
                        raise LongPollError(409, "superseded by a newer poll")
        except TimeoutError:
            pass
        finally:
            self._held -= 1
            self.last_seen = time.monotonic()
        frames = self.downstream.batch(self._settings.lp_response_bytes)
        if not frames and self.closed:
            return error_response(410, self.close_reason or "session closed", self.close_code)
        return web.Response(body=encode_poll_response(ack + 1, frames), content_type=MSGPACK)


class LongPollSessions:
    """Sessions of this process; sids carry the node id so a deployment can route them."""

    def __init__(self, rooms: Rooms, settings: Settings, node_id: str) -> None:
        self._rooms = rooms
        self._settings = settings
        self.node_id = node_id
        self._sessions: dict[str, LongPollSession] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    def __len__(self) -> int:
        return sum(1 for s in self._sessions.values() if not s.closed)

    def get(self, sid: str) -> LongPollSession | None:
        return self._sessions.get(sid)

    async def forward(self, request: web.Request, node: str) -> web.Response | None:
        """Relay ``request`` to the node that owns the session; None if it is unknown."""
        bus = self._rooms.bus
        if bus is None:
            return None
        base = await bus.node_url(node)
        if base is None:
            return None
        if (request.content_length or 0) > self._settings.lp_max_post_bytes:
            return error_response(413, "body too large")
        body = await request.read()
        headers = {FORWARDED: self.node_id}
        for name in ("Authorization", "Content-Type"):
            if name in request.headers:
                headers[name] = request.headers[name]
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.lp_poll_timeout_seconds + 15)
            )
        try:
            async with self._http.request(
                request.method, base + request.path_qs, data=body, headers=headers
            ) as upstream:
                payload = await upstream.read()
                return web.Response(
                    status=upstream.status,
                    body=payload,
                    headers={"Content-Type": upstream.headers.get("Content-Type", MSGPACK)},
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("forwarding to node %s failed: %s", node, exc)
            return None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="long-poll sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for session in list(self._sessions.values()):
            if session.conn is not None:
                session.conn.close(CloseCode.GOING_AWAY, "server shutting down")
        if self._http is not None:
            await self._http.close()

    async def open(self, doc_id: str, grant: Grant | None) -> LongPollSession:
        if len(self) >= self._settings.lp_max_sessions:
            raise LongPollError(429, "too many long-poll sessions")
        sid = f"{self.node_id}.{secrets.token_urlsafe(16)}"
        session = LongPollSession(sid, doc_id, self._settings)
        conn = Connection.for_settings(
            session,
            self._settings,
            can_write=grant is None or grant.can_write,
            label=f"lp {sid[:12]} {doc_id}"
            + (f" sub={grant.subject}" if grant and grant.subject else ""),
            transport_name="long-poll",
        )
        expire_with_grant(conn, grant)
        session.conn = conn
        self._sessions[sid] = session
        try:
            session.room = await self._rooms.join(doc_id, conn)
        except BaseException:
            conn.close(CloseCode.INTERNAL_ERROR, "could not open the document")
            del self._sessions[sid]
            raise
        asyncio.get_running_loop().create_task(self._leave_when_closed(session))
        return session

    async def _leave_when_closed(self, session: LongPollSession) -> None:
        assert session.conn is not None and session.room is not None
        await session.conn.wait_closed()
        self._rooms.leave(session.room, session.conn)
        session.room = None  # a closed session is kept a while for its 410: not its document
        await session.close(session.conn.close_code or CloseCode.NORMAL, session.conn.close_reason)

    async def _sweep(self) -> None:
        """Expire sessions nobody polls, and forget closed ones after a grace period."""
        ttl = self._settings.lp_session_ttl_seconds
        while True:
            await asyncio.sleep(min(1.0, ttl / 4))
            now = time.monotonic()
            for sid, session in list(self._sessions.items()):
                idle = now - session.last_seen
                if session.closed:
                    if idle > ttl:
                        del self._sessions[sid]
                elif not session.polling and idle > ttl and session.conn is not None:
                    log.info("long-poll session %s expired", sid)
                    session.conn.close(CloseCode.GOING_AWAY, "session expired")
                    session.last_seen = now


FORWARDED = "X-Collab-Forwarded"


def _routed(handler: Handler) -> Handler:
    """Requests for a session of another node of this deployment are passed on to it (the
    node id is the sid's prefix; nodes advertise their address on the bus)."""

    @functools.wraps(handler)
    async def route(request: web.Request) -> web.StreamResponse:
        sessions = request.app[LONGPOLL]
        node = request.match_info["sid"].partition(".")[0]
        if node != sessions.node_id and FORWARDED not in request.headers:
            forwarded = await sessions.forward(request, node)
            if forwarded is not None:
                return forwarded
        return await handler(request)

    return route


def _session(request: web.Request) -> LongPollSession:
    session = request.app[LONGPOLL].get(request.match_info["sid"])
    if session is None:
        raise _Gone(*SESSION_GONE)
    if session.closed:
        raise _Gone(session.close_code or CloseCode.GOING_AWAY, session.close_reason)
    return session


class _Gone(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def handle_open(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    doc_id = request.query.get("doc", "")
    if not request.app[ATTEMPTS].allow(request.remote or "?", time.monotonic()):
        log.warning("refused long-poll from %s: too many connection attempts", request.remote)
        return error_response(429, "too many connection attempts", CloseCode.TRY_AGAIN_LATER)
    try:
        validate_doc_id(doc_id)
        grant = authorize(request, doc_id)
        session = await request.app[LONGPOLL].open(doc_id, grant)
    except ProtocolError as exc:
        log.warning("long-poll open refused: %s", exc.reason)
        return error_response(400, exc.reason, exc.code)
    except TokenError as exc:
        log.warning("long-poll open refused: %s", exc.reason)
        return error_response(http_status(exc), exc.reason, exc.code)
    except LongPollError as exc:
        log.warning("long-poll open refused: %s", exc.reason)
        return error_response(exc.status, exc.reason, CloseCode.TRY_AGAIN_LATER)
    except OverCapacity as exc:
        return error_response(503, str(exc), CloseCode.OVER_CAPACITY)
    except RoomsFull:
        return error_response(503, "server busy: too many documents loaded", 1013)
    except StoreError as exc:
        log.error("cannot load %r: %s", doc_id, exc)
        return error_response(503, "storage error", CloseCode.INTERNAL_ERROR)
    return web.json_response(
        {
            "sid": session.sid,
            "poll_timeout_ms": int(settings.lp_poll_timeout_seconds * 1000),
            "session_ttl_ms": int(settings.lp_session_ttl_seconds * 1000),
            "max_post_bytes": settings.lp_max_post_bytes,
            "ws": True,
        }
    )


async def handle_poll(request: web.Request) -> web.Response:
    try:
        session = _session(request)
        return await session.poll(parse_ack(request.query.get("ack")))
    except _Gone as gone:
        return error_response(410, gone.reason, gone.code)
    except LongPollError as exc:
        if exc.status != 409:
            log.warning("long-poll poll refused: %s", exc.reason)
        return error_response(exc.status, exc.reason)


async def handle_send(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    try:
        session = _session(request)
        if (request.content_length or 0) > settings.lp_max_post_bytes:
            raise LongPollError(413, f"body larger than {settings.lp_max_post_bytes} bytes")
        body = await _read_body(request, settings.lp_max_post_bytes)
        first_useq, frames = decode_send_body(body, settings.lp_max_frames_per_post)
        async with session.send_lock:
            session.last_seen = time.monotonic()
            try:
                fresh = session.upstream.accept(first_useq, frames)
            except UpstreamGap as gap:
                return web.Response(
                    status=409, body=encode_send_ack(gap.last_useq), content_type=MSGPACK
                )
            await _apply(request, session, fresh)
            return web.Response(
                body=encode_send_ack(session.upstream.last_useq), content_type=MSGPACK
            )
    except _Gone as gone:
        return error_response(410, gone.reason, gone.code)
    except LongPollError as exc:
        log.warning("long-poll send refused: %s", exc.reason)
        return error_response(exc.status, exc.reason)


async def _apply(request: web.Request, session: LongPollSession, frames: list[bytes]) -> None:
    conn, room = session.conn, session.room
    assert conn is not None
    for frame in frames:
        if conn.closed or room is None:
            raise _Gone(conn.close_code or CloseCode.GOING_AWAY, conn.close_reason)
        try:
            conn.admit(len(frame))
            pending = room.receive(conn, frame)
            if pending is not None:
                await pending
        except ProtocolError as exc:
            log.warning("closing %s (%d): %s", conn.label, exc.code, exc.reason)
            conn.close(exc.code, exc.reason)
            raise _Gone(exc.code, exc.reason) from exc
        except StoreError as exc:
            log.error("closing %s: %s", conn.label, exc)
            conn.close(CloseCode.INTERNAL_ERROR, "storage error")
            raise _Gone(CloseCode.INTERNAL_ERROR, "storage error") from exc
        session.upstream.processed()
    if room is not None:
        room.flush_broadcast()  # apply now: a refused update is this request's answer
    if conn.closed:
        raise _Gone(conn.close_code or CloseCode.GOING_AWAY, conn.close_reason)
    store, settings = request.app[STORE], request.app[SETTINGS]
    if store.backlog >= settings.max_store_backlog:  # the answer waits: backpressure
        await store.wait_for_backlog(settings.max_store_backlog // 2)


async def _read_body(request: web.Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise LongPollError(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def handle_close(request: web.Request) -> web.Response:
    session = request.app[LONGPOLL].get(request.match_info["sid"])
    if session is not None and session.conn is not None:
        session.conn.close(CloseCode.NORMAL, "closed by client")
    return web.Response(status=204)


def add_longpoll_routes(app: web.Application) -> None:
    app.router.add_post("/lp/open", handle_open)
    app.router.add_get("/lp/{sid}/poll", _routed(handle_poll))
    app.router.add_post("/lp/{sid}/send", _routed(handle_send))
    app.router.add_post("/lp/{sid}/close", _routed(handle_close))
