"""Operational HTTP endpoints: health, readiness and the landing page."""

from __future__ import annotations

from aiohttp import web

from collab.server.keys import ROOMS, STORE
from collab.server.rooms import Rooms
from collab.store.base import StoreError


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the store answers a read."""
    try:
        await request.app[STORE].info("")
    except StoreError as exc:
        return web.json_response({"status": "unavailable", "error": str(exc)}, status=503)
    rooms: Rooms = request.app[ROOMS]
    return web.json_response({"status": "ready", "rooms": len(rooms)})


async def index(request: web.Request) -> web.Response:
    docs = await request.app[STORE].list_documents(limit=200)
    items = "".join(f"<li><code>{d.doc_id}</code> ({d.stored_bytes} bytes)</li>" for d in docs)
    html = (
        "<!doctype html><meta charset=utf-8><title>Collab</title>"
        "<h1>Collab</h1><p>Connect a Yjs client to <code>ws://HOST:PORT/ws/&lt;doc&gt;</code>.</p>"
        f"<h2>Documents</h2><ul>{items or '<li>none yet</li>'}</ul>"
    )
    return web.Response(text=html, content_type="text/html")
