"""HTTP document API (``/api/v1``) and the operational endpoints (health, readiness).

Errors are JSON ``{"error": reason}`` with a 4xx status. Every document route takes the admin
key, or a token whose claims cover the document (reading needs ``r``, changing needs ``w``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from aiohttp import web
from pycrdt import Array, Doc, Map, Text, XmlFragment

from collab.protocol.doc_ids import validate_doc_id
from collab.protocol.tokens import TokenError
from collab.protocol.wire import CloseCode, ProtocolError
from collab.server.auth import authorize, http_status, is_admin, request_token
from collab.server.keys import ROOMS, SETTINGS, STORE, VERIFIER
from collab.server.openapi import serve_spec
from collab.store.base import StoreError

log = logging.getLogger(__name__)

ROOT_TYPES = {"text": Text, "map": Map, "array": Array, "xml": XmlFragment}
MAX_LIST_LIMIT = 1000


def json_error(status: int, reason: str) -> web.HTTPException:
    cls = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        413: web.HTTPRequestEntityTooLarge,
        503: web.HTTPServiceUnavailable,
    }[status]
    if status == 413:
        return web.HTTPRequestEntityTooLarge(
            max_size=0,
            actual_size=0,
            text=json.dumps({"error": reason}),
            content_type="application/json",
        )
    return cls(text=json.dumps({"error": reason}), content_type="application/json")


def _doc_id(request: web.Request) -> str:
    doc_id = request.match_info["doc"]
    try:
        return validate_doc_id(doc_id)
    except ProtocolError as exc:
        raise json_error(400, exc.reason) from exc


def _guard(request: web.Request, doc_id: str, write: bool) -> None:
    if is_admin(request):
        return
    if request.app[VERIFIER] is None:
        raise json_error(401, "admin key required")
    try:
        authorize(request, doc_id, write=write)
    except TokenError as exc:
        raise json_error(http_status(exc), exc.reason) from exc


def _require_admin(request: web.Request) -> None:
    if not is_admin(request):
        raise json_error(401, "admin key required")


async def list_docs(request: web.Request) -> web.Response:
    prefix = request.query.get("prefix", "")
    after = request.query.get("after", "")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError as exc:
        raise json_error(400, "limit must be an integer") from exc
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise json_error(400, f"limit must be between 1 and {MAX_LIST_LIMIT}")
    if not is_admin(request):
        _guard_listing(request, prefix)
    docs = await request.app[STORE].list_documents(prefix=prefix, after=after, limit=limit)
    rooms = request.app[ROOMS]
    items = []
    for info in docs:
        room = rooms.get(info.doc_id)
        items.append(
            {
                "id": info.doc_id,
                "size": info.stored_bytes,
                "snapshot_bytes": info.snapshot_bytes,
                "log_count": info.log_count,
                "log_bytes": info.log_bytes,
                "last_seq": info.last_seq,
                "created_at": info.created_at,
                "updated_at": info.updated_at,
                "connections": len(room.connections) if room else 0,
                "loaded": room is not None,
            }
        )
    next_after = docs[-1].doc_id if len(docs) == limit else None
    return web.json_response({"docs": items, "next": next_after})


def _guard_listing(request: web.Request, prefix: str) -> None:
    """A token may list the documents under its own ``prefix/*`` scope."""
    verifier = request.app[VERIFIER]
    if verifier is None:
        raise json_error(401, "admin key required")
    try:
        grant = verifier.verify(request_token(request))
    except TokenError as exc:
        raise json_error(401, exc.reason) from exc
    scope = "" if grant.doc == "*" else grant.doc[:-1] if grant.doc.endswith("/*") else None
    if scope is None or not prefix.startswith(scope):
        raise json_error(403, "token does not cover this prefix")


async def get_doc(request: web.Request) -> web.Response:
    doc_id = _doc_id(request)
    _guard(request, doc_id, write=False)
    state = await _state(request, doc_id)
    fmt = request.query.get("format", "binary")
    if fmt == "binary":
        return web.Response(body=state, content_type="application/octet-stream")
    roots = _roots(request)
    doc = Doc()
    doc.apply_update(state)
    if fmt == "json":
        return web.json_response({name: doc.get(name, type=kind).to_py() for name, kind in roots})
    if fmt == "text":
        if len(roots) != 1 or roots[0][1] is not Text:
            raise json_error(400, "format=text needs exactly one root=name (a text)")
        return web.Response(text=str(doc.get(roots[0][0], type=Text)))
    raise json_error(400, "format must be binary, json or text")


def _roots(request: web.Request) -> list[tuple[str, type]]:
    roots = []
    for spec in request.query.getall("root", []):
        name, _, kind = spec.partition(":")
        kind = kind or "text"
        if not name or kind not in ROOT_TYPES:
            raise json_error(400, f"root must be name:type with type in {sorted(ROOT_TYPES)}")
        roots.append((name, ROOT_TYPES[kind]))
    if not roots:
        raise json_error(400, "name the roots to render: root=content:text (repeatable)")
    return roots


async def _state(request: web.Request, doc_id: str) -> bytes:
    room = request.app[ROOMS].get(doc_id)
    if room is not None:
        return room.encode_state()
    store = request.app[STORE]
    if await store.info(doc_id) is None:
        raise json_error(404, "no such document")
    async with request.app[ROOMS].borrow(doc_id) as room:
        return room.encode_state()


async def post_update(request: web.Request) -> web.Response:
    doc_id = _doc_id(request)
    _guard(request, doc_id, write=True)
    limit = request.app[SETTINGS].max_message_bytes
    if (request.content_length or 0) > limit:
        raise json_error(413, f"update larger than {limit} bytes")
    update = await request.read()
    try:
        async with request.app[ROOMS].borrow(doc_id) as room:
            future = room.apply_update(update)
            seq = await future if future is not None else None
    except ProtocolError as exc:
        raise json_error(400, exc.reason) from exc
    except StoreError as exc:
        raise json_error(503, "storage error") from exc
    return web.json_response({"seq": seq, "changed": seq is not None})


async def delete_doc(request: web.Request) -> web.Response:
    doc_id = _doc_id(request)
    _guard(request, doc_id, write=True)
    await request.app[ROOMS].evict(doc_id, CloseCode.NOT_FOUND, "document deleted")
    if not await request.app[STORE].delete(doc_id):
        raise json_error(404, "no such document")
    log.info("deleted %r", doc_id)
    return web.Response(status=204)


async def compact_doc(request: web.Request) -> web.Response:
    _require_admin(request)
    doc_id = _doc_id(request)
    result = await request.app[STORE].compact(doc_id)
    if result is None:
        return web.json_response({"compacted": False})
    return web.json_response(
        {
            "compacted": True,
            "folded_rows": result.folded_rows,
            "bytes_before": result.bytes_before,
            "bytes_after": result.bytes_after,
        }
    )


async def evict_doc(request: web.Request) -> web.Response:
    _require_admin(request)
    doc_id = _doc_id(request)
    evicted = await request.app[ROOMS].evict(doc_id, CloseCode.TRY_AGAIN_LATER, "evicted")
    return web.json_response({"evicted": evicted})


async def loaded_rooms(request: web.Request) -> web.Response:
    """What the admin page shows: documents in memory, their peers and presence."""
    _require_admin(request)
    rooms = []
    for room in request.app[ROOMS].rooms():
        rooms.append(
            {
                "id": room.doc_id,
                "connections": [
                    {"label": c.label, "transport": c.transport, "writable": c.can_write}
                    for c in room.connections
                ],
                "presence": [
                    {"client_id": e.client_id, "clock": e.clock, "state": json.loads(e.state)}
                    for e in room.awareness.entries()
                    if e.state is not None
                ],
            }
        )
    return web.json_response({"rooms": rooms})


ADMIN_PAGE = Path(__file__).resolve().parent.parent / "static" / "admin.html"


async def admin_page(request: web.Request) -> web.FileResponse:
    """The page itself is public; everything it shows comes from admin-key API calls."""
    return web.FileResponse(ADMIN_PAGE, headers={"Cache-Control": "no-cache"})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the store can be written and, in a cluster, the bus is connected."""
    try:
        await request.app[STORE].check_writable()
    except StoreError as exc:
        return web.json_response({"status": "unavailable", "error": str(exc)}, status=503)
    bus = request.app[ROOMS].bus
    if bus is not None and not bus.connected:
        return web.json_response({"status": "unavailable", "error": "bus disconnected"}, status=503)
    return web.json_response({"status": "ready", "rooms": len(request.app[ROOMS])})


def add_api_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/admin", admin_page)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/openapi.json", serve_spec)
    app.router.add_get("/api/v1/docs", list_docs)
    app.router.add_get("/api/v1/rooms", loaded_rooms)
    app.router.add_post("/api/v1/docs/{doc:.+}/update", post_update)
    app.router.add_post("/api/v1/docs/{doc:.+}/compact", compact_doc)
    app.router.add_post("/api/v1/docs/{doc:.+}/evict", evict_doc)
    app.router.add_get("/api/v1/docs/{doc:.+}", get_doc)
    app.router.add_delete("/api/v1/docs/{doc:.+}", delete_doc)
