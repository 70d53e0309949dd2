"""Fanout: one writer at a steady rate, N readers of the same document, delivery latency.

The readers live in worker processes (collab.bench.scenarios.reader_pool): in one process,
the readers of an update are served one after another, so with a hundred readers the p99 is
mostly the bench client's own scheduling. Each reader notes when each of the writer's updates
arrived (found by its marker, so order is checked, not assumed); the latency is that time minus
the writer's send time, on the one clock every process reads.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array

from collab.bench.peer import Writer, doc_url, new_session
from collab.bench.results import ScenarioResult
from collab.bench.scenarios.common import (
    MS,
    Target,
    check_convergence,
    close_all,
    cpu_metrics,
    open_synced,
    percentile,
    report_connect_errors,
    report_peer_trouble,
    wait_until,
)
from collab.bench.scenarios.reader_pool import (
    PoolError,
    PoolTotals,
    ReaderPool,
    default_processes,
    report_reader_trouble,
)
from collab.bench.system import CpuMeter


async def fanout(
    target: Target,
    readers: int = 100,
    rate: float = 200.0,
    duration: float = 10.0,
    longpoll: bool = False,
    reader_processes: int | None = None,
) -> ScenarioResult:
    """One writer at a steady rate, N readers of the same document: delivery latency.

    With ``longpoll`` the readers use Collab's YLP/1 HTTP transport (the writer stays on the
    WebSocket); a y-websocket server has no such transport.
    """
    total = max(1, int(rate * duration))
    processes = max(1, min(reader_processes or default_processes(), readers))
    over = " over long-poll (YLP/1)" if longpoll else ""
    result = ScenarioResult(
        "fanout_longpoll" if longpoll else "fanout",
        f"Fanout: 1 writer, {readers} readers{over} ({processes} reader "
        f"process{'es' * (processes > 1)}), {rate:g} updates/s for {duration:g} s",
        {"readers": readers, "rate": rate, "duration": duration, "reader_processes": processes},
    )
    doc_id = target.new_doc("fanout")
    url = doc_url(target.url, doc_id)
    reader_urls = [target.longpoll_open_url(doc_id) if longpoll else url] * readers
    kind = "longpoll" if longpoll else "websocket"
    writer = None
    try:
        async with (
            ReaderPool.running(target, kind, reader_urls, processes, expected=total) as pool,
            new_session() as session,
        ):
            try:
                joins = await pool.connect_all()
                report_connect_errors(result, joins.errors, readers)
                if not joins.synced:
                    result.problem("no reader connected")
                    return result
                writer = await open_synced(session, target, url, "writer-0", Writer, index=0)
                assert isinstance(writer, Writer)
                meter = CpuMeter(target.server_pid, pool.pids)
                sends, start, max_lag = await _send_steadily(result, writer, target, rate, total)
                send_end = time.perf_counter()
                sent = writer.sent
                drained = await wait_until(lambda: pool.delivered_to_all(sent), target.timeout)
                cpu = meter.percent()
                totals = await pool.stop()
                latencies, missing = _latencies(totals.arrivals, total, sends, sent)
                _fanout_metrics(result, totals, latencies, missing, sent, start, send_end, max_lag)
                cpu_metrics(result, cpu)
                if not drained:
                    result.problem(
                        f"not every update reached every reader within {target.timeout} s"
                    )
                report_reader_trouble(result, totals)
                report_peer_trouble(result, [writer])
                expected = writer.text()

                def same_text(text: str) -> str:
                    if text == expected:
                        return ""
                    return (
                        f"fresh client sees {len(text)} characters, "
                        f"the writer wrote {len(expected)}"
                    )

                await check_convergence(session, result, target, url, same_text)
            finally:
                await close_all([writer] if writer else [], target.timeout)
    except PoolError as exc:
        result.problem(str(exc))
    return result


async def _send_steadily(
    result: ScenarioResult, writer: Writer, target: Target, rate: float, total: int
) -> tuple[array, float, float]:
    """Send ``total`` updates on schedule: (send time of each, NaN if not sent), the schedule's
    start and how far the writer fell behind it at most."""
    sends = array("d", [math.nan]) * total
    max_lag = 0.0
    start = time.perf_counter() + 0.05
    for seq in range(total):
        due = start + seq / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = writer.next_update()
        try:
            sends[seq] = await writer.send(frame, target.timeout)
        except TimeoutError:
            result.problem(f"the server did not read the writer for {target.timeout} s")
            break
        max_lag = max(max_lag, sends[seq] - due)
        if writer.ws.closed:
            result.problem(f"the server closed the writer (code {writer.ws.close_code})")
            break
    return sends, start, max_lag


def _latencies(arrivals: array, expected: int, sends: array, sent: int) -> tuple[list[float], int]:
    """Every delivery's latency, sorted, and how many deliveries never came; ``arrivals``
    holds ``expected`` arrival times per reader."""
    latencies: list[float] = []
    missing = 0
    for first in range(0, len(arrivals), expected):
        for seq in range(sent):
            arrived = arrivals[first + seq]
            if math.isnan(arrived):
                missing += 1
            else:
                latencies.append(arrived - sends[seq])
    latencies.sort()
    return latencies, missing


def _fanout_metrics(
    result: ScenarioResult,
    totals: PoolTotals,
    latencies: list[float],
    missing: int,
    sent: int,
    start: float,
    send_end: float,
    max_lag: float,
) -> None:
    last_arrival = totals.last_update_at or send_end
    result.add("readers_connected", "readers connected", totals.readers)
    result.add("updates_sent", "updates sent", sent)
    result.add("send_rate", "achieved send rate", sent / max(send_end - start, 1e-9), "updates/s")
    result.add("writer_max_lag_ms", "writer max lag behind schedule", max_lag * MS, "ms")
    result.add("latency_p50_ms", "delivery latency p50", percentile(latencies, 50) * MS, "ms")
    result.add("latency_p90_ms", "delivery latency p90", percentile(latencies, 90) * MS, "ms")
    result.add("latency_p99_ms", "delivery latency p99", percentile(latencies, 99) * MS, "ms")
    result.add("latency_max_ms", "delivery latency max", percentile(latencies, 100) * MS, "ms")
    result.add("delivered", "updates delivered", len(latencies))
    result.add("missing", "updates missing", missing)
    rate = len(latencies) / max(last_arrival - start, 1e-9)
    result.add("delivered_per_s", "delivered messages/s (all readers)", rate, "msg/s")
    result.add("reordered", "updates out of order", totals.reordered)
    if missing:
        result.problem(f"{missing} of {sent * totals.readers} deliveries never arrived")
    if totals.duplicates:
        result.problem(f"{totals.duplicates} updates arrived twice")
    if totals.reordered:
        result.problem(f"{totals.reordered} updates arrived out of order")
