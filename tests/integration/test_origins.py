"""--allowed-origins on every entry point: WebSocket, long-poll, API, and CORS preflights."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import pytest

from collab.protocol.wire import CloseCode
from collab.server.settings import Settings
from tests.support import RawClient, running_server

GOOD = "http://good.example:8080"
EVIL = "http://evil.example"


@pytest.fixture
async def server(settings: Settings):
    async with running_server(replace(settings, allowed_origins=(GOOD,))) as running:
        yield running


async def ws_close_code(http, url: str, origin: str | None) -> int | None:
    headers = {"Origin": origin} if origin else {}
    ws = await http.ws_connect(url, headers=headers)
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return msg.data
        if msg.type is aiohttp.WSMsgType.BINARY:  # the server greeted: accepted
            await ws.close()
            return None


async def test_websocket_from_a_refused_origin_is_closed_with_4403(http, server) -> None:
    writer = await RawClient(http, server.ws_url("doc")).connect()
    await writer.synced.wait()
    writer.text().insert(0, "untouched")
    await writer.flush()
    assert await ws_close_code(http, server.ws_url("doc"), EVIL) == CloseCode.FORBIDDEN
    assert await ws_close_code(http, server.ws_url("doc"), GOOD) is None
    assert await ws_close_code(http, server.ws_url("doc"), None) is None  # not a browser
    own = server.url  # the server's own origin is always fine
    assert await ws_close_code(http, server.ws_url("doc"), own) is None
    await writer.close()


ROUTES = [
    ("POST", "/lp/open?doc=doc"),
    ("GET", "/lp/x.y/poll?ack=0"),
    ("POST", "/lp/x.y/send"),
    ("POST", "/lp/x.y/close"),
    ("GET", "/api/v1/docs"),
    ("GET", "/api/v1/docs/doc"),
    ("POST", "/api/v1/docs/doc/update"),
    ("DELETE", "/api/v1/docs/doc"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_preflights_answer_allowed_origins_only(http, server, method, path) -> None:
    asks = {"Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    async with http.options(server.url + path, headers={"Origin": GOOD, **asks}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == GOOD
        assert method in resp.headers["Access-Control-Allow-Methods"]
        assert "authorization" in resp.headers["Access-Control-Allow-Headers"].lower()
        assert "Access-Control-Allow-Credentials" not in resp.headers
    async with http.options(server.url + path, headers={"Origin": EVIL, **asks}) as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_requests_from_refused_origins_get_403_without_cors(http, server, method, path):
    async with http.request(method, server.url + path, headers={"Origin": EVIL}) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"] == "origin not allowed"
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_allowed_origins_get_cors_headers_on_long_poll(http, server) -> None:
    async with http.post(f"{server.url}/lp/open?doc=doc", headers={"Origin": GOOD}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == GOOD
        assert "Set-Cookie" not in resp.headers  # all session state is in the URL


async def test_any_origin_with_a_star(http, settings) -> None:
    async with running_server(replace(settings, allowed_origins=("*",))) as server:
        assert await ws_close_code(http, server.ws_url("doc"), EVIL) is None
        async with http.post(f"{server.url}/lp/open?doc=doc", headers={"Origin": EVIL}) as resp:
            assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"]


async def test_the_default_is_same_origin_only(http, settings) -> None:
    async with running_server(settings) as server:
        assert await ws_close_code(http, server.ws_url("doc"), GOOD) == CloseCode.FORBIDDEN
        assert await ws_close_code(http, server.ws_url("doc"), server.url) is None
