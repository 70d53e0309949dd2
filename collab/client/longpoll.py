"""YLP/1 long-polling transport: the same frames as the WebSocket, over plain HTTP requests.

``POST /lp/open?doc=`` starts a session; one poll loop (``GET /lp/<sid>/poll?ack=A``) fetches
frames and acknowledges them only after the session processed them, one send loop keeps at most
one ``POST /lp/<sid>/send`` in flight carrying every unacknowledged frame. Network errors and
timeouts are retried with backoff: sequence numbers make retries safe. When the server closed
the session (410) its close code ends the transport, so the session applies the same rules as
for a WebSocket close. The token travels as ``Authorization: Bearer``.

While requests are being retried the session still counts as connected (a network blip costs
no resync); after ``session_ttl`` without an answer the server has expired the session anyway,
so the transport gives up and the session opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import aiohttp

from collab.client.backoff import Backoff
from collab.client.transport import ABNORMAL_CLOSURE, OpenFailed, TransportClosed, base_url
from collab.client.ylp import (
    FrameTooLarge,
    Upstream,
    YlpError,
    decode_poll_body,
    decode_send_ack,
    encode_send_body,
)

log = logging.getLogger(__name__)

OPEN_TIMEOUT_SECONDS = 10.0
SEND_TIMEOUT_SECONDS = 30.0
POLL_GRACE_SECONDS = 10.0  # beyond the server's hold time before a poll counts as lost
CLOSE_GRACE_SECONDS = 2.0  # how long close() waits for the last frames to be acknowledged
MSGPACK = "application/msgpack"

# Close codes for error statuses whose JSON body names none.
_STATUS_CODES = {400: 4400, 401: 4401, 403: 4403, 404: 4404, 410: 1001, 413: 4413, 429: 1013}


def _refusal(status: int, body: bytes) -> tuple[int, str]:
    """The close code and reason of an error answer (``{"error": ..., "code": ...}``)."""
    reason, code = f"HTTP {status}", None
    with contextlib.suppress(ValueError, AttributeError):
        parsed: Any = json.loads(body)
        reason = str(parsed.get("error") or reason)
        code = parsed.get("code")
    if type(code) is not int:
        code = _STATUS_CODES.get(status, 1011)
    return code, reason


class LongPollTransport:
    name = "longpoll"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        sid: str,
        info: dict[str, Any],
        headers: dict[str, str],
    ) -> None:
        self._http = http
        self._base = f"{base}/lp/{sid}"
        self._headers = headers
        self._poll_timeout = float(info.get("poll_timeout_ms", 25_000)) / 1000
        self._ttl = float(info.get("session_ttl_ms", 45_000)) / 1000
        self._upstream = Upstream(int(info.get("max_post_bytes", 1 << 20)))
        self._incoming: list[bytes] = []
        self._next_incoming = 0
        self._ack = 0  # the last dseq the session has processed
        self._received = 0  # the last dseq fetched
        self._closed: TransportClosed | None = None
        self._frames_ready = asyncio.Event()
        self._caught_up = asyncio.Event()  # every fetched frame is processed: poll again
        self._caught_up.set()
        self._send_ready = asyncio.Event()
        self._all_acked = asyncio.Event()
        self._all_acked.set()
        self._tasks = [
            asyncio.create_task(self._poll_loop(), name=f"long-poll {sid[:12]}"),
            asyncio.create_task(self._send_loop(), name=f"long-poll send {sid[:12]}"),
        ]

    @classmethod
    async def open(
        cls, http: aiohttp.ClientSession, url: str, doc_id: str, token: str | None
    ) -> LongPollTransport:
        base = str(base_url(url))
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        try:
            async with http.post(
                f"{base}/lp/open",
                params={"doc": doc_id},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=OPEN_TIMEOUT_SECONDS),
            ) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise OpenFailed(f"long-poll open failed: {exc!r}") from exc
        if status != 200:
            code, reason = _refusal(status, body)
            if status >= 500 or status == 404:  # not (yet) serving long-polling: retry later
                raise OpenFailed(f"long-poll open answered {status}: {reason}")
            raise OpenFailed(reason, code)
        try:
            info = json.loads(body)
            sid = info["sid"]
        except (ValueError, KeyError, TypeError) as exc:
            raise OpenFailed("long-poll open answer is not a session") from exc
        return cls(http, base, str(sid), info, headers)

    # -- Transport ---------------------------------------------------------------------------

    async def send(self, frame: bytes) -> None:
        if self._closed is not None:
            raise self._closed
        try:
            self._upstream.push(frame)
        except FrameTooLarge as exc:
            self._fail(4413, str(exc))
            raise TransportClosed(4413, str(exc)) from exc
        self._all_acked.clear()
        self._send_ready.set()

    async def receive(self) -> bytes:
        # Asking for the next frame means the previous one is processed.
        self._ack = self._received - (len(self._incoming) - self._next_incoming)
        if self._next_incoming == len(self._incoming):
            self._incoming, self._next_incoming = [], 0
            self._caught_up.set()
        while self._next_incoming == len(self._incoming):
            if self._closed is not None:
                raise self._closed
            self._frames_ready.clear()
            await self._frames_ready.wait()
        frame = self._incoming[self._next_incoming]
        self._next_incoming += 1
        return frame

    async def close(self) -> None:
        if self._closed is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                    await self._all_acked.wait()
            self._fail(1000, "closed by client")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with self._http.post(
                    f"{self._base}/close",
                    headers=self._headers,
                    timeout=aiohttp.ClientTimeout(total=CLOSE_GRACE_SECONDS),
                ):
                    pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- loops -------------------------------------------------------------------------------

    def _fail(self, code: int, reason: str) -> None:
        if self._closed is None:
            self._closed = TransportClosed(code, reason)
            self._frames_ready.set()
            self._caught_up.set()
            self._send_ready.set()

    async def _request(
        self, method: str, path: str, timeout: float, **kwargs: Any
    ) -> tuple[int, bytes]:
        async with self._http.request(
            method,
            f"{self._base}/{path}",
            timeout=aiohttp.ClientTimeout(total=timeout),
            **kwargs,
        ) as resp:
            return resp.status, await resp.read()

    async def _poll_loop(self) -> None:
        backoff = Backoff(base=0.25, cap=5.0)
        last_answer = time.monotonic()
        while True:
            await self._caught_up.wait()
            if self._closed is not None:
                return
            ack = self._ack
            try:
                status, body = await self._request(
                    "GET",
                    "poll",
                    self._poll_timeout + POLL_GRACE_SECONDS,
                    params={"ack": ack},
                    headers=self._headers,
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                if not await self._retry("poll", exc, backoff, last_answer):
                    return
                continue
            if status >= 500:  # the server (or a proxy) is in trouble: like a network error
                if not await self._retry("poll", f"HTTP {status}", backoff, last_answer):
                    return
                continue
            last_answer = time.monotonic()
            if status == 200:
                backoff.reset()
                try:
                    first, frames = decode_poll_body(body)
                    if first != ack + 1:
                        raise YlpError(f"poll answer starts at {first}, expected {ack + 1}")
                except YlpError as exc:
                    self._fail(ABNORMAL_CLOSURE, str(exc))
                    return
                if frames:
                    self._caught_up.clear()
                    self._incoming.extend(frames)
                    self._received = ack + len(frames)
                    self._frames_ready.set()
            elif status != 409:  # 409: an abandoned poll of ours was superseded, poll again
                self._fail(*_refusal(status, body))
                return

    async def _send_loop(self) -> None:
        backoff = Backoff(base=0.25, cap=5.0)
        last_answer = time.monotonic()
        upstream = self._upstream
        while True:
            if not upstream:
                self._all_acked.set()
                self._send_ready.clear()
                await self._send_ready.wait()
            if self._closed is not None:
                return
            if not upstream:
                continue
            first, frames = upstream.batch()
            try:
                status, body = await self._request(
                    "POST",
                    "send",
                    SEND_TIMEOUT_SECONDS,
                    data=encode_send_body(first, frames),
                    headers={**self._headers, "Content-Type": MSGPACK},
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                if not await self._retry("send", exc, backoff, last_answer):
                    return
                continue
            if status >= 500:
                if not await self._retry("send", f"HTTP {status}", backoff, last_answer):
                    return
                continue
            last_answer = time.monotonic()
            if status in (200, 409):  # 409: a gap, resend after the server's last_useq
                backoff.reset()
                try:
                    upstream.acked(decode_send_ack(body))
                except YlpError as exc:
                    self._fail(ABNORMAL_CLOSURE, str(exc))
                    return
            else:
                self._fail(*_refusal(status, body))
                return

    async def _retry(self, what: str, error: object, backoff: Backoff, since: float) -> bool:
        """Wait before retrying a failed request; False once the server must have expired us."""
        if time.monotonic() - since > self._ttl:
            self._fail(ABNORMAL_CLOSURE, f"long-poll server unreachable: {error!r}")
            return False
        log.debug("long-poll %s failed (%r), retrying", what, error)
        await asyncio.sleep(backoff.next_delay())
        return self._closed is None
