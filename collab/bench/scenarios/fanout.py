"""Fanout: one writer at a steady rate, N readers of the same document, delivery latency."""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Sequence

import aiohttp

from collab.bench.peer import (
    Arrivals,
    BasePeer,
    LongPollReader,
    Writer,
    doc_url,
    new_session,
)
from collab.bench.results import ScenarioResult
from collab.bench.scenarios.common import (
    MS,
    Target,
    check_convergence,
    close_all,
    connect_many,
    cpu_metrics,
    open_synced,
    percentile,
    report_connect_errors,
    report_peer_trouble,
    wait_until,
)
from collab.bench.system import CpuMeter


async def fanout(
    target: Target,
    readers: int = 100,
    rate: float = 200.0,
    duration: float = 10.0,
    longpoll: bool = False,
) -> ScenarioResult:
    """One writer at a steady rate, N readers of the same document: delivery latency.

    With ``longpoll`` the readers use Collab's YLP/1 HTTP transport (the writer stays on the
    WebSocket); a y-websocket server has no such transport.
    """
    total = max(1, int(rate * duration))
    over = " over long-poll (YLP/1)" if longpoll else ""
    result = ScenarioResult(
        "fanout_longpoll" if longpoll else "fanout",
        f"Fanout: 1 writer, {readers} readers{over}, {rate:g} updates/s for {duration:g} s",
        {"readers": readers, "rate": rate, "duration": duration},
    )
    doc_id = target.new_doc("fanout")
    url = doc_url(target.url, doc_id)
    # long-poll readers reuse kept-alive HTTP connections, like a browser does
    reader_session = (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        if longpoll
        else new_session()
    )
    async with new_session() as session, reader_session:
        if longpoll:
            urls = [target.longpoll_open_url(doc_id)] * readers
            peers, errors = await connect_many(
                reader_session, target, urls, "lp-reader", LongPollReader
            )
        else:
            peers, errors = await connect_many(reader_session, target, [url] * readers, "reader")
        report_connect_errors(result, errors, readers)
        for peer in peers:
            peer.arrivals = Arrivals.expecting(total)
        writer = None
        try:
            writer = await open_synced(session, target, url, "writer-0", Writer, index=0)
            assert isinstance(writer, Writer)
            meter = CpuMeter(target.server_pid)
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
            send_end = time.perf_counter()
            sent = writer.sent
            drained = await wait_until(
                lambda: all(p.stats.markers >= sent or p.closed for p in peers),
                target.timeout,
            )
            cpu = meter.percent()
            latencies, missing = _latencies(peers, sends, sent)
            _fanout_metrics(result, peers, latencies, missing, sent, start, send_end, max_lag)
            cpu_metrics(result, cpu)
            if not drained:
                result.problem(f"not every update reached every reader within {target.timeout} s")
            report_peer_trouble(result, peers)
            expected = writer.text()

            def same_text(text: str) -> str:
                if text == expected:
                    return ""
                return f"fresh client sees {len(text)} characters, the writer wrote {len(expected)}"

            await check_convergence(session, result, target, url, same_text)
        finally:
            await close_all([*peers, *([writer] if writer else [])], target.timeout)
    return result


def _latencies(peers: Sequence[BasePeer], sends: array, sent: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    missing = 0
    for peer in peers:
        assert peer.arrivals is not None
        times = peer.arrivals.times
        for seq in range(sent):
            arrived = times[seq]
            if math.isnan(arrived):
                missing += 1
            else:
                latencies.append(arrived - sends[seq])
    latencies.sort()
    return latencies, missing


def _fanout_metrics(
    result: ScenarioResult,
    peers: Sequence[BasePeer],
    latencies: list[float],
    missing: int,
    sent: int,
    start: float,
    send_end: float,
    max_lag: float,
) -> None:
    last_arrival = max((p.stats.last_update_at for p in peers), default=send_end)
    result.add("readers_connected", "readers connected", len(peers))
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
    duplicates = sum(p.stats.duplicates for p in peers)
    reordered = sum(p.stats.reordered for p in peers)
    result.add("reordered", "updates out of order", reordered)
    if missing:
        result.problem(f"{missing} of {sent * len(peers)} deliveries never arrived")
    if duplicates:
        result.problem(f"{duplicates} updates arrived twice")
    if reordered:
        result.problem(f"{reordered} updates arrived out of order")
