"""One worker process of a ReaderPool: ``python -m collab.bench.scenarios.reader_worker CONFIG``.

It opens its counting readers, says when they are ready, reports its slowest reader's
progress every few milliseconds and its totals when a line arrives on stdin (or stdin ends).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

from collab.bench.peer import CountingReader, new_session
from collab.bench.scenarios.common import Target, close_all, connect_many
from collab.bench.scenarios.reader_pool import PoolTotals

_REPORT_SECONDS = 0.005


def _emit(kind: str, value: object) -> None:
    sys.stdout.write(json.dumps({kind: value}) + "\n")
    sys.stdout.flush()


async def work(
    url: str, readers: int, label: str, timeout: float, connect_concurrency: int
) -> None:
    target = Target(url, timeout=timeout, connect_concurrency=connect_concurrency)
    async with new_session() as session:
        peers, errors = await connect_many(session, target, [url] * readers, label, CountingReader)
        try:
            base_updates = sum(p.stats.updates for p in peers)
            base_bytes = sum(p.stats.bytes for p in peers)
            _emit("ready", PoolTotals(len(peers), errors).to_json())
            stop = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))
            last: int | None = -1
            while not stop.done():
                seen = [p.stats.markers for p in peers if not p.closed]
                low = min(seen) if seen else None
                if low != last:
                    _emit("low", low)
                    last = low
                await asyncio.wait({stop}, timeout=_REPORT_SECONDS)
            markers = [p.stats.markers for p in peers] or [0]
            totals = PoolTotals(
                readers=len(peers),
                updates=sum(p.stats.updates for p in peers) - base_updates,
                bytes=sum(p.stats.bytes for p in peers) - base_bytes,
                markers=sum(markers),
                min_markers=min(markers),
                max_markers=max(markers),
                last_update_at=max((p.stats.last_update_at for p in peers), default=0.0),
                bad_frames=sum(p.stats.bad_frames for p in peers),
                closed=Counter(str(p.stats.close_code) for p in peers if p.stats.closed_by_server),
            )
            _emit("final", totals.to_json())
        finally:
            await close_all(peers, timeout)


if __name__ == "__main__":
    asyncio.run(work(**json.loads(sys.argv[1])))
