"""One worker process of a ReaderPool: ``python -m collab.bench.scenarios.reader_worker``.

Its ReaderConfig is the first line on stdin (a storm of thousands of urls does not fit in an
argument); then it follows the pool's protocol (collab.bench.scenarios.reader_pool): armed,
go, ready, a report of its slowest reader's progress every few milliseconds while it holds its
readers, and its totals when the next line arrives on stdin (or stdin ends).

It runs on uvloop when that is installed (the ``fast`` extra): receiving a frame then costs a
fifth less CPU, and on a small machine the readers' CPU is what limits the bench client.
"""

from __future__ import annotations

import asyncio
import json
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Sequence

import aiohttp

from collab.bench.peer import (
    Arrivals,
    BasePeer,
    CountingReader,
    LongPollReader,
    Peer,
    new_session,
)
from collab.bench.scenarios.common import Target, close_all, connect_many
from collab.bench.scenarios.reader_pool import PoolTotals, ReaderConfig, ReaderKind

READERS: dict[ReaderKind, type[Peer] | type[LongPollReader]] = {
    "counting": CountingReader,  # counts markers without decoding updates (throughput)
    "websocket": Peer,  # decodes every frame; times writer 0's updates when asked (fanout)
    "longpoll": LongPollReader,  # the same over Collab's YLP/1 transport
}
_REPORT_SECONDS = 0.005


def _emit(kind: str, value: object) -> None:
    sys.stdout.write(json.dumps({kind: value}) + "\n")
    sys.stdout.flush()


async def _next_line() -> str:
    """The parent's next word ("" when stdin ended), read without blocking the readers."""
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


def _session(reader: ReaderKind) -> aiohttp.ClientSession:
    if reader == "longpoll":  # long-poll readers reuse kept-alive connections, like a browser
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    return new_session()


async def work(config: ReaderConfig) -> None:
    target = Target(config.urls[0], timeout=config.timeout)
    async with _session(config.reader) as session:
        _emit("armed", True)
        if await _next_line() != "go":
            return
        opened = await connect_many(
            session, target, config.urls, config.label, READERS[config.reader], config.concurrency
        )
        peers = opened.peers
        try:
            if config.expected:
                for peer in peers:
                    peer.arrivals = Arrivals.expecting(config.expected)
            base_updates = sum(p.stats.updates for p in peers)
            base_bytes = sum(p.stats.bytes for p in peers)
            _emit("ready", opened.to_json())
            await _hold(peers)
            _emit("final", _totals(peers, base_updates, base_bytes).to_json())
        finally:
            await close_all(peers, config.timeout)


async def _hold(peers: Sequence[BasePeer]) -> None:
    """Report the slowest open reader's markers whenever they change, until told to stop."""
    stop = asyncio.create_task(_next_line())
    last: int | None = -1
    while not stop.done():
        seen = [p.stats.markers for p in peers if not p.closed]
        low = min(seen) if seen else None
        if low != last:
            _emit("low", low)
            last = low
        await asyncio.wait({stop}, timeout=_REPORT_SECONDS)


def _totals(peers: Sequence[BasePeer], base_updates: int, base_bytes: int) -> PoolTotals:
    markers = [p.stats.markers for p in peers] or [0]
    arrivals = array("d")
    for peer in peers:
        if peer.arrivals is not None:
            arrivals.extend(peer.arrivals.times)
    return PoolTotals(
        readers=len(peers),
        updates=sum(p.stats.updates for p in peers) - base_updates,
        bytes=sum(p.stats.bytes for p in peers) - base_bytes,
        markers=sum(markers),
        min_markers=min(markers),
        max_markers=max(markers),
        last_update_at=max((p.stats.last_update_at for p in peers), default=0.0),
        bad_frames=sum(p.stats.bad_frames for p in peers),
        closed=Counter(str(p.stats.close_code) for p in peers if p.stats.closed_by_server),
        duplicates=sum(p.stats.duplicates for p in peers),
        reordered=sum(p.stats.reordered for p in peers),
        arrivals=arrivals,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    config = ReaderConfig(**json.loads(sys.stdin.readline()))
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(work(config))
