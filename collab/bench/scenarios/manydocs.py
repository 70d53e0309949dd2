"""Many documents: K documents with two editing clients each, then everyone leaves.

What a loaded document costs the server (RSS delta / K, its two connections included), and
whether the server lets go of the documents afterwards. Collab exposes the number of loaded
documents (``collab_rooms_loaded`` on GET /metrics) and unloads idle documents after
``--idle-evict-seconds``; for a server without that gauge only its RSS is reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aiohttp

from collab.bench.peer import Writer, doc_url, fetch_text, new_session
from collab.bench.results import ScenarioResult
from collab.bench.scenarios.common import (
    KiB,
    Target,
    close_all,
    connect_many,
    cpu_metrics,
    marked_text_check,
    mib,
    open_many,
    open_synced,
    per_item,
    report_connect_errors,
    report_peer_trouble,
    wait_until,
)
from collab.bench.system import CpuMeter, rss_bytes

ROOMS_GAUGE = b"collab_rooms_loaded "
_SETTLE_SECONDS = 5.0  # without the gauge: RSS is read this long after everyone left
_EVICT_POLL_SECONDS = 0.25


async def rooms_loaded(session: aiohttp.ClientSession, target: Target) -> int | None:
    """Collab's count of documents in memory, or None when the server does not expose it."""
    try:
        async with asyncio.timeout(target.timeout):
            async with session.get(target.http_url("/metrics")) as response:
                if response.status != 200:
                    return None
                body = await response.read()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None
    for line in body.splitlines():
        if line.startswith(ROOMS_GAUGE):
            return int(float(line[len(ROOMS_GAUGE) :]))
    return None


async def manydocs(
    target: Target,
    docs: int = 1000,
    rate: float = 1.0,
    duration: float = 10.0,
    evict_wait: float = 40.0,
) -> ScenarioResult:
    """K documents x 2 clients, each client sending ``rate`` updates/s, then all leave."""
    result = ScenarioResult(
        "manydocs",
        f"Many documents: {docs} documents x 2 clients, {rate:g} update/s each for "
        f"{duration:g} s, then all leave",
        {"docs": docs, "rate": rate, "duration": duration, "evict_wait": evict_wait},
    )
    pid = target.server_pid
    urls = [doc_url(target.url, target.new_doc(f"many{i}")) for i in range(docs)]
    writers: list[Writer] = []
    async with new_session() as session:
        try:
            rooms_before = await rooms_loaded(session, target)
            warm = await connect_many(session, target, urls[:1], "warmup")  # code paths
            await close_all(warm.peers, target.timeout)
            await asyncio.sleep(0.5)
            rss_before = rss_bytes(pid) if pid else None

            async def one(index: int) -> Writer:
                # clients 2d and 2d+1 share document d; the index keeps their markers apart
                url = urls[index // 2]
                peer = await open_synced(session, target, url, f"doc{index}", Writer, index=index)
                assert isinstance(peer, Writer)
                return peer

            opened = await open_many(2 * docs, one, target.connect_concurrency)
            writers = sorted(opened.peers, key=lambda w: w.index)
            report_connect_errors(result, opened.errors, 2 * docs)
            for writer in writers:
                writer.count_markers = True
            meter = CpuMeter(pid)
            sent = await _edit(writers, rate, duration, target.timeout)
            expected = _expected_deliveries(writers)
            delivered = await wait_until(lambda: _received(writers) >= expected, target.timeout)
            cpu = meter.percent()
            rss_loaded = rss_bytes(pid) if pid else None
            rooms_during = await rooms_loaded(session, target)
            pairs = {w.index // 2 for w in writers}
            result.add("docs_loaded", "documents with clients", len(pairs))
            result.add("clients_connected", "clients connected", len(writers))
            result.add("updates_sent", "updates sent", sent)
            received = _received(writers)
            echoes = sum(w.stats.echoes for w in writers)
            result.add("updates_delivered", "updates delivered to the other client", received)
            result.add("updates_echoed", "updates sent back to their own sender", echoes)
            result.add("rss_before_mib", "server RSS before", mib(rss_before), "MiB")
            result.add("rss_loaded_mib", "server RSS with the documents", mib(rss_loaded), "MiB")
            result.add(
                "rss_per_doc_kib",
                "server RSS per loaded document (with its 2 clients)",
                per_item(rss_loaded, rss_before, len(pairs), KiB),
                "KiB",
            )
            result.add("rooms_loaded", "documents loaded (server's count)", rooms_during)
            cpu_metrics(result, cpu)
            if not delivered:
                result.problem(
                    f"{expected - received} of {expected} updates did not reach the other "
                    f"client within {target.timeout} s"
                )
            report_peer_trouble(result, writers)
            await _check_some(session, result, target, urls, writers)
        finally:
            await close_all(writers, target.timeout)
        await _after_leaving(
            session, result, target, evict_wait, rooms_before, rss_loaded, len(pairs)
        )
    return result


async def _edit(writers: Sequence[Writer], rate: float, duration: float, timeout: float) -> int:
    """Every writer sends ``rate`` updates/s, the writers spread evenly over each period."""
    rounds = max(1, int(duration * rate))
    count = max(len(writers), 1)
    start = time.perf_counter() + 0.05
    for seq in range(rounds):
        for position, writer in enumerate(writers):
            delay = start + (seq + position / count) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if writer.ws.closed:
                continue
            try:
                await writer.send(writer.next_update(), timeout)
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                continue  # reported as a server close
    return sum(w.sent for w in writers)


def _received(writers: Sequence[Writer]) -> int:
    """Updates of the other client of the document (not a writer's own, sent back)."""
    return sum(w.stats.markers - w.stats.echoes for w in writers)


def _expected_deliveries(writers: Sequence[Writer]) -> int:
    """Each update reaches the document's other client, when it is connected."""
    by_doc: dict[int, list[Writer]] = {}
    for writer in writers:
        by_doc.setdefault(writer.index // 2, []).append(writer)
    return sum(sum(w.sent for w in pair) for pair in by_doc.values() if len(pair) == 2)


async def _check_some(
    session: aiohttp.ClientSession,
    result: ScenarioResult,
    target: Target,
    urls: Sequence[str],
    writers: Sequence[Writer],
) -> None:
    """A fresh client reads the first, middle and last documents back while their clients are
    still there (a server without persistence forgets a document when they leave)."""
    docs = sorted({w.index // 2 for w in writers})
    if not docs:
        return
    picked = sorted({docs[0], docs[len(docs) // 2], docs[-1]})
    wrong: list[str] = []
    for doc in picked:
        pair = [w for w in writers if w.index // 2 == doc]
        check = marked_text_check(sum(w.written_chars for w in pair), sum(w.sent for w in pair))
        text, error = await fetch_text(session, urls[doc], target.timeout)
        if why := error or check(text or ""):
            wrong.append(f"document {doc}: {why}")
    result.add("converged", f"fresh client converged ({len(picked)} documents read)", not wrong)
    for text in wrong:
        result.problem(text)


async def _after_leaving(
    session: aiohttp.ClientSession,
    result: ScenarioResult,
    target: Target,
    evict_wait: float,
    rooms_before: int | None,
    rss_loaded: int | None,
    docs: int,
) -> None:
    """Wait (bounded) for the server to unload the documents; what it released meanwhile."""
    left = time.perf_counter()
    evicted_after = None
    rooms_after = None
    if rooms_before is None:
        await asyncio.sleep(_SETTLE_SECONDS)
    else:
        while True:
            rooms_after = await rooms_loaded(session, target)
            if rooms_after is not None and rooms_after <= rooms_before:
                evicted_after = time.perf_counter() - left
                break
            if time.perf_counter() - left >= evict_wait:
                break
            await asyncio.sleep(_EVICT_POLL_SECONDS)
    rss_after = rss_bytes(target.server_pid) if target.server_pid else None
    result.add("rooms_after_leave", "documents loaded after leaving (server's count)", rooms_after)
    result.add("evicted_after_s", "all documents unloaded after", evicted_after, "s")
    result.add("rss_after_leave_mib", "server RSS after leaving", mib(rss_after), "MiB")
    result.add(
        "rss_released_per_doc_kib",
        "server RSS released per document",
        per_item(rss_loaded, rss_after, docs, KiB),
        "KiB",
    )
    if rooms_before is not None and evicted_after is None:
        result.warn(
            f"{rooms_after} documents were still loaded {evict_wait:g} s after every client "
            "left (Collab unloads a document --idle-evict-seconds after its last client left)"
        )
