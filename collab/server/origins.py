"""Which web sites may connect: ``--allowed-origins`` applied to every entry point.

Browsers send ``Origin`` on WebSocket upgrades and cross-origin requests; requests without
one (bots, scripts, curl) are not subject to it. A refused WebSocket is accepted and closed
with 4403 (y-websocket then stops retrying); refused HTTP requests get a 403 JSON error and no
CORS headers. The CORS headers themselves come from aiohttp-cors.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

import aiohttp_cors
from aiohttp import web

log = logging.getLogger(__name__)

CORS_PREFIXES = ("/lp/", "/api/")


def normalize_origin(origin: str) -> str:
    parts = urlsplit(origin.strip().lower())
    return f"{parts.scheme}://{parts.netloc}"


class OriginPolicy:
    """``*`` allows every origin; an empty list allows only the server's own origin."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.any = "*" in allowed
        self.allowed = frozenset(normalize_origin(o) for o in allowed if o != "*")

    def allows(self, origin: str | None, own_host: str) -> bool:
        if origin is None or self.any:
            return True
        normalized = normalize_origin(origin)
        return normalized in self.allowed or urlsplit(normalized).netloc == own_host.lower()


def install_origin_policy(app: web.Application, policy: OriginPolicy) -> None:
    """Refuse foreign origins on the long-poll and API routes; CORS for allowed ones."""
    options = aiohttp_cors.ResourceOptions(
        allow_credentials=False,
        allow_headers=("Authorization", "Content-Type"),
        expose_headers=("Content-Type",),
        max_age=600,
    )
    origins = ["*"] if policy.any else sorted(policy.allowed)
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    for route in list(app.router.routes()):
        path = route.resource.canonical if route.resource else ""
        if path.startswith(CORS_PREFIXES):
            cors.add(route)

    async def refuse(request: web.Request, origin: str | None) -> web.Response:
        log.warning("refused %s %s from origin %s", request.method, request.path, origin)
        return web.Response(
            status=403,
            text=json.dumps({"error": "origin not allowed"}),
            content_type="application/json",
        )

    # Not a coroutine function: it hands back the handler's coroutine, so a WebSocket that
    # stays open for hours keeps no suspended frame of this middleware.
    @web.middleware
    def refuse_foreign_origins(request: web.Request, handler):  # type: ignore[no-untyped-def]
        origin = request.headers.get("Origin")
        if request.path.startswith(CORS_PREFIXES) and not policy.allows(origin, request.host):
            return refuse(request, origin)
        return handler(request)

    app.middlewares.append(refuse_foreign_origins)
