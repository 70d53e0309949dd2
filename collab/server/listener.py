"""The public socket: ``GET /ws/...`` upgrades go to collab.server.websocket, every other
request to aiohttp, on the same port.

A new connection is looked at until its first bytes tell which it is (``GET /ws/`` or not),
then handed over with ``transport.set_protocol``: aiohttp gets the connection as if it had
accepted it, bytes already read included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from aiohttp import web

from collab.protocol.handshake import wants_websocket
from collab.server.keys import WEBSOCKETS
from collab.server.websocket import HANDSHAKE_SECONDS, WebSocketEndpoint, WebSocketProtocol

LISTEN_BACKLOG = 1024  # a connect storm queues in the kernel instead of being refused


class FirstBytesProtocol(asyncio.Protocol):
    """Reads until the request can be told apart, then hands the connection over."""

    __slots__ = ("_deadline", "_endpoint", "_http", "_received", "_transport")

    def __init__(self, endpoint: WebSocketEndpoint, http: Callable[[], asyncio.Protocol]) -> None:
        self._endpoint = endpoint
        self._http = http
        self._received = b""
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's too
        self._deadline = asyncio.get_running_loop().call_later(HANDSHAKE_SECONDS, transport.abort)

    def data_received(self, data: bytes) -> None:
        received = self._received + data
        websocket = wants_websocket(received)
        if websocket is None:
            self._received = received
            return
        assert self._transport is not None and self._deadline is not None
        self._deadline.cancel()
        protocol = WebSocketProtocol(self._endpoint) if websocket else self._http()
        transport, self._transport, self._received = self._transport, None, b""
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(received)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()


class CollabSite(web.BaseSite):
    """A TCP site like aiohttp's TCPSite, whose connections start with FirstBytesProtocol."""

    __slots__ = ("_host", "_port", "_reuse_port")

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, *, reuse_port: bool = False
    ) -> None:
        super().__init__(runner, backlog=LISTEN_BACKLOG)
        self._host, self._port, self._reuse_port = host, port, reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        runner = self._runner
        assert isinstance(runner, web.AppRunner) and runner.server is not None
        endpoint = runner.app[WEBSOCKETS]
        http = runner.server
        self._server = await asyncio.get_running_loop().create_server(
            lambda: FirstBytesProtocol(endpoint, http),
            self._host,
            self._port,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
            backlog=self._backlog,
        )
