"""Presence: N clients on one document moving their cursors, awareness delivery latency."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from array import array
from collections.abc import Callable

import aiohttp

from collab.bench.peer import Peer, doc_url, new_session
from collab.bench.results import ScenarioResult
from collab.bench.scenarios.common import (
    MS,
    Target,
    close_all,
    connect_many,
    cpu_metrics,
    percentile,
    report_connect_errors,
    report_peer_trouble,
    wait_until,
)
from collab.bench.system import CpuMeter
from collab.protocol.awareness import AwarenessEntry, encode_awareness_update
from collab.protocol.wire import AwarenessMessage, encode_message

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
        opened = await connect_many(session, target, [url] * clients, "presence")
        peers = opened.peers
        report_connect_errors(result, opened.errors, clients)
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
            drained = await wait_until(lambda: len(seen) >= expected, target.timeout)
            cpu = meter.percent()
            latencies.sort()
            result.add("clients_connected", "clients connected", len(peers))
            result.add("updates_sent", "awareness updates sent", len(peers) * rounds)
            result.add(
                "latency_p50_ms", "delivery latency p50", percentile(latencies, 50) * MS, "ms"
            )
            result.add(
                "latency_p99_ms", "delivery latency p99", percentile(latencies, 99) * MS, "ms"
            )
            result.add(
                "latency_max_ms", "delivery latency max", percentile(latencies, 100) * MS, "ms"
            )
            result.add("delivered", "states delivered to other clients", len(seen))
            result.add("missing", "states missing", expected - len(seen))
            frames = sum(p.stats.frames for p in peers)
            result.add("frames_received", "frames received (all clients)", frames)
            cpu_metrics(result, cpu)
            if not drained:
                result.problem(
                    f"{expected - len(seen)} of {expected} presence deliveries never arrived"
                )
            if duplicates:
                result.problem(f"{duplicates} presence states arrived twice")
            report_peer_trouble(result, peers)
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
