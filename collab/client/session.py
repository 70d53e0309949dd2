"""A bot's live view of one document: connect, stay connected, sync, flush, watch, show presence.

One task per session runs the connection loop: open a transport (WebSocket first; with
``transport="auto"`` long-polling after two WebSocket failures in a row), run the y-websocket
exchange over it, and on any close other than 4400-4499 reconnect after a jittered exponential
backoff (reset once a connection syncs). Each new connection resyncs by step 1 / step 2, which
also delivers the edits made while offline. 4401 asks a token provider for a new token once.
Once on long-polling, a reconnection more than 60 s later tries a WebSocket again first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal

import aiohttp
from pycrdt import Array, Doc, Map, Text, Transaction, XmlFragment

from collab.client.backoff import Backoff
from collab.client.changes import ChangeStream
from collab.client.errors import (
    PermanentCloseError,
    PermissionDeniedError,
    SessionClosedError,
    is_permanent,
)
from collab.client.longpoll import LongPollTransport
from collab.client.presence import Presence
from collab.client.sync import DocSync, Received
from collab.client.tokens import Token, TokenSource
from collab.client.transport import ABNORMAL_CLOSURE, OpenFailed, Transport, TransportClosed
from collab.client.websocket import WebSocketTransport
from collab.protocol.wire import ProtocolError

log = logging.getLogger("collab.client")

TransportName = Literal["auto", "websocket", "longpoll"]
UNAUTHORIZED = 4401
WEBSOCKET_FAILURES_BEFORE_FALLBACK = 2
WEBSOCKET_PROBE_SECONDS = 60.0  # on long-polling, try a WebSocket again at reconnects after this
PRESENCE_TICK_SECONDS = 3.0  # how often renewals and peer timeouts are checked
CLOSE_GRACE_SECONDS = 2.0


class Session:
    """A connected copy of one document; use ``async with connect(...) as session``.

    The pycrdt ``Doc`` is ``session.doc``. Traps worth knowing: roots must be typed (use
    ``text()``, ``map()``, ``array()``, ``xml()``, not ``doc[name]``); numbers read back as
    floats (JavaScript has no ints); never ``m[key] += ...`` on a Text inside a Map (that
    replaces it: mutate ``m[key]`` itself); never edit the document inside an observer (react in
    ``async for change in session.changes()`` instead); Text positions are UTF-8 byte offsets
    (see ``collab.client.text``).
    """

    def __init__(
        self,
        url: str,
        doc_id: str,
        *,
        token: Token = None,
        transport: TransportName = "auto",
        user: Mapping[str, Any] | None = None,
        http: aiohttp.ClientSession | None = None,
        client_id: int | None = None,
    ) -> None:
        if transport not in ("auto", "websocket", "longpoll"):
            raise ValueError(f"transport must be auto, websocket or longpoll, not {transport!r}")
        self.url = url
        self.doc_id = doc_id
        self.doc: Doc = Doc() if client_id is None else Doc(client_id=client_id)
        self.presence = Presence(self.doc.client_id, {"user": dict(user)} if user else None)
        self._sync = DocSync(self.doc, self.presence, self._wake_sender)
        self._tokens = TokenSource(token)
        self._mode = transport
        self._http = http
        self._owns_http = http is None
        self._transport: Transport | None = None
        self._denied: str | None = None  # on the current connection
        self._websocket_failures = 0
        self._long_polling_since = 0.0
        self._synced = False
        self._barriers: dict[int, asyncio.Future[bool]] = {}
        self._streams: weakref.WeakSet[ChangeStream] = weakref.WeakSet()
        self._outgoing = asyncio.Event()
        self._sender_idle = asyncio.Event()
        self._pulse = asyncio.Event()
        self._error: BaseException | None = None
        self._error_seen = False
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        if exc is None and self._error is not None and not self._error_seen:
            self._error_reported()
            raise self._error

    async def start(self) -> None:
        """Start connecting in the background (``synced()`` waits for the first sync)."""
        if self._tasks:
            return
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
            )
        self._tasks = [
            asyncio.create_task(self._run(), name=f"collab session {self.doc_id}"),
            asyncio.create_task(self._presence_ticker(), name=f"collab presence {self.doc_id}"),
        ]

    async def close(self) -> None:
        """Say goodbye (presence removal, queued frames sent) and disconnect; idempotent."""
        if self._closing:
            return
        self._closing = True
        if self._transport is not None:
            leave = self.presence.leave()
            if leave is not None:
                self._sync.queue(leave)
            with contextlib.suppress(TimeoutError):  # idle: the outbox went to the transport
                async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                    await self._sender_idle.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._end_streams(None)
        self._notify()
        self._sync.detach()
        if self._owns_http and self._http is not None:
            await self._http.close()

    # -- what bots use -----------------------------------------------------------------------

    @property
    def client_id(self) -> int:
        return self.doc.client_id

    @property
    def is_synced(self) -> bool:
        """Connected, and the server's step 2 for this connection arrived."""
        return self._synced

    @property
    def transport(self) -> str | None:
        """``"websocket"`` or ``"longpoll"`` while connected, else None."""
        return None if self._transport is None else self._transport.name

    @property
    def peers(self) -> dict[int, Any]:
        """clientID -> awareness state of everyone else in the document."""
        return self.presence.peers

    def text(self, name: str = "content") -> Text:
        return self._root(name, Text)

    def map(self, name: str) -> Map:
        return self._root(name, Map)

    def array(self, name: str) -> Array:
        return self._root(name, Array)

    def xml(self, name: str) -> XmlFragment:
        return self._root(name, XmlFragment)

    def _root(self, name: str, kind: type[Any]) -> Any:
        root = self.doc.get(name, type=kind)
        self._sync.observe_root(name, root)
        return root

    def transaction(self) -> Transaction:
        """Group edits into one update: ``with session.transaction(): ...``."""
        return self.doc.transaction()

    def changes(self) -> ChangeStream:
        """Remote changes from now on: ``async for change in session.changes()``."""
        stream = ChangeStream(on_error=self._error_reported)
        if self._error is not None:
            stream.end(self._error)
        elif self._closing:
            stream.end()
        else:
            self._streams.add(stream)
        return stream

    async def synced(self) -> None:
        """Wait until the session is connected and synced (again, after a disconnection)."""
        await self.wait_for(lambda: self._synced)

    async def flush(self) -> None:
        """Return once the server has stored every edit made before the call.

        Sends a step 1 behind the queued updates and waits for the step 2 reply, which the
        server sends only after committing them; if the connection drops first, the next
        connection's resync carries the edits and the barrier is repeated there.
        """
        while True:
            await self.synced()
            number = self._sync.send_step1()
            barrier = asyncio.get_running_loop().create_future()
            self._barriers[number] = barrier
            if await barrier:
                if self._denied is not None:
                    raise PermissionDeniedError(self._denied)
                return

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until ``predicate()`` holds; it is re-checked after every frame received."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._check_open()
                await self._pulse.wait()

    def _check_open(self) -> None:
        if self._error is not None:
            self._error_reported()
            raise self._error
        if self._closing:
            raise SessionClosedError("the session is closed")

    def _error_reported(self) -> None:
        """The owner has seen the error: leaving ``async with`` need not raise it again."""
        self._error_seen = True

    def _notify(self) -> None:
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()

    # -- the connection loop -----------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff()
        try:
            while True:
                kind = self._next_transport()
                try:
                    transport = await self._open(kind)
                except OpenFailed as exc:
                    log.info("%s: %s", self.doc_id, exc)
                    if self._after_close(kind, exc.code, exc.reason, reached=False):
                        continue
                    await asyncio.sleep(backoff.next_delay())
                    continue
                code, reason, reached = await self._serve(transport, backoff)
                log.info("%s: %s closed (%s %s)", self.doc_id, kind, code, reason)
                if self._after_close(kind, code, reason, reached):
                    continue
                await asyncio.sleep(backoff.next_delay())
        except PermanentCloseError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug: surface it instead of hanging the bot
            log.exception("%s: the session failed", self.doc_id)
            self._fail(exc)

    def _next_transport(self) -> str:
        if self._mode != "auto":
            return self._mode
        if self._websocket_failures < WEBSOCKET_FAILURES_BEFORE_FALLBACK:
            return "websocket"
        if time.monotonic() - self._long_polling_since >= WEBSOCKET_PROBE_SECONDS:
            self._websocket_failures = WEBSOCKET_FAILURES_BEFORE_FALLBACK - 1  # one probe
            return "websocket"
        return "longpoll"

    async def _open(self, kind: str) -> Transport:
        token = await self._tokens.get()
        assert self._http is not None
        if kind == "websocket":
            return await WebSocketTransport.open(self._http, self.url, self.doc_id, token)
        return await LongPollTransport.open(self._http, self.url, self.doc_id, token)

    def _after_close(self, kind: str, code: int | None, reason: str, reached: bool) -> bool:
        """Decide what follows a failed or closed connection; True: reconnect at once."""
        if code == UNAUTHORIZED and self._tokens.refresh():
            log.info("%s: token refused, asking the provider for a new one", self.doc_id)
            return True
        if is_permanent(code):
            assert code is not None
            raise PermanentCloseError(code, reason)
        blocked = not reached and code in (None, ABNORMAL_CLOSURE)
        if self._mode == "auto" and kind == "websocket" and blocked:
            self._websocket_failures += 1
            if self._websocket_failures == WEBSOCKET_FAILURES_BEFORE_FALLBACK:
                log.info("%s: WebSocket unavailable, falling back to long-polling", self.doc_id)
                self._long_polling_since = time.monotonic()
                return True
        return False

    async def _serve(self, transport: Transport, backoff: Backoff) -> tuple[int, str, bool]:
        """Run one connection; return its close code and reason, and whether it received
        anything (a WebSocket that never answers counts towards the fallback)."""
        self._transport = transport
        self._denied = None
        self._sync.connection_made()
        sender = asyncio.create_task(self._send_loop(transport))
        reached = False
        try:
            while True:
                frame = await transport.receive()
                if not reached:
                    reached = True
                    if transport.name == "websocket":
                        self._websocket_failures = 0
                try:
                    received = self._sync.receive(frame)
                except ProtocolError as exc:
                    log.warning("%s: %s; reconnecting", self.doc_id, exc.reason)
                    return ABNORMAL_CLOSURE, exc.reason, reached
                self._handle(received, backoff)
        except TransportClosed as closed:
            return closed.code, closed.reason, reached
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            self._transport = None
            self._synced = False
            self._sync.connection_lost()
            barriers, self._barriers = self._barriers, {}
            for barrier in barriers.values():
                if not barrier.done():
                    barrier.set_result(False)
            self._notify()
            await asyncio.shield(transport.close())

    def _handle(self, received: Received, backoff: Backoff) -> None:
        if received.change is not None:
            for stream in list(self._streams):
                stream.push(received.change)
        if received.denied is not None:
            self._denied = received.denied
        if received.step2:
            if received.step2 == 1:
                self._synced = True
                backoff.reset()
                self._tokens.accepted()
            for number in [n for n in self._barriers if n <= received.step2]:
                barrier = self._barriers.pop(number)
                if not barrier.done():
                    barrier.set_result(True)
        self._notify()

    def _wake_sender(self) -> None:
        self._sender_idle.clear()
        self._outgoing.set()

    async def _send_loop(self, transport: Transport) -> None:
        outbox = self._sync.outbox
        try:
            while True:
                while outbox:
                    await transport.send(outbox.popleft())
                self._outgoing.clear()
                self._sender_idle.set()
                await self._outgoing.wait()
        except TransportClosed:
            await transport.close()  # the receiving side then ends the connection

    async def _presence_ticker(self) -> None:
        """Renew our presence every 15 s (peers drop states older than 30 s) and drop the
        peers that stopped renewing theirs."""
        while True:
            await asyncio.sleep(PRESENCE_TICK_SECONDS)
            if self._transport is not None and self.presence.renewal_due():
                self.presence.renew()
            if self.presence.expire():
                self._notify()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._end_streams(error)
        self._notify()

    def _end_streams(self, error: BaseException | None) -> None:
        for stream in list(self._streams):
            stream.end(error)
        self._streams = weakref.WeakSet()


def connect(
    url: str,
    doc_id: str,
    *,
    token: Token = None,
    transport: TransportName = "auto",
    user: Mapping[str, Any] | None = None,
    http: aiohttp.ClientSession | None = None,
    client_id: int | None = None,
) -> Session:
    """A session on ``doc_id`` at ``url`` (the server's http base, e.g. http://127.0.0.1:8000).

    ``async with connect(url, doc, user={"name": "summary-bot"}) as session:`` starts it;
    ``token`` is a string or a function/coroutine function returning one (called again after
    a 4401); ``transport`` is ``"auto"``, ``"websocket"`` or ``"longpoll"``; ``user`` becomes
    the awareness state ``{"user": user}`` (None: the session stays invisible); ``http`` shares
    an aiohttp session between many sessions.
    """
    return Session(
        url, doc_id, token=token, transport=transport, user=user, http=http, client_id=client_id
    )
