"""Durable writes: each update followed by a barrier before the next one is sent.

On the wire a barrier is a sync step1 answered by a step2: Collab answers only once the
connection's earlier updates are committed (what the Python SDK's ``flush()`` waits for), so
the rate is that of acknowledged, stored edits. Any y-websocket server answers step1, so the
scenario runs anywhere; a server without persistence answers at once and stores nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aiohttp

from collab.bench.peer import Writer, doc_url, new_session
from collab.bench.results import ScenarioResult
from collab.bench.scenarios.common import (
    MS,
    Target,
    check_convergence,
    close_all,
    cpu_metrics,
    marked_text_check,
    open_many,
    open_synced,
    percentile,
    report_connect_errors,
    report_peer_trouble,
)
from collab.bench.system import CpuMeter


async def durable(target: Target, writers: int = 1, duration: float = 5.0) -> ScenarioResult:
    """W writers (one document each) send an update and wait for its barrier, repeatedly."""
    result = ScenarioResult(
        "durable",
        f"Durable writes: {writers} writer{'s' * (writers > 1)}, a barrier after every "
        f"update, {duration:g} s",
        {"writers": writers, "duration": duration},
    )
    urls = [doc_url(target.url, target.new_doc(f"durable{i}")) for i in range(writers)]
    async with new_session() as session:

        async def one(index: int) -> Writer:
            url = urls[index]
            peer = await open_synced(session, target, url, f"writer-{index}", Writer, index=index)
            assert isinstance(peer, Writer)
            return peer

        opened = await open_many(writers, one, target.connect_concurrency)
        peers = sorted(opened.peers, key=lambda w: w.index)
        report_connect_errors(result, opened.errors, writers)
        try:
            if not peers:
                return result
            meter = CpuMeter(target.server_pid)
            start = time.perf_counter()
            deadline = start + duration
            runs = await asyncio.gather(*(_write(w, deadline, target.timeout) for w in peers))
            elapsed = time.perf_counter() - start
            cpu = meter.percent()
            latencies = sorted(seconds for times, _ in runs for seconds in times)
            failed = sum(failures for _, failures in runs)
            _metrics(result, latencies, elapsed, len(peers))
            result.add("barriers_failed", "barriers not answered in time", failed)
            cpu_metrics(result, cpu)
            if failed:
                result.problem(f"{failed} barriers were not answered within {target.timeout} s")
            report_peer_trouble(result, peers)
            first = peers[0]
            check = marked_text_check(first.written_chars, first.sent)
            await check_convergence(session, result, target, urls[first.index], check)
        finally:
            await close_all(peers, target.timeout)
    return result


async def _write(writer: Writer, deadline: float, timeout: float) -> tuple[list[float], int]:
    """Update, barrier, repeat until the deadline: (each update's send-to-answer time, failures)."""
    times: list[float] = []
    while time.perf_counter() < deadline and not writer.ws.closed:
        try:
            sent_at = await writer.send(writer.next_update(), timeout)
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            return times, 1
        if await writer.resync(timeout) is None:
            return times, 1
        times.append(time.perf_counter() - sent_at)
    return times, 0


def _metrics(
    result: ScenarioResult, latencies: Sequence[float], elapsed: float, writers: int
) -> None:
    count = len(latencies)
    result.add("writers_connected", "writers connected", writers)
    result.add("updates_stored", "updates acknowledged", count)
    result.add(
        "durable_per_s", "acknowledged updates/s (all writers)", count / elapsed, "updates/s"
    )
    result.add(
        "barrier_p50_ms", "update to acknowledgement p50", percentile(latencies, 50) * MS, "ms"
    )
    result.add(
        "barrier_p99_ms", "update to acknowledgement p99", percentile(latencies, 99) * MS, "ms"
    )
    result.add(
        "barrier_max_ms", "update to acknowledgement max", percentile(latencies, 100) * MS, "ms"
    )
