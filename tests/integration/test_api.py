"""The HTTP document API, metrics and health endpoints."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest
from pycrdt import Doc, Map, Text

from collab.protocol.tokens import mint, parse_key
from collab.server.settings import Settings
from tests.support import RawClient, running_server

KEY = "k1:" + "s" * 40
ADMIN = "admin-" + "a" * 30
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


def bearer(doc: str, perm: str = "w") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(parse_key(KEY), doc, perm, 600)}"}


@pytest.fixture
async def server(settings: Settings):
    secured = replace(settings, auth_keys=(KEY,), admin_key=ADMIN)
    async with running_server(secured) as running:
        yield running


def text_update(text: str) -> bytes:
    doc = Doc()
    doc.get("content", type=Text).insert(0, text)
    doc.get("meta", type=Map)["title"] = "T"
    return doc.get_update()


async def post_update(http, server, doc_id: str, update: bytes, headers=AS_ADMIN):
    async with http.post(
        f"{server.url}/api/v1/docs/{doc_id}/update", data=update, headers=headers
    ) as resp:
        return resp.status, await resp.json()


async def test_an_update_posted_over_http_reaches_live_peers_and_the_store(http, server) -> None:
    peer = await RawClient(
        http, server.ws_url("notes/a") + "?token=" + bearer("notes/a")["Authorization"][7:]
    ).connect()
    await peer.synced.wait()
    status, body = await post_update(http, server, "notes/a", text_update("from http"))
    assert status == 200 and body == {"seq": 1, "changed": True}
    await peer.wait_for(lambda: str(peer.text()) == "from http")
    status, body = await post_update(http, server, "notes/a", text_update("from http"))
    assert status == 200  # a fresh Doc: a new client id, so it is a change again
    await peer.close()


async def test_a_duplicate_update_changes_nothing(http, server) -> None:
    update = text_update("x")
    await post_update(http, server, "d", update)
    assert await post_update(http, server, "d", update) == (200, {"seq": None, "changed": False})


async def test_get_renders_binary_json_and_text(http, server) -> None:
    await post_update(http, server, "render", text_update("hello"))
    async with http.get(f"{server.url}/api/v1/docs/render", headers=AS_ADMIN) as resp:
        assert resp.content_type == "application/octet-stream"
        doc = Doc()
        doc.apply_update(await resp.read())
        assert str(doc.get("content", type=Text)) == "hello"
    params = [("format", "json"), ("root", "content:text"), ("root", "meta:map")]
    async with http.get(
        f"{server.url}/api/v1/docs/render", params=params, headers=AS_ADMIN
    ) as resp:
        assert await resp.json() == {"content": "hello", "meta": {"title": "T"}}
    params = [("format", "text"), ("root", "content")]
    async with http.get(
        f"{server.url}/api/v1/docs/render", params=params, headers=AS_ADMIN
    ) as resp:
        assert await resp.text() == "hello"


async def test_get_works_for_unloaded_documents(http, settings) -> None:
    secured = replace(settings, auth_keys=(KEY,), admin_key=ADMIN, idle_evict_seconds=0.05)
    async with running_server(secured) as server:
        await post_update(http, server, "cold", text_update("stored"))
        await asyncio.sleep(0.3)
        params = [("format", "text"), ("root", "content")]
        async with http.get(
            f"{server.url}/api/v1/docs/cold", params=params, headers=AS_ADMIN
        ) as resp:
            assert await resp.text() == "stored"


async def test_listing_is_paginated_and_filtered(http, server) -> None:
    for doc_id in ("team/a", "team/b", "team/c", "other"):
        await post_update(http, server, doc_id, text_update(doc_id))
    async with http.get(
        f"{server.url}/api/v1/docs", params={"prefix": "team/", "limit": "2"}, headers=AS_ADMIN
    ) as resp:
        page = await resp.json()
    assert [d["id"] for d in page["docs"]] == ["team/a", "team/b"] and page["next"] == "team/b"
    assert page["docs"][0]["size"] > 0 and "updated_at" in page["docs"][0]
    async with http.get(
        f"{server.url}/api/v1/docs",
        params={"prefix": "team/", "after": page["next"]},
        headers=bearer("team/*", "r"),
    ) as resp:
        rest = await resp.json()
    assert [d["id"] for d in rest["docs"]] == ["team/c"] and rest["next"] is None


async def test_delete_closes_live_connections_with_4404(http, server) -> None:
    await post_update(http, server, "gone", text_update("bye"))
    peer = await RawClient(
        http, server.ws_url("gone") + "?token=" + bearer("gone")["Authorization"][7:]
    ).connect()
    await peer.synced.wait()
    async with http.delete(f"{server.url}/api/v1/docs/gone", headers=AS_ADMIN) as resp:
        assert resp.status == 204
    assert await peer.wait_closed() == 4404
    async with http.get(f"{server.url}/api/v1/docs/gone", headers=AS_ADMIN) as resp:
        assert resp.status == 404
    async with http.delete(f"{server.url}/api/v1/docs/gone", headers=AS_ADMIN) as resp:
        assert resp.status == 404


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/api/v1/docs", {}, 401),
        ("GET", "/api/v1/docs", {"Authorization": "Bearer wrong"}, 401),
        ("GET", "/api/v1/docs?prefix=x/", bearer("team/*", "r"), 403),
        ("GET", "/api/v1/docs?limit=0", AS_ADMIN, 400),
        ("GET", "/api/v1/docs?limit=x", AS_ADMIN, 400),
        ("GET", "/api/v1/docs/d", {}, 401),
        ("GET", "/api/v1/docs/d", bearer("other"), 403),
        ("GET", "/api/v1/docs/nothing", AS_ADMIN, 404),
        ("GET", "/api/v1/docs/a//b", AS_ADMIN, 400),
        ("GET", "/api/v1/docs/d?format=yaml", AS_ADMIN, 400),
        ("GET", "/api/v1/docs/d?format=json", AS_ADMIN, 400),
        ("GET", "/api/v1/docs/d?format=json&root=x:set", AS_ADMIN, 400),
        ("POST", "/api/v1/docs/d/update", bearer("d", "r"), 403),
        ("DELETE", "/api/v1/docs/d", bearer("d", "r"), 403),
        ("POST", "/api/v1/docs/d/compact", bearer("d"), 401),
        ("GET", "/api/v1/rooms", bearer("d"), 401),
    ],
)
async def test_api_errors(http, server, method, path, headers, status) -> None:
    await post_update(http, server, "d", text_update("x"))
    async with http.request(method, server.url + path, headers=headers) as resp:
        assert resp.status == status
        assert (await resp.json())["error"]


@pytest.mark.parametrize("body", [b"", b"\xff\xff\xff", b"\x01\x00\x05"])
async def test_garbage_updates_get_400_and_change_nothing(http, server, body: bytes) -> None:
    await post_update(http, server, "d", text_update("safe"))
    status, reply = await post_update(http, server, "d", body)
    assert status == 400 and "invalid Yjs update" in reply["error"]
    params = [("format", "text"), ("root", "content")]
    async with http.get(f"{server.url}/api/v1/docs/d", params=params, headers=AS_ADMIN) as resp:
        assert await resp.text() == "safe"


async def test_oversized_updates_get_413(http, settings) -> None:
    small = replace(settings, admin_key=ADMIN, max_message_bytes=1000)
    async with running_server(small) as server:
        status, body = await post_update(http, server, "d", bytes(5000))
        assert status == 413 and body["error"]


async def test_compact_and_evict_for_operators(http, server) -> None:
    for index in range(5):
        await post_update(http, server, "ops", text_update(str(index)))
    async with http.post(f"{server.url}/api/v1/docs/ops/compact", headers=AS_ADMIN) as resp:
        body = await resp.json()
    assert body["compacted"] and body["folded_rows"] == 5
    async with http.get(f"{server.url}/api/v1/rooms", headers=AS_ADMIN) as resp:
        assert "ops" in [room["id"] for room in (await resp.json())["rooms"]]
    async with http.post(f"{server.url}/api/v1/docs/ops/evict", headers=AS_ADMIN) as resp:
        assert (await resp.json())["evicted"] is True


async def test_metrics_change_as_traffic_flows(http, server) -> None:
    async def scrape() -> dict[str, float]:
        async with http.get(f"{server.url}/metrics") as resp:
            assert resp.status == 200 and resp.content_type == "text/plain"
            lines = (await resp.text()).splitlines()
        return {
            name: float(value)
            for name, _, value in (line.rpartition(" ") for line in lines)
            if name and not name.startswith("#")
        }

    before = await scrape()
    tok = bearer("m")["Authorization"][7:]
    peer = await RawClient(http, server.ws_url("m") + f"?token={tok}").connect()
    other = await RawClient(http, server.ws_url("m") + f"?token={tok}").connect()
    await peer.synced.wait()
    peer.text().insert(0, "metered")
    await other.wait_for(lambda: str(other.text()) == "metered")
    await peer.flush()
    during = await scrape()
    assert during['collab_connections{transport="websocket"}'] == 2
    assert during["collab_updates_received_total"] > before.get("collab_updates_received_total", 0)
    assert during["collab_broadcast_messages_total"] >= 1
    assert during["collab_rooms_loaded"] >= 1
    assert during["collab_store_commit_seconds_count"] >= 1
    await peer.close()
    await other.close()
    await asyncio.sleep(0.1)
    after = await scrape()
    assert after['collab_connections{transport="websocket"}'] == 0
    assert after['collab_connection_closes_total{code="1000"}'] >= 2


async def test_health_and_readiness_need_no_credentials(http, server) -> None:
    async with http.get(f"{server.url}/healthz") as resp:
        assert resp.status == 200
    async with http.get(f"{server.url}/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ready"


async def test_the_admin_page_is_served_and_its_data_needs_the_admin_key(http, server) -> None:
    async with http.get(f"{server.url}/admin") as resp:
        assert resp.status == 200 and "Collab admin" in await resp.text()
    async with http.get(f"{server.url}/api/v1/rooms") as resp:
        assert resp.status == 401


async def test_readiness_fails_while_the_store_cannot_be_written(http, settings) -> None:
    async with running_server(replace(settings, busy_timeout_ms=20)) as server:
        blocker = sqlite3.connect(settings.database_path, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            async with http.get(f"{server.url}/readyz") as resp:
                assert resp.status == 503 and "not writable" in (await resp.json())["error"]
        finally:
            blocker.rollback()
            blocker.close()
        async with http.get(f"{server.url}/readyz") as resp:
            assert resp.status == 200


async def test_metrics_include_process_figures(http, server) -> None:
    async with http.get(f"{server.url}/metrics") as resp:
        text = await resp.text()
    for name in ("process_resident_memory_bytes", "process_open_fds", "collab_asyncio_tasks"):
        assert f"\n{name} " in text
