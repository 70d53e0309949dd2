"""Test tools for the SDK: an HTTP-only proxy in front of the real server, free ports, and
subprocesses (the CLI and the example bots) run without blocking the in-process server."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.support import ROOT

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}


class HttpOnlyProxy:
    """Relays plain HTTP to ``upstream`` and refuses WebSocket upgrades, like proxies that do
    not pass WebSockets. ``lose(request)`` returning True drops the connection after the server
    handled the request: the client never sees the answer and must retry."""

    def __init__(self, upstream: str, lose: Callable[[web.Request], bool] | None = None) -> None:
        self.upstream = upstream
        self.lose = lose
        self.lost: list[str] = []
        self.refused_upgrades = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> HttpOnlyProxy:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            self.refused_upgrades += 1
            return web.Response(status=403, text="WebSockets are not allowed here")
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._http.request(
            request.method,
            self.upstream + str(request.rel_url),
            headers=headers,
            data=await request.read(),
        ) as upstream:
            body = await upstream.read()
            status = upstream.status
            content_type = upstream.headers.get("Content-Type")
        if self.lose is not None and self.lose(request):
            self.lost.append(f"{request.method} {request.path}")
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        return web.Response(
            status=status, body=body, headers={"Content-Type": content_type} if content_type else {}
        )


def free_port() -> int:
    """A port nothing listens on, so a restarted server can come back at the same URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def run_command(
    *args: str, stdin: bytes | None = None, timeout: float = 30
) -> tuple[int | None, str, str]:
    """Run ``python args...`` from the repository root; return (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode, out.decode(), err.decode()


async def start_background(*args: str) -> asyncio.subprocess.Process:
    """A long-running ``python args...`` (a bot, ``collab watch``) with piped stdout."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop_background(proc: asyncio.subprocess.Process) -> str:
    """Stop it like Ctrl-C does; return its standard error (for failure messages)."""
    if proc.returncode is None:
        proc.send_signal(2)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    return (await proc.stderr.read()).decode()


EXAMPLES = Path(ROOT) / "examples"
