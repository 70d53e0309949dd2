"""Big document: a real editing trace loaded into the server, then fresh clients and a storm.

A document with a long history is what makes joining expensive: the server encodes its whole
state into each step2 and the client applies it. The trace is replayed locally (not timed)
and sent as one update; the load is done when the server answers a step1 sent behind it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from collab.bench.peer import BasePeer, Observer, Writer, doc_url, new_session
from collab.bench.results import ScenarioResult
from collab.bench.scenarios.common import (
    MS,
    Opened,
    Target,
    check_convergence,
    close_all,
    closed_by_server,
    connect_many,
    cpu_metrics,
    mib,
    open_synced,
    percentile,
    report_connect_errors,
    report_peer_trouble,
)
from collab.bench.system import CpuMeter, rss_bytes
from collab.bench.traces import TraceDoc, replay, text_sha256

_HOLD_SECONDS = 0.5  # joiners stay connected this long after the storm: late closes count


async def bigdoc(
    target: Target,
    trace: Path,
    patches: int | None = None,
    fresh: int = 5,
    joiners: int = 50,
) -> ScenarioResult:
    """Load the trace's document, time ``fresh`` clients' syncs one by one, then a storm of
    ``joiners`` connecting at once (failed joins and server closes must be 0)."""
    try:
        built = replay(trace, patches)
    except (OSError, ValueError, KeyError) as exc:
        result = ScenarioResult("bigdoc", f"Big document: {trace.name}", {"trace": trace.name})
        result.problem(f"cannot replay {trace}: {type(exc).__name__}: {exc}")
        return result
    result = ScenarioResult(
        "bigdoc",
        f"Big document: {built.name} ({built.patches:,} patches, {len(built.update):,} B), "
        f"{fresh} fresh clients, {joiners} joining at once",
        {"trace": built.name, "patches": built.patches, "fresh": fresh, "joiners": joiners},
    )
    pid = target.server_pid
    url = doc_url(target.url, target.new_doc("bigdoc"))
    opened: Opened[BasePeer] = Opened()
    async with new_session() as session:
        loader = None
        try:
            rss_before = rss_bytes(pid) if pid else None
            loader = await open_synced(session, target, url, "loader", Writer)
            assert isinstance(loader, Writer)
            load = await _load(loader, built, target.timeout)
            rss_loaded = rss_bytes(pid) if pid else None
            result.add("doc_chars", "document length", built.chars, "chars")
            result.add("update_bytes", "document state (one update)", len(built.update), "B")
            result.add("load_ms", "load: send it + step1 answered", _ms(load), "ms")
            loaded = None if rss_loaded is None or rss_before is None else rss_loaded - rss_before
            result.add("rss_doc_mib", "server RSS for the document", mib(loaded), "MiB")
            if load is None:
                result.problem(f"the server did not take the document within {target.timeout} s")
                return result
            await _fresh_clients(session, result, target, url, built, fresh)
            meter = CpuMeter(pid)
            opened = await connect_many(
                session, target, [url] * joiners, "join", concurrency=joiners
            )
            cpu = meter.percent()
            await asyncio.sleep(_HOLD_SECONDS)
            _storm_metrics(result, opened, joiners)
            cpu_metrics(result, cpu)
            report_peer_trouble(result, [loader])
            await check_convergence(session, result, target, url, _same_text(built))
        finally:
            await close_all([*opened.peers, *([loader] if loader else [])], target.timeout)
    return result


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * MS


async def _load(loader: Writer, built: TraceDoc, timeout: float) -> float | None:
    """Seconds to send the whole document and have a step1 behind it answered (None: not)."""
    frame = loader.adopt(built.update)
    started = time.perf_counter()
    try:
        await loader.send(frame, timeout)
    except TimeoutError:
        return None
    if await loader.resync(timeout) is None:
        return None
    return time.perf_counter() - started


async def _fresh_clients(
    session: aiohttp.ClientSession,
    result: ScenarioResult,
    target: Target,
    url: str,
    built: TraceDoc,
    count: int,
) -> None:
    """One at a time: from sending step1 to the step2 received (the server's part) and to it
    applied to a pycrdt document (what a user waits for)."""
    times: list[float] = []
    received: list[float] = []
    step2_bytes = 0
    wrong = 0
    for index in range(count):
        try:
            async with asyncio.timeout(target.timeout):
                observer = await Observer.open(session, url, f"fresh-{index}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            result.problem(f"fresh client {index} could not connect: {type(exc).__name__}")
            continue
        try:
            started = time.perf_counter()
            await observer.sync(target.timeout)
            times.append(time.perf_counter() - started)
            received.append(observer.step2_received_at - started)
            step2_bytes = observer.step2_bytes
            if text_sha256(observer.text()) != built.sha256:
                wrong += 1
        except TimeoutError:
            result.problem(f"fresh client {index} got no step2 within {target.timeout} s")
        finally:
            await observer.close()
    result.add(
        "fresh_step2_p50_ms",
        "fresh client: step1 to step2 received, p50",
        statistics.median(received) * MS if received else None,
        "ms",
    )
    result.add(
        "fresh_sync_p50_ms",
        "fresh client: step1 to step2 applied, p50",
        statistics.median(times) * MS if times else None,
        "ms",
    )
    result.add(
        "fresh_sync_max_ms",
        "fresh client: step1 to step2 applied, max",
        max(times) * MS if times else None,
        "ms",
    )
    result.add("step2_bytes", "step2 size", step2_bytes, "B")
    if wrong:
        result.problem(f"{wrong} fresh clients read another text than the trace's")


def _storm_metrics(result: ScenarioResult, opened: Opened[BasePeer], joiners: int) -> None:
    times = opened.seconds
    failed = sum(opened.errors.values())
    reconnects = sum(closed_by_server(opened.peers).values())
    result.add("join_synced", "joiners synced", len(opened.peers))
    rate = len(opened.peers) / max(opened.elapsed, 1e-9)
    result.add("join_rate", "join storm: joins/s", rate, "conn/s")
    result.add("join_p50_ms", "join storm: connect + sync p50", percentile(times, 50) * MS, "ms")
    result.add("join_p99_ms", "join storm: connect + sync p99", percentile(times, 99) * MS, "ms")
    result.add("join_failed", "failed joins", failed)
    result.add("join_reconnects", "joiners the server closed (would reconnect)", reconnects)
    report_connect_errors(result, opened.errors, joiners)
    report_peer_trouble(result, opened.peers)


def _same_text(built: TraceDoc) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text_sha256(text) == built.sha256:
            return ""
        return (
            f"fresh client sees {len(text)} characters (SHA-256 {text_sha256(text)[:12]}), "
            f"the trace has {built.chars} ({built.sha256[:12]})"
        )

    return check
