"""Tokens and permissions over both transports, and the real y-websocket client's reaction."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from pycrdt import Doc, Text

from collab.protocol.tokens import mint, parse_key
from collab.protocol.wire import CloseCode, encode_update
from collab.server.keys import STORE
from collab.server.settings import Settings
from tests.integration.test_conformance_node import run_scenario
from tests.support import LongPollClient, RawClient, running_server

KEY = "k1:" + "s" * 40
OLD_KEY = "k0:" + "o" * 40
OTHER = "k1:" + "x" * 40  # same kid, different secret: a forged signature


def token(doc: str = "doc", perm: str = "w", ttl: float = 600, key: str = KEY, **kw) -> str:
    return mint(parse_key(key), doc, perm, ttl, **kw)


@pytest.fixture
async def server(settings: Settings):
    async with running_server(replace(settings, auth_keys=(KEY, OLD_KEY))) as running:
        yield running


MATRIX = [
    pytest.param(None, "doc", CloseCode.UNAUTHORIZED, id="missing"),
    pytest.param("not-a-jwt", "doc", CloseCode.UNAUTHORIZED, id="garbage"),
    pytest.param(token(key=OTHER), "doc", CloseCode.UNAUTHORIZED, id="bad-signature"),
    pytest.param(token(ttl=-120), "doc", CloseCode.UNAUTHORIZED, id="expired"),
    pytest.param(token("other"), "doc", CloseCode.FORBIDDEN, id="wrong-doc"),
    pytest.param(token("notes/*"), "notesX/a", CloseCode.FORBIDDEN, id="prefix-mismatch"),
    pytest.param(token("notes/*"), "notes/a/b", None, id="prefix-match"),
    pytest.param(token(key=OLD_KEY), "doc", None, id="rotated-key"),
    pytest.param(token(perm="r"), "doc", None, id="read-only"),
]


async def ws_outcome(http, server, doc_id: str, tok: str | None) -> int | None:
    url = server.ws_url(doc_id) + (f"?token={tok}" if tok else "")
    client = await RawClient(http, url).connect()
    await asyncio.wait(
        [asyncio.ensure_future(client.synced.wait()), asyncio.ensure_future(client.wait_closed())],
        timeout=10,
        return_when=asyncio.FIRST_COMPLETED,
    )
    code = None if client.synced.is_set() else client.close_code
    await client.close()
    return code


@pytest.mark.parametrize(("tok", "doc_id", "code"), MATRIX)
async def test_websocket_token_matrix(http, server, tok, doc_id, code) -> None:
    assert await ws_outcome(http, server, doc_id, tok) == code


@pytest.mark.parametrize(("tok", "doc_id", "code"), MATRIX)
async def test_long_poll_token_matrix(http, server, tok, doc_id, code) -> None:
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    async with http.post(f"{server.url}/lp/open", params={"doc": doc_id}, headers=headers) as r:
        body = await r.json()
        if code is None:
            assert r.status == 200 and body["sid"]
        else:
            assert r.status == {4401: 401, 4403: 403}[code]
            assert body["code"] == code and body["error"]


async def test_long_poll_accepts_the_token_in_the_query(http, server) -> None:
    async with http.post(f"{server.url}/lp/open", params={"doc": "doc", "token": token()}) as resp:
        assert resp.status == 200


async def test_read_only_edits_never_reach_others_or_the_store(http, server) -> None:
    writer = await RawClient(http, server.ws_url("doc") + f"?token={token()}").connect()
    reader = await RawClient(http, server.ws_url("doc") + f"?token={token(perm='r')}").connect()
    await writer.synced.wait()
    await reader.synced.wait()
    writer.text().insert(0, "allowed")
    await reader.wait_for(lambda: str(reader.text()) == "allowed")
    reader.text().insert(0, "forbidden ")
    await reader.set_awareness(1, '{"user":"viewer"}')  # presence is fine for viewers
    await writer.wait_for(lambda: reader.doc.client_id in writer.awareness)
    await reader.wait_for(lambda: "read-only" in reader.denied)
    await reader.flush()
    await writer.flush()
    assert str(writer.text()) == "allowed"
    assert reader.denied == ["read-only"]  # said once
    stored = await server.app[STORE].load("doc")
    assert len(stored.updates) == 1
    await writer.close()
    await reader.close()


async def test_read_only_long_poll_sessions_cannot_write(http, server) -> None:
    lp = LongPollClient(http, server.url)
    async with http.post(
        f"{server.url}/lp/open", params={"doc": "doc", "token": token(perm="r")}
    ) as resp:
        lp.sid = (await resp.json())["sid"]
    doc = Doc()
    doc.get("content", type=Text).insert(0, "nope")
    assert await lp.send(1, [encode_update(doc.get_update())]) == (200, [1])
    assert (await server.app[STORE].load("doc")).updates == []


async def test_a_connection_is_closed_with_4401_when_its_token_expires(http, server) -> None:
    short = mint(parse_key(KEY), "doc", "w", 31, now=time.time() - 30)  # 1 s left
    client = await RawClient(http, server.ws_url("doc") + f"?token={short}").connect()
    await client.synced.wait()
    assert await client.wait_closed(timeout=10) == CloseCode.UNAUTHORIZED


@pytest.mark.node
@pytest.mark.parametrize(
    ("tok", "code"),
    [(None, 4401), (token(ttl=-120), 4401), (token("other"), 4403)],
    ids=["missing", "expired", "forbidden"],
)
async def test_the_y_websocket_client_stops_retrying_on_4401_and_4403(server, tok, code) -> None:
    result = await run_scenario(
        "forbidden-stops-retry", server.url, "doc", str(code), "2000", tok or ""
    )
    assert result["code"] == code and result["attempts"] == 1
