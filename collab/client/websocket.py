"""WebSocket transport: ``/ws/{doc}`` with the token as ``?token=`` (as y-websocket sends it)."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import quote

import aiohttp
from yarl import URL

from collab.client.transport import ABNORMAL_CLOSURE, OpenFailed, TransportClosed, base_url

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a step 2 of a large document is one big frame
HEARTBEAT_SECONDS = 30.0  # protocol pings notice a dead TCP peer
SILENCE_SECONDS = 30.0  # the server sends a keep-alive after 15 s; twice that means it is gone
OPEN_TIMEOUT_SECONDS = 10.0
TRY_AGAIN_LATER = 1013


def websocket_url(url: str, doc_id: str) -> URL:
    """``ws[s]://host/ws/<doc>``; the id is sent verbatim (``a/../b`` is not collapsed)."""
    base = base_url(url)
    scheme = "wss" if base.scheme == "https" else "ws"
    raw = str(base.with_scheme(scheme)) + "/ws/" + quote(doc_id, safe="/~._-")
    return URL(raw, encoded=True)


class WebSocketTransport:
    name = "websocket"

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    @classmethod
    async def open(
        cls, http: aiohttp.ClientSession, url: str, doc_id: str, token: str | None
    ) -> WebSocketTransport:
        target = websocket_url(url, doc_id)
        if token is not None:
            target = target.update_query(token=token)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
                ws = await http.ws_connect(
                    target,
                    max_msg_size=MAX_MESSAGE_BYTES,
                    heartbeat=HEARTBEAT_SECONDS,
                    autoclose=True,
                )
        except aiohttp.WSServerHandshakeError as exc:
            # 429: the server throttles us, WebSockets do work; anything else may be a proxy
            # that does not pass them (counts towards the long-polling fallback).
            code = TRY_AGAIN_LATER if exc.status == 429 else None
            raise OpenFailed(f"WebSocket upgrade refused: HTTP {exc.status}", code) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise OpenFailed(f"WebSocket connection failed: {exc!r}") from exc
        return cls(ws)

    async def send(self, frame: bytes) -> None:
        try:
            await self._ws.send_bytes(frame)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise TransportClosed(ABNORMAL_CLOSURE, f"send failed: {exc!r}") from exc

    async def receive(self) -> bytes:
        while True:
            try:
                msg = await self._ws.receive(timeout=SILENCE_SECONDS)
            except TimeoutError:
                await self.close()
                raise TransportClosed(ABNORMAL_CLOSURE, "no message from the server") from None
            if msg.type is aiohttp.WSMsgType.BINARY:
                return msg.data
            if msg.type is aiohttp.WSMsgType.CLOSE:
                raise TransportClosed(msg.data, msg.extra or "")
            if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                raise TransportClosed(self._ws.close_code or ABNORMAL_CLOSURE, "")
            if msg.type is aiohttp.WSMsgType.ERROR:
                raise TransportClosed(ABNORMAL_CLOSURE, repr(msg.data))
            # text frames are not part of the protocol; y-websocket ignores them too

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
