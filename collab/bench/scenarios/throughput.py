"""Throughput: writers push as fast as the server takes updates, readers count what arrives.

The readers live in worker processes (collab.bench.scenarios.reader_pool) and only count:
each writer update carries a marker, so delivered *updates* are counted by markers, whatever
number of messages a server packs them into; messages and bytes are counted separately.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from array import array
from collections.abc import Callable

from collab.bench.peer import Writer, doc_url, new_session
from collab.bench.results import ScenarioResult
from collab.bench.scenarios.common import (
    MS,
    Target,
    check_convergence,
    close_all,
    cpu_metrics,
    marked_text_check,
    open_synced,
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

_STALL_SECONDS = 10.0  # a writer that cannot send (window full, TCP full) this long gives up
KEPT_CORES = 2  # the server and the writer are busy all along: the readers get the others


async def throughput(
    target: Target,
    writers: int = 1,
    readers: int = 100,
    duration: float = 10.0,
    window: int = 1000,
    reader_processes: int | None = None,
) -> ScenarioResult:
    """W writers send as fast as every reader keeps up (at most ``window`` updates in flight)."""
    processes = max(1, min(reader_processes or default_processes(KEPT_CORES), readers))
    result = ScenarioResult(
        "throughput",
        f"Throughput: {writers} writer{'s' * (writers > 1)}, {readers} readers "
        f"({processes} reader process{'es' * (processes > 1)}), {duration:g} s, "
        f"window {window} updates",
        {
            "writers": writers,
            "readers": readers,
            "duration": duration,
            "window": window,
            "reader_processes": processes,
        },
    )
    url = doc_url(target.url, target.new_doc("throughput"))
    writer_peers: list[Writer] = []
    try:
        async with (
            ReaderPool.running(target, "counting", [url] * readers, processes) as pool,
            new_session() as session,
        ):
            try:
                joins = await pool.connect_all()
                report_connect_errors(result, joins.errors, readers)
                for index in range(writers):
                    peer = await open_synced(
                        session, target, url, f"writer-{index}", Writer, index=index
                    )
                    assert isinstance(peer, Writer)
                    writer_peers.append(peer)
                if not joins.synced:
                    result.problem("no reader connected")
                    return result

                def in_flight() -> int | None:
                    slowest = pool.slowest()
                    return None if slowest is None else sum(w.sent for w in writer_peers) - slowest

                meter = CpuMeter(target.server_pid, pool.pids)
                sends = array("d")
                start = time.perf_counter()
                deadline = start + duration
                stalled = await asyncio.gather(
                    *(
                        _push(w, deadline, window, in_flight, pool.progress, sends)
                        for w in writer_peers
                    )
                )
                send_end = time.perf_counter()
                sent = sum(w.sent for w in writer_peers)
                drained = await wait_until(lambda: pool.delivered_to_all(sent), target.timeout)
                cpu = meter.percent()
                barrier = await writer_peers[0].resync(target.timeout)
                totals = await pool.stop()
                _metrics(result, totals, sends, writer_peers, start, send_end)
                result.add(
                    "step2_after_run_ms",
                    "step1 answered after the run in (Collab: store barrier)",
                    None if barrier is None else barrier * MS,
                    "ms",
                )
                cpu_metrics(result, cpu)
                if barrier is None:
                    result.problem(f"a writer's step1 was not answered within {target.timeout} s")
                if any(stalled):
                    result.problem(f"a writer could not send for {_STALL_SECONDS:g} s")
                if not drained:
                    result.problem(
                        f"not every update reached every reader within {target.timeout} s"
                    )
                if totals.max_markers > sent:
                    result.problem(f"a reader received {totals.max_markers} updates of {sent} sent")
                report_reader_trouble(result, totals)
                report_peer_trouble(result, writer_peers)
                written = sum(w.written_chars for w in writer_peers)
                check = marked_text_check(written, sent)
                await check_convergence(session, result, target, url, check)
            finally:
                await close_all(writer_peers, target.timeout)
    except PoolError as exc:
        result.problem(str(exc))
    return result


def _metrics(
    result: ScenarioResult,
    totals: PoolTotals,
    sends: array,
    writers: list[Writer],
    start: float,
    send_end: float,
) -> None:
    sent = len(sends)
    end = max(totals.last_update_at, send_end)
    elapsed = max(end - start, 1e-9)
    sent_bytes = sum(w.sent_bytes for w in writers)
    ordered = sorted(sends)
    result.add("readers_connected", "readers connected", totals.readers)
    result.add("updates_sent", "updates accepted from writers", sent)
    accepted = sent / max(send_end - start, 1e-9)
    result.add("accepted_per_s", "accepted updates/s (all writers)", accepted, "updates/s")
    first = bisect.bisect_left(ordered, start + 1.0)
    last = sent - bisect.bisect_left(ordered, send_end - 1.0)
    result.add("accepted_first_s", "accepted updates/s in the first second", first, "updates/s")
    result.add("accepted_last_s", "accepted updates/s in the last second", last, "updates/s")
    mean = sent_bytes / sent if sent else None
    result.add("mean_update_bytes", "mean update frame size", mean, "B")
    result.add("updates_delivered", "updates delivered (all readers)", totals.markers)
    result.add(
        "delivered_updates_per_s",
        "delivered updates/s (all readers)",
        totals.markers / elapsed,
        "updates/s",
    )
    result.add(
        "delivered_per_s", "delivered messages/s (all readers)", totals.updates / elapsed, "msg/s"
    )
    result.add(
        "delivered_bytes_per_s", "delivered bytes/s (all readers)", totals.bytes / elapsed, "B/s"
    )
    per_reader = totals.markers / elapsed / max(totals.readers, 1)
    result.add("per_reader_per_s", "delivered updates/s per reader", per_reader, "updates/s")
    merged = totals.markers / totals.updates if totals.updates else None
    result.add("updates_per_message", "updates per delivered message", merged, "")


async def _push(
    writer: Writer,
    deadline: float,
    window: int,
    in_flight: Callable[[], int | None],
    progress: asyncio.Event,
    sends: array,
) -> bool:
    """Send until the deadline, never more than ``window`` undelivered; True if it stalled.

    Stops early when no reader is left to deliver to (``in_flight`` is None).
    """
    while time.perf_counter() < deadline and not writer.ws.closed:
        while True:
            progress.clear()  # clear before checking: a report after the check wakes us
            pending = in_flight()
            if pending is None:
                return False
            if pending < window:
                break
            try:
                async with asyncio.timeout(_STALL_SECONDS):
                    await progress.wait()
            except TimeoutError:
                return True
        try:
            sends.append(await writer.send(writer.next_update(), _STALL_SECONDS))
        except TimeoutError:
            return True
    return False
