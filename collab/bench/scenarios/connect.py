"""Connect storm: C clients join one document, or C documents, as fast as the server lets them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

import aiohttp

from collab.bench.peer import BasePeer, Writer, doc_url, new_session
from collab.bench.results import ScenarioResult
from collab.bench.scenarios.common import (
    MS,
    KiB,
    Opened,
    Target,
    close_all,
    cpu_metrics,
    open_many,
    open_synced,
    per_item,
    percentile,
    report_connect_errors,
    report_peer_trouble,
)
from collab.bench.system import CpuMeter, rss_bytes

_SEED_UPDATES = 20  # the shared document is not empty, so its step2 is not either


async def storm(
    session: aiohttp.ClientSession, target: Target, urls: Sequence[str], concurrency: int
) -> Opened[BasePeer]:
    """Open and sync one client per url, ``concurrency`` at a time; the clients stay open."""

    def one(index: int) -> Awaitable[BasePeer]:
        return open_synced(session, target, urls[index], f"storm-{index}")

    return await open_many(len(urls), one, concurrency)


def _storm_metrics(result: ScenarioResult, opened: Opened[BasePeer]) -> None:
    """Join rate and connect + sync percentiles (from the connect call to the server's step2)."""
    times = opened.seconds
    result.add("connected", "clients synced", len(opened.peers))
    rate = len(opened.peers) / max(opened.elapsed, 1e-9)
    result.add("connect_rate", "connections/s (connect + sync)", rate, "conn/s")
    result.add("sync_p50_ms", "connect + sync p50", percentile(times, 50) * MS, "ms")
    result.add("sync_p99_ms", "connect + sync p99", percentile(times, 99) * MS, "ms")
    result.add("sync_max_ms", "connect + sync max", percentile(times, 100) * MS, "ms")


async def connect(target: Target, clients: int = 1000, docs: int = 1) -> ScenarioResult:
    """A storm of C clients joining ``docs`` documents (``connect_concurrency`` at a time).

    With one document, it holds a few updates first (a writer stays connected), so step2 is
    not empty; with many, client i joins document i mod ``docs`` and the documents are new,
    so the storm also measures creating them.
    """
    docs = max(1, min(docs, clients))
    where = "one document" if docs == 1 else f"{docs} new documents"
    result = ScenarioResult(
        "connect",
        f"Connect storm: {clients} clients to {where}, {target.connect_concurrency} at a time",
        {"clients": clients, "docs": docs, "concurrency": target.connect_concurrency},
    )
    pid = target.server_pid
    doc_ids = [target.new_doc(f"connect{i}") for i in range(docs)]
    urls = [doc_url(target.url, doc_ids[i % docs]) for i in range(clients)]
    opened: Opened[BasePeer] = Opened()
    async with new_session() as session:
        writer = None
        try:
            if docs == 1:
                writer = await open_synced(session, target, urls[0], "writer-0", Writer, index=0)
                assert isinstance(writer, Writer)
                for _ in range(_SEED_UPDATES):
                    await writer.send(writer.next_update(), target.timeout)
            await asyncio.sleep(0.2)
            rss_before = rss_bytes(pid) if pid else None
            meter = CpuMeter(pid)
            opened = await storm(session, target, urls, target.connect_concurrency)
            cpu = meter.percent()
            rss_after = rss_bytes(pid) if pid else None
            _storm_metrics(result, opened)
            result.add(
                "rss_per_conn_kib",
                "server RSS per connection" + (" (with its document)" if docs > 1 else ""),
                per_item(rss_after, rss_before, len(opened.peers), KiB),
                "KiB",
            )
            cpu_metrics(result, cpu)
            report_connect_errors(result, opened.errors, clients)
            report_peer_trouble(result, opened.peers)
        finally:
            await close_all([*opened.peers, *([writer] if writer else [])], target.timeout)
    return result
