"""Load scenarios against any y-websocket server: latency, throughput, presence, connections.

Every scenario is bounded: a fixed number of peers, a fixed sending time, and a timeout on
every wait (connecting, syncing, draining). Peers connect with limited concurrency so the
bench measures the server, not a connection storm. Each run uses a fresh document id, so
runs against a long-lived server do not disturb each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import secrets
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from collab.bench.peer import (
    Arrivals,
    BasePeer,
    LongPollReader,
    Peer,
    Writer,
    doc_url,
    fetch_text,
    new_session,
)
from collab.bench.results import ScenarioResult
from collab.bench.system import CpuMeter, CpuShare, open_fds, rss_bytes
from collab.protocol.awareness import AwarenessEntry, encode_awareness_update
from collab.protocol.wire import AwarenessMessage, encode_message

KiB = 1024
_POLL_SECONDS = 0.01
_NOISY_PERCENT = 20.0  # CPU taken by third parties above which figures are flagged
_STALL_SECONDS = 10.0  # a writer that cannot send (window full, TCP full) this long gives up


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect and what may be measured there."""

    url: str  # e.g. ws://127.0.0.1:8000/ws; the document id is appended after a slash
    server_pid: int | None = None  # only for a server on this machine (/proc)
    connect_concurrency: int = 50
    timeout: float = 10.0
    doc_prefix: str = "bench"

    def new_doc(self, scenario: str) -> str:
        return f"{self.doc_prefix}-{scenario}-{secrets.token_hex(4)}"

    def longpoll_open_url(self, doc_id: str) -> str:
        """Collab's YLP/1 session URL: same host, http(s), without the ``/ws`` suffix."""
        base = self.url.rstrip("/").removesuffix("/ws")
        return base.replace("ws", "http", 1) + "/lp/open?doc=" + doc_id


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)
    return True


async def _open_synced(
    session: aiohttp.ClientSession,
    target: Target,
    url: str,
    label: str,
    factory: type[Peer] | type[LongPollReader] = Peer,
    **kwargs: int,
) -> BasePeer:
    async with asyncio.timeout(target.timeout):
        peer = await factory.open(session, url, label, **kwargs)
    try:
        await peer.sync(target.timeout)
    except BaseException:
        await peer.close()
        raise
    return peer


async def connect_many(
    session: aiohttp.ClientSession,
    target: Target,
    urls: Sequence[str],
    label: str,
    factory: type[Peer] | type[LongPollReader] = Peer,
) -> tuple[list[BasePeer], Counter[str]]:
    """Open and sync one reader per url, at most ``connect_concurrency`` at a time."""
    gate = asyncio.Semaphore(target.connect_concurrency)
    errors: Counter[str] = Counter()

    async def one(index: int, url: str) -> BasePeer | None:
        async with gate:
            try:
                return await _open_synced(session, target, url, f"{label}-{index}", factory)
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                return None

    opened = await asyncio.gather(*(one(i, url) for i, url in enumerate(urls)))
    return [peer for peer in opened if peer is not None], errors


async def close_all(peers: Sequence[BasePeer], timeout: float) -> None:
    if not peers:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout + 5):
            await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)


def _report_connect_errors(result: ScenarioResult, errors: Counter[str], wanted: int) -> None:
    failed = sum(errors.values())
    if failed:
        worst = ", ".join(f"{text} (x{n})" for text, n in errors.most_common(3))
        result.problem(f"{failed} of {wanted} connections failed: {worst}")


def _report_peer_trouble(result: ScenarioResult, peers: Sequence[BasePeer]) -> None:
    """Connections the server ended (close code, or None: dropped) and frames it got wrong."""
    codes = Counter(p.stats.close_code for p in peers if p.stats.closed_by_server)
    closed = sum(codes.values())
    if closed:
        detail = ", ".join(f"code {code} x{n}" for code, n in codes.most_common())
        result.problem(f"the server closed {closed} connections during the run ({detail})")
    bad = sum(p.stats.bad_frames for p in peers)
    if bad:
        result.problem(f"{bad} frames received were not valid y-websocket messages")


def _cpu_metrics(result: ScenarioResult, cpu: CpuShare) -> None:
    result.add("server_cpu_percent", "server CPU (100% = one core)", cpu.server, "%")
    result.add("bench_cpu_percent", "bench client CPU (100% = one core)", cpu.bench, "%")
    result.add("other_cpu_percent", "other processes' CPU (noise)", cpu.other, "%")
    _warn_if_noisy(result, cpu)


def _warn_if_noisy(result: ScenarioResult, cpu: CpuShare) -> None:
    if cpu.other is not None and cpu.other > _NOISY_PERCENT:
        result.warn(
            f"other processes used {cpu.other:.0f}% of a core during the measurement: "
            "the figures are skewed, rerun on a quiet machine"
        )


async def _check_convergence(
    session: aiohttp.ClientSession,
    result: ScenarioResult,
    target: Target,
    url: str,
    check: Callable[[str], str],
) -> None:
    """Sync a fresh client; ``check`` returns "" or why the text is wrong."""
    text, error = await fetch_text(session, url, target.timeout)
    why = error or check(text or "")
    result.add("converged", "fresh client converged", not why)
    if why:
        result.problem(why)


# -- fanout ----------------------------------------------------------------------------------


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
        _report_connect_errors(result, errors, readers)
        for peer in peers:
            peer.arrivals = Arrivals.expecting(total)
        writer = None
        try:
            writer = await _open_synced(session, target, url, "writer-0", Writer, index=0)
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
            drained = await _wait_until(
                lambda: all(p.stats.markers >= sent or p.closed for p in peers),
                target.timeout,
            )
            cpu = meter.percent()
            latencies, missing = _latencies(peers, sends, sent)
            _fanout_metrics(result, peers, latencies, missing, sent, start, send_end, max_lag)
            _cpu_metrics(result, cpu)
            if not drained:
                result.problem(f"not every update reached every reader within {target.timeout} s")
            _report_peer_trouble(result, peers)
            expected = writer.text()

            def same_text(text: str) -> str:
                if text == expected:
                    return ""
                return f"fresh client sees {len(text)} characters, the writer wrote {len(expected)}"

            await _check_convergence(session, result, target, url, same_text)
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
    ms = 1000.0
    last_arrival = max((p.stats.last_update_at for p in peers), default=send_end)
    result.add("readers_connected", "readers connected", len(peers))
    result.add("updates_sent", "updates sent", sent)
    result.add("send_rate", "achieved send rate", sent / max(send_end - start, 1e-9), "updates/s")
    result.add("writer_max_lag_ms", "writer max lag behind schedule", max_lag * ms, "ms")
    result.add("latency_p50_ms", "delivery latency p50", percentile(latencies, 50) * ms, "ms")
    result.add("latency_p90_ms", "delivery latency p90", percentile(latencies, 90) * ms, "ms")
    result.add("latency_p99_ms", "delivery latency p99", percentile(latencies, 99) * ms, "ms")
    result.add("latency_max_ms", "delivery latency max", percentile(latencies, 100) * ms, "ms")
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


# -- throughput ------------------------------------------------------------------------------


async def throughput(
    target: Target,
    writers: int = 4,
    readers: int = 20,
    duration: float = 10.0,
    window: int = 1000,
) -> ScenarioResult:
    """W writers send as fast as every reader keeps up (at most ``window`` updates in flight)."""
    result = ScenarioResult(
        "throughput",
        f"Throughput: {writers} writers, {readers} readers, {duration:g} s, "
        f"window {window} updates",
        {"writers": writers, "readers": readers, "duration": duration, "window": window},
    )
    url = doc_url(target.url, target.new_doc("throughput"))
    progress = asyncio.Event()
    writer_peers: list[Writer] = []
    async with new_session() as session:
        peers, errors = await connect_many(session, target, [url] * readers, "reader")
        _report_connect_errors(result, errors, readers)
        try:
            for index in range(writers):
                peer = await _open_synced(
                    session, target, url, f"writer-{index}", Writer, index=index
                )
                assert isinstance(peer, Writer)
                writer_peers.append(peer)
            if not peers:
                result.problem("no reader connected")
                return result
            for peer in peers:
                peer.count_markers = True
                peer.progress = progress
            base_frames = [p.stats.updates for p in peers]
            base_bytes = [p.stats.bytes for p in peers]

            def in_flight() -> int:
                return sum(w.sent for w in writer_peers) - min(p.stats.markers for p in peers)

            meter = CpuMeter(target.server_pid)
            start = time.perf_counter()
            deadline = start + duration
            sampler = asyncio.create_task(_sample_rate(writer_peers, duration))
            stalled = await asyncio.gather(
                *(_push(w, deadline, window, in_flight, progress) for w in writer_peers)
            )
            send_end = time.perf_counter()
            first_second, last_second = await sampler
            sent = sum(w.sent for w in writer_peers)
            drained = await _wait_until(
                lambda: all(p.stats.markers >= sent or p.closed for p in peers),
                target.timeout,
            )
            cpu = meter.percent()
            barrier = await writer_peers[0].resync(target.timeout)
            end = max((p.stats.last_update_at for p in peers), default=send_end)
            elapsed = max(end - start, 1e-9)
            frames = sum(p.stats.updates - b for p, b in zip(peers, base_frames, strict=True))
            size = sum(p.stats.bytes - b for p, b in zip(peers, base_bytes, strict=True))
            sent_bytes = sum(w.sent_bytes for w in writer_peers)
            result.add("readers_connected", "readers connected", len(peers))
            result.add("updates_sent", "updates accepted from writers", sent)
            result.add(
                "accepted_per_s",
                "accepted updates/s (all writers)",
                sent / max(send_end - start, 1e-9),
                "updates/s",
            )
            result.add(
                "accepted_first_s",
                "accepted updates/s in the first second",
                first_second,
                "updates/s",
            )
            result.add(
                "accepted_last_s",
                "accepted updates/s in the last second",
                last_second,
                "updates/s",
            )
            result.add(
                "mean_update_bytes",
                "mean update frame size",
                sent_bytes / sent if sent else math.nan,
                "B",
            )
            result.add(
                "delivered_per_s", "delivered messages/s (all readers)", frames / elapsed, "msg/s"
            )
            result.add(
                "delivered_bytes_per_s", "delivered bytes/s (all readers)", size / elapsed, "B/s"
            )
            result.add(
                "per_reader_per_s",
                "delivered messages/s per reader",
                frames / elapsed / len(peers),
                "msg/s",
            )
            result.add(
                "step2_after_run_ms",
                "step1 answered after the run in (Collab: store barrier)",
                None if barrier is None else barrier * 1000,
                "ms",
            )
            _cpu_metrics(result, cpu)
            if barrier is None:
                result.problem(f"a writer's step1 was not answered within {target.timeout} s")
            if any(stalled):
                result.problem(f"a writer could not send for {_STALL_SECONDS:g} s")
            if not drained:
                result.problem(f"not every update reached every reader within {target.timeout} s")
            _report_peer_trouble(result, [*peers, *writer_peers])
            written = sum(w.written_chars for w in writer_peers)

            def all_updates(text: str) -> str:
                seen = text.count("[#")
                if len(text) == written and seen == sent:
                    return ""
                return (
                    f"fresh client sees {len(text)} characters and {seen} updates, "
                    f"the writers wrote {written} characters in {sent} updates"
                )

            await _check_convergence(session, result, target, url, all_updates)
        finally:
            await close_all([*peers, *writer_peers], target.timeout)
    return result


async def _sample_rate(writers: Sequence[Writer], duration: float) -> tuple[float, float]:
    """Accepted updates/s in the first and in the last whole second of the run.

    The document grows while the writers append, and so does the cost of applying an update
    (see docs/benchmarks.md); the two figures show how much the rate drops over one run.
    """
    samples: list[int] = []
    for _ in range(max(1, int(duration)) + 1):
        samples.append(sum(w.sent for w in writers))
        if len(samples) > duration:
            break
        await asyncio.sleep(1.0)
    if len(samples) < 2:
        return math.nan, math.nan
    return float(samples[1] - samples[0]), float(samples[-1] - samples[-2])


async def _push(
    writer: Writer,
    deadline: float,
    window: int,
    in_flight: Callable[[], int],
    progress: asyncio.Event,
) -> bool:
    """Send until the deadline, never more than ``window`` undelivered; True if it stalled."""
    while time.perf_counter() < deadline and not writer.ws.closed:
        while True:
            progress.clear()  # clear before checking: a delivery after the check wakes us
            if in_flight() < window:
                break
            try:
                async with asyncio.timeout(_STALL_SECONDS):
                    await progress.wait()
            except TimeoutError:
                return True
        try:
            await writer.send(writer.next_update(), _STALL_SECONDS)
        except TimeoutError:
            return True
    return False


# -- idle ------------------------------------------------------------------------------------


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
            warm, _ = await connect_many(
                session, target, [doc_url(target.url, target.new_doc("warm"))], "warmup"
            )
            await close_all(warm, target.timeout)
            await asyncio.sleep(0.5)
            rss_before = rss_bytes(pid) if pid else None
            fds_before = open_fds(pid) if pid else None
            own_before = rss_bytes(os.getpid())
            started = time.perf_counter()
            peers, errors = await connect_many(session, target, urls, "idle")
            connect_time = time.perf_counter() - started
            _report_connect_errors(result, errors, connections)
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
            result.add("connect_rate", "connect + sync rate", len(peers) / connect_time, "conn/s")
            result.add("rss_before_mib", "server RSS before", _mib(rss_before), "MiB")
            result.add("rss_after_mib", "server RSS with connections", _mib(rss_after), "MiB")
            result.add(
                "rss_per_conn_kib",
                "server RSS per connection",
                _delta(rss_after, rss_before, n, KiB),
                "KiB",
            )
            result.add(
                "fds_per_conn",
                "server open files per connection",
                _delta(fds_after, fds_before, n, 1),
                "",
            )
            result.add("server_idle_cpu_percent", "server CPU while idle", cpu.server, "%")
            result.add("other_cpu_percent", "other processes' CPU (noise)", cpu.other, "%")
            _warn_if_noisy(result, cpu)
            result.add(
                "keepalives_per_conn", "keep-alive frames per connection", keepalives / n, ""
            )
            result.add(
                "bench_rss_per_conn_kib",
                "bench client RSS per connection",
                _delta(own_after, own_before, n, KiB),
                "KiB",
            )
            _report_peer_trouble(result, peers)
        finally:
            await close_all(peers, target.timeout)
        if pid:
            await asyncio.sleep(1.0)
            result.add(
                "rss_after_close_mib",
                "server RSS 1 s after closing all",
                _mib(rss_bytes(pid)),
                "MiB",
            )
    return result


def _mib(value: int | None) -> float | None:
    return None if value is None else value / (1024 * 1024)


def _delta(after: int | None, before: int | None, count: int, unit: int) -> float | None:
    if after is None or before is None:
        return None
    return (after - before) / count / unit


# -- presence --------------------------------------------------------------------------------

_PRESENCE_MARK = re.compile(rb'"bench": ?"(\d+):(\d+)"')


async def presence(
    target: Target, clients: int = 200, duration: float = 10.0, rate: float = 1.0
) -> ScenarioResult:
    """N clients on one document each move their cursor (awareness) ``rate`` times a second.

    Each state carries ``"bench":"<client>:<seq>"``; receivers find it in whatever awareness
    message the server forwards (merged or not), so latency is counted per (client, update).
    """
    result = ScenarioResult(
        "presence",
        f"Presence: {clients} clients, awareness {rate:g}/s each for {duration:g} s",
        {"clients": clients, "rate": rate, "duration": duration},
    )
    rounds = max(1, int(duration * rate))
    url = doc_url(target.url, target.new_doc("presence"))
    sends = [array("d", [math.nan]) * rounds for _ in range(clients)]
    latencies: list[float] = []
    duplicates = 0
    seen: set[tuple[int, int, int]] = set()

    def receiver(index: int) -> Callable[[bytes, float], None]:
        def on_awareness(payload: bytes, now: float) -> None:
            nonlocal duplicates
            for sender, digits in _PRESENCE_MARK.findall(payload):
                client, seq = int(sender), int(digits)
                if client == index or client >= clients or seq >= rounds:
                    continue  # y-websocket servers echo a client's own state back to it
                key = (index, client, seq)
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                latencies.append(now - sends[client][seq])

        return on_awareness

    async with new_session() as session:
        peers, errors = await connect_many(session, target, [url] * clients, "presence")
        _report_connect_errors(result, errors, clients)
        try:
            for index, peer in enumerate(peers):
                peer.on_awareness = receiver(index)
            meter = CpuMeter(target.server_pid)
            start = time.perf_counter() + 0.05
            await asyncio.gather(
                *(
                    _move_cursor(peer, index, len(peers), start, rounds, rate, sends[index])
                    for index, peer in enumerate(peers)
                    if isinstance(peer, Peer)
                )
            )
            expected = len(peers) * (len(peers) - 1) * rounds
            drained = await _wait_until(lambda: len(seen) >= expected, target.timeout)
            cpu = meter.percent()
            latencies.sort()
            ms = 1000.0
            result.add("clients_connected", "clients connected", len(peers))
            result.add("updates_sent", "awareness updates sent", len(peers) * rounds)
            result.add(
                "latency_p50_ms", "delivery latency p50", percentile(latencies, 50) * ms, "ms"
            )
            result.add(
                "latency_p99_ms", "delivery latency p99", percentile(latencies, 99) * ms, "ms"
            )
            result.add(
                "latency_max_ms", "delivery latency max", percentile(latencies, 100) * ms, "ms"
            )
            result.add("delivered", "states delivered to other clients", len(seen))
            result.add("missing", "states missing", expected - len(seen))
            frames = sum(p.stats.frames for p in peers)
            result.add("frames_received", "frames received (all clients)", frames)
            _cpu_metrics(result, cpu)
            if not drained:
                result.problem(
                    f"{expected - len(seen)} of {expected} presence deliveries never arrived"
                )
            if duplicates:
                result.problem(f"{duplicates} presence states arrived twice")
            _report_peer_trouble(result, peers)
        finally:
            await close_all(peers, target.timeout)
    return result


async def _move_cursor(
    peer: Peer, index: int, count: int, start: float, rounds: int, rate: float, sends: array
) -> None:
    """Send ``rounds`` awareness updates, clients spread evenly over each period."""
    client_id = 1_000_000 + index
    for seq in range(rounds):
        delay = start + (seq + index / count) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        cursor = {"cursor": {"anchor": seq, "head": seq}, "bench": f"{index}:{seq}"}
        state = json.dumps(cursor, separators=(",", ":"))
        payload = encode_awareness_update([AwarenessEntry(client_id, seq + 1, state)])
        sends[seq] = time.perf_counter()
        try:
            await peer.ws.send_bytes(encode_message(AwarenessMessage(payload)))
        except (aiohttp.ClientError, ConnectionError):
            return


# -- connect ---------------------------------------------------------------------------------


async def connect(target: Target, clients: int = 1000) -> ScenarioResult:
    """A storm of C clients joining one document (``connect_concurrency`` at a time).

    Sync time is from the start of the connect to the server's step2; the document holds a
    few updates first, so step2 is not empty.
    """
    result = ScenarioResult(
        "connect",
        f"Connect storm: {clients} clients to one document, {target.connect_concurrency} at a time",
        {"clients": clients, "concurrency": target.connect_concurrency},
    )
    pid = target.server_pid
    url = doc_url(target.url, target.new_doc("connect"))
    gate = asyncio.Semaphore(target.connect_concurrency)
    errors: Counter[str] = Counter()
    times: list[float] = []
    peers: list[BasePeer] = []

    async def one(index: int) -> None:
        async with gate:
            started = time.perf_counter()
            try:
                peer = await _open_synced(session, target, url, f"storm-{index}")
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                return
            times.append(time.perf_counter() - started)
            peers.append(peer)

    async with new_session() as session:
        writer = None
        try:
            writer = await _open_synced(session, target, url, "writer-0", Writer, index=0)
            assert isinstance(writer, Writer)
            for _ in range(20):
                await writer.send(writer.next_update(), target.timeout)
            await asyncio.sleep(0.2)
            rss_before = rss_bytes(pid) if pid else None
            meter = CpuMeter(pid)
            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(clients)))
            elapsed = time.perf_counter() - started
            cpu = meter.percent()
            rss_after = rss_bytes(pid) if pid else None
            times.sort()
            ms = 1000.0
            result.add("connected", "clients synced", len(peers))
            result.add(
                "connect_rate", "connections/s (connect + sync)", len(peers) / elapsed, "conn/s"
            )
            result.add("sync_p50_ms", "connect + sync p50", percentile(times, 50) * ms, "ms")
            result.add("sync_p99_ms", "connect + sync p99", percentile(times, 99) * ms, "ms")
            result.add("sync_max_ms", "connect + sync max", percentile(times, 100) * ms, "ms")
            result.add(
                "rss_per_conn_kib",
                "server RSS per connection",
                _delta(rss_after, rss_before, max(len(peers), 1), KiB),
                "KiB",
            )
            _cpu_metrics(result, cpu)
            _report_connect_errors(result, errors, clients)
            _report_peer_trouble(result, peers)
        finally:
            await close_all([*peers, *([writer] if writer else [])], target.timeout)
    return result
