"""Prometheus text metrics at /metrics, one registry per app.

Hot-path counters are plain integers (collab.server.stats) read at scrape time by a custom
collector; only per-commit figures go through prometheus_client histograms.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collab.server.keys import LONGPOLL, METRICS, ROOMS, STORE


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # RSS, open fds, CPU seconds
        self.commit_seconds = Histogram(
            "collab_store_commit_seconds",
            "Time to commit one group of updates",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5),
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "collab_store_batch_updates",
            "Updates committed together",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 512),
            registry=self.registry,
        )

    def observe_commit(self, seconds: float, rows: int) -> None:
        self.commit_seconds.observe(seconds)
        self.batch_rows.observe(rows)


class _AppCollector(Collector):
    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        app = self._app
        rooms = app[ROOMS]
        stats = rooms.stats
        store = app[STORE]
        by_transport: Counter[str] = Counter()
        for room in rooms.rooms():
            for conn in room.connections:
                by_transport[conn.transport] += 1
        connections = GaugeMetricFamily(
            "collab_connections", "Open connections", labels=["transport"]
        )
        for transport in ("websocket", "long-poll"):
            connections.add_metric([transport], by_transport[transport])
        yield connections
        opened = CounterMetricFamily(
            "collab_connections_opened", "Connections opened", labels=["transport"]
        )
        for transport, count in sorted(stats.connections_opened.items()):
            opened.add_metric([transport], count)
        yield opened
        closes = CounterMetricFamily("collab_connection_closes", "Closes by code", labels=["code"])
        for code, count in sorted(stats.closes.items()):
            closes.add_metric([str(code)], count)
        yield closes
        yield GaugeMetricFamily("collab_rooms_loaded", "Documents in memory", value=len(rooms))
        yield CounterMetricFamily("collab_room_loads", "Documents loaded", value=rooms.loads)
        yield CounterMetricFamily(
            "collab_room_evictions", "Documents unloaded", value=rooms.evictions
        )
        yield CounterMetricFamily(
            "collab_updates_received", "Document updates received", value=stats.updates_in
        )
        yield CounterMetricFamily(
            "collab_update_bytes_received", "Bytes of updates received", value=stats.update_bytes_in
        )
        yield CounterMetricFamily(
            "collab_duplicate_updates",
            "Updates that changed nothing",
            value=stats.duplicate_updates,
        )
        yield CounterMetricFamily(
            "collab_update_batches",
            "Transactions that applied the updates peers sent in one event-loop turn",
            value=stats.update_batches,
        )
        yield CounterMetricFamily(
            "collab_broadcast_messages", "Update messages fanned out", value=stats.fanout_messages
        )
        yield CounterMetricFamily(
            "collab_awareness_received", "Awareness messages received", value=stats.awareness_in
        )
        yield GaugeMetricFamily(
            "collab_longpoll_sessions", "Open long-poll sessions", value=len(app[LONGPOLL])
        )
        yield GaugeMetricFamily(
            "collab_asyncio_tasks", "Tasks on the event loop", value=len(asyncio.all_tasks())
        )
        yield CounterMetricFamily(
            "collab_store_commits", "Group commits", value=getattr(store, "commits", 0)
        )
        yield CounterMetricFamily(
            "collab_store_compactions", "Log compactions", value=getattr(store, "compactions", 0)
        )


def install_metrics(app: web.Application) -> None:
    metrics = Metrics()
    metrics.registry.register(_AppCollector(app))
    app[METRICS] = metrics
    app.router.add_get("/metrics", _serve_metrics)


async def _serve_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
