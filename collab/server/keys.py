"""Typed keys for what create_app stores on the aiohttp Application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from collab.protocol.ratelimit import AttemptCounter
from collab.protocol.tokens import TokenVerifier
from collab.server.rooms import Rooms

if TYPE_CHECKING:
    from collab.server.longpoll import LongPollSessions
    from collab.server.metrics import Metrics
    from collab.server.origins import OriginPolicy
    from collab.server.websocket import WebSocketEndpoint
from collab.server.settings import Settings
from collab.store.base import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
ROOMS = web.AppKey("rooms", Rooms)
WEBSOCKETS: web.AppKey[WebSocketEndpoint] = web.AppKey("websockets")
ORIGINS: web.AppKey[OriginPolicy] = web.AppKey("origins")
ATTEMPTS = web.AppKey("attempts", AttemptCounter)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
VERIFIER = web.AppKey("verifier", TokenVerifier | None)  # type: ignore[arg-type]
LONGPOLL: web.AppKey[LongPollSessions] = web.AppKey("longpoll")
