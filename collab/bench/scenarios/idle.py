"""Idle: C synced, silent connections spread over documents, what each one costs the server."""

from __future__ import annotations

import asyncio
import os

from collab.bench.peer import BasePeer, doc_url, new_session
from collab.bench.results import ScenarioResult
from collab.bench.scenarios.common import (
    KiB,
    Target,
    close_all,
    connect_many,
    mib,
    per_item,
    report_connect_errors,
    report_peer_trouble,
    warn_if_noisy,
)
from collab.bench.system import CpuMeter, open_fds, rss_bytes


async def idle(
    target: Target, connections: int = 1000, docs: int | None = None, hold: float = 5.0
) -> ScenarioResult:
    """C connected, synced, silent peers spread over documents: what each one costs the server."""
    docs = max(1, min(docs or connections // 10, connections))
    result = ScenarioResult(
        "idle",
        f"Idle: {connections} connections over {docs} documents, held {hold:g} s",
        {"connections": connections, "docs": docs, "hold": hold},
    )
    pid = target.server_pid
    doc_ids = [target.new_doc(f"idle{i}") for i in range(docs)]
    urls = [doc_url(target.url, doc_ids[i % docs]) for i in range(connections)]
    peers: list[BasePeer] = []
    async with new_session() as session:
        try:
            warm = await connect_many(
                session, target, [doc_url(target.url, target.new_doc("warm"))], "warmup"
            )
            await close_all(warm.peers, target.timeout)
            await asyncio.sleep(0.5)
            rss_before = rss_bytes(pid) if pid else None
            fds_before = open_fds(pid) if pid else None
            own_before = rss_bytes(os.getpid())
            opened = await connect_many(session, target, urls, "idle")
            peers = opened.peers
            report_connect_errors(result, opened.errors, connections)
            meter = CpuMeter(pid)
            await asyncio.sleep(hold)
            cpu = meter.percent()
            rss_after = rss_bytes(pid) if pid else None
            fds_after = open_fds(pid) if pid else None
            own_after = rss_bytes(os.getpid())
            alive = sum(1 for p in peers if not p.closed)
            keepalives = sum(p.stats.keepalives for p in peers)
            n = max(len(peers), 1)
            result.add("connected", "connections synced", len(peers))
            result.add("alive_after_hold", "still open after the hold", alive)
            result.add("connect_rate", "connect + sync rate", len(peers) / opened.elapsed, "conn/s")
            result.add("rss_before_mib", "server RSS before", mib(rss_before), "MiB")
            result.add("rss_after_mib", "server RSS with connections", mib(rss_after), "MiB")
            result.add(
                "rss_per_conn_kib",
                "server RSS per connection",
                per_item(rss_after, rss_before, n, KiB),
                "KiB",
            )
            result.add(
                "fds_per_conn",
                "server open files per connection",
                per_item(fds_after, fds_before, n, 1),
                "",
            )
            result.add("server_idle_cpu_percent", "server CPU while idle", cpu.server, "%")
            result.add("other_cpu_percent", "other processes' CPU (noise)", cpu.other, "%")
            warn_if_noisy(result, cpu)
            result.add(
                "keepalives_per_conn", "keep-alive frames per connection", keepalives / n, ""
            )
            result.add(
                "bench_rss_per_conn_kib",
                "bench client RSS per connection",
                per_item(own_after, own_before, n, KiB),
                "KiB",
            )
            report_peer_trouble(result, peers)
        finally:
            await close_all(peers, target.timeout)
        if pid:
            await asyncio.sleep(1.0)
            result.add(
                "rss_after_close_mib",
                "server RSS 1 s after closing all",
                mib(rss_bytes(pid)),
                "MiB",
            )
    return result
