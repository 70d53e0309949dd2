"""Connect storm: C clients join one document, or C documents, as fast as the server lets them.

The clients live in worker processes (collab.bench.scenarios.reader_pool): one Python process
spends more per connect than a fast server does, so it would measure itself. The workers start
together on one signal and hold their connections until the server's memory has been read.
"""

from __future__ import annotations

import asyncio

from collab.bench.peer import Writer, doc_url, new_session
from collab.bench.results import ScenarioResult
from collab.bench.scenarios.common import (
    MS,
    Joins,
    KiB,
    Target,
    close_all,
    cpu_metrics,
    open_synced,
    per_item,
    percentile,
    report_connect_errors,
    report_peer_trouble,
)
from collab.bench.scenarios.reader_pool import (
    PoolError,
    ReaderPool,
    default_processes,
    report_reader_trouble,
)
from collab.bench.system import CpuMeter, rss_bytes

_SEED_UPDATES = 20  # the shared document is not empty, so its step2 is not either


def _storm_metrics(result: ScenarioResult, joins: Joins) -> None:
    """Join rate and connect + sync percentiles (from the connect call to the server's step2)."""
    times = joins.seconds
    result.add("connected", "clients synced", joins.synced)
    rate = joins.synced / max(joins.elapsed, 1e-9)
    result.add("connect_rate", "connections/s (connect + sync)", rate, "conn/s")
    result.add("sync_p50_ms", "connect + sync p50", percentile(times, 50) * MS, "ms")
    result.add("sync_p99_ms", "connect + sync p99", percentile(times, 99) * MS, "ms")
    result.add("sync_max_ms", "connect + sync max", percentile(times, 100) * MS, "ms")


async def connect(
    target: Target, clients: int = 1000, docs: int = 1, client_processes: int | None = None
) -> ScenarioResult:
    """A storm of C clients joining ``docs`` documents (``connect_concurrency`` at a time, in
    all, over ``client_processes`` worker processes).

    With one document, it holds a few updates first (a writer stays connected), so step2 is
    not empty; with many, client i joins document i mod ``docs`` and the documents are new,
    so the storm also measures creating them.
    """
    docs = max(1, min(docs, clients))
    processes = max(1, min(client_processes or default_processes(), clients))
    where = "one document" if docs == 1 else f"{docs} new documents"
    result = ScenarioResult(
        "connect",
        f"Connect storm: {clients} clients to {where}, {target.connect_concurrency} at a time "
        f"({processes} client process{'es' * (processes > 1)})",
        {
            "clients": clients,
            "docs": docs,
            "concurrency": target.connect_concurrency,
            "client_processes": processes,
        },
    )
    pid = target.server_pid
    doc_ids = [target.new_doc(f"connect{i}") for i in range(docs)]
    urls = [doc_url(target.url, doc_ids[i % docs]) for i in range(clients)]
    writer = None
    try:
        async with (
            ReaderPool.running(target, "websocket", urls, processes) as pool,
            new_session() as session,
        ):
            try:
                if docs == 1:
                    writer = await open_synced(
                        session, target, urls[0], "writer-0", Writer, index=0
                    )
                    assert isinstance(writer, Writer)
                    for _ in range(_SEED_UPDATES):
                        await writer.send(writer.next_update(), target.timeout)
                await asyncio.sleep(0.2)
                rss_before = rss_bytes(pid) if pid else None
                meter = CpuMeter(pid, pool.pids)
                joins = await pool.connect_all()
                cpu = meter.percent()
                rss_after = rss_bytes(pid) if pid else None  # the clients are still connected
                _storm_metrics(result, joins)
                result.add(
                    "rss_per_conn_kib",
                    "server RSS per connection" + (" (with its document)" if docs > 1 else ""),
                    per_item(rss_after, rss_before, joins.synced, KiB),
                    "KiB",
                )
                cpu_metrics(result, cpu)
                report_connect_errors(result, joins.errors, clients)
                report_reader_trouble(result, await pool.stop())
                report_peer_trouble(result, [writer] if writer else [])
            finally:
                await close_all([writer] if writer else [], target.timeout)
    except PoolError as exc:
        result.problem(str(exc))
    return result
