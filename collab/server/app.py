"""create_app(settings): wires the store, the bus, the room registry and the routes."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from collab.cluster.redis import RedisBus
from collab.protocol.ratelimit import AttemptCounter
from collab.protocol.tokens import TokenVerifier, parse_key
from collab.protocol.wire import CloseCode
from collab.server.api import add_api_routes
from collab.server.keys import (
    ATTEMPTS,
    LONGPOLL,
    METRICS,
    ORIGINS,
    ROOMS,
    SETTINGS,
    STORE,
    VERIFIER,
    WEBSOCKETS,
)
from collab.server.longpoll import LongPollSessions, add_longpoll_routes
from collab.server.metrics import install_metrics
from collab.server.origins import OriginPolicy, install_origin_policy
from collab.server.pages import add_page_routes
from collab.server.rooms import Rooms
from collab.server.settings import Settings
from collab.server.websocket import WebSocketEndpoint, upgrade_reused_connection
from collab.store.base import Store
from collab.store.postgres import PostgresStore
from collab.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, store: Store | None = None) -> web.Application:
    settings = settings or Settings()
    node_id = settings.node_id or secrets.token_hex(4)
    app = web.Application(client_max_size=settings.max_message_bytes)
    app[SETTINGS] = settings
    app[STORE] = store or _store(settings)
    bus = (
        RedisBus(settings.redis_url, node_id, settings.redis_prefix) if settings.redis_url else None
    )
    app[ROOMS] = Rooms(app[STORE], settings, bus=bus)
    app[VERIFIER] = _verifier(settings)
    app[ATTEMPTS] = AttemptCounter(settings.connect_attempts_per_minute)
    app[LONGPOLL] = LongPollSessions(app[ROOMS], settings, node_id=node_id)
    app.router.add_get("/ws/{doc:.+}", upgrade_reused_connection)  # fresh ones: see listener
    add_api_routes(app)
    add_longpoll_routes(app)
    add_page_routes(app)
    install_metrics(app)
    app[ORIGINS] = OriginPolicy(settings.allowed_origins)
    if app[ORIGINS].any:
        log.warning("--allowed-origins '*': pages of every web site may connect")
    install_origin_policy(app, app[ORIGINS])
    app[WEBSOCKETS] = WebSocketEndpoint(
        settings, app[ROOMS], app[STORE], app[ORIGINS], app[VERIFIER], app[ATTEMPTS]
    )
    if getattr(app[STORE], "on_commit", False) is None:
        app[STORE].on_commit = app[METRICS].observe_commit
    app.on_startup.append(_start)
    app.on_shutdown.append(_close_connections)
    app.on_cleanup.append(_stop)
    return app


def _store(settings: Settings) -> Store:
    if settings.postgres_url:
        return PostgresStore(
            settings.postgres_url,
            schema=settings.postgres_schema,
            compact_after_rows=settings.compact_after_rows,
            compact_after_bytes=settings.compact_after_bytes,
        )
    return SQLiteStore(
        settings.database_path,
        synchronous=settings.synchronous,
        compact_after_rows=settings.compact_after_rows,
        compact_after_bytes=settings.compact_after_bytes,
        busy_timeout_ms=settings.busy_timeout_ms,
    )


def _verifier(settings: Settings) -> TokenVerifier | None:
    if not settings.auth_keys:
        log.warning("no --auth-key configured: every client may read and write every document")
        return None
    return TokenVerifier([parse_key(key) for key in settings.auth_keys])


async def _start(app: web.Application) -> None:
    await app[STORE].open()
    rooms = app[ROOMS]
    if rooms.bus is not None:
        await rooms.bus.start(rooms.on_bus_message, rooms.on_bus_reset)
        log.info("node %s joined the cluster through %s", rooms.bus.node_id, rooms.bus.url)
    rooms.start()
    app[LONGPOLL].start()
    app[WEBSOCKETS].start()


async def _close_connections(app: web.Application) -> None:
    """Graceful stop: every peer gets 1001 and every queued update is committed."""
    await app[LONGPOLL].stop()
    await app[ROOMS].close(CloseCode.GOING_AWAY, "server shutting down")
    await app[WEBSOCKETS].close(CloseCode.GOING_AWAY, "server shutting down")


async def _stop(app: web.Application) -> None:
    await app[STORE].close()
    bus = app[ROOMS].bus
    if bus is not None:
        await bus.close()
    log.info("store closed")
