"""Readers of one document spread over worker processes, so the bench client is not the limit.

One Python process parsing every frame of a hundred readers saturates a core before a fast
server does, and it would also delay the writer that shares its event loop. Each worker
(collab.bench.scenarios.reader_worker) opens its share of counting readers and reports over
its stdout, one JSON object a line: ``ready`` once they synced, ``low`` whenever the fewest
markers any of its open readers has seen changes (the writer's flow control), and ``final``
with its totals once a line on its stdin asks it to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from collab.bench.scenarios.common import Target
from collab.bench.system import stop_process

_STOP_SECONDS = 5.0
_WORKER = "collab.bench.scenarios.reader_worker"


@dataclass(slots=True)
class PoolTotals:
    """What the readers received after they synced (bytes include keep-alives)."""

    readers: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # failed connects, by reason
    updates: int = 0  # update frames (messages)
    bytes: int = 0
    markers: int = 0  # writer updates found in them
    min_markers: int = 0  # of the reader that received the fewest
    max_markers: int = 0
    last_update_at: float = 0.0  # perf_counter (CLOCK_MONOTONIC: the same in every process)
    bad_frames: int = 0
    closed: Counter[str] = field(default_factory=Counter)  # by the server, by close code

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PoolTotals:
        return cls(**{**data, "errors": Counter(data["errors"]), "closed": Counter(data["closed"])})

    @classmethod
    def merge(cls, parts: Sequence[PoolTotals]) -> PoolTotals:
        total = cls()
        for part in parts:
            total.readers += part.readers
            total.errors.update(part.errors)
            total.updates += part.updates
            total.bytes += part.bytes
            total.markers += part.markers
            total.last_update_at = max(total.last_update_at, part.last_update_at)
            total.bad_frames += part.bad_frames
            total.closed.update(part.closed)
        counted = [part for part in parts if part.readers]
        total.min_markers = min((p.min_markers for p in counted), default=0)
        total.max_markers = max((p.max_markers for p in counted), default=0)
        return total


class ReaderPool:
    """Worker processes holding counting readers of one document between them."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self._processes = processes
        self._low: list[int | None] = [0] * len(processes)  # None: no open reader left
        self._finals: list[PoolTotals] = []
        self._stopped: PoolTotals | None = None
        loop = asyncio.get_running_loop()
        self._readies = [loop.create_future() for _ in processes]
        self._tasks = [asyncio.create_task(self._listen(i)) for i in range(len(processes))]
        self.progress = asyncio.Event()  # set whenever a worker reports progress

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    @classmethod
    async def start(
        cls, target: Target, url: str, readers: int, processes: int
    ) -> tuple[ReaderPool, PoolTotals]:
        """Start the workers and wait (bounded) until each reader synced or failed."""
        processes = max(1, min(processes, readers))
        shares = [readers // processes + (i < readers % processes) for i in range(processes)]
        started = []
        for index, share in enumerate(shares):
            config = {
                "url": url,
                "readers": share,
                "label": f"reader{index}",
                "timeout": target.timeout,
                "connect_concurrency": max(1, target.connect_concurrency // processes),
            }
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", _WORKER, json.dumps(config),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            started.append(process)
        pool = cls(started)
        waves = 2 + readers / target.connect_concurrency
        try:
            async with asyncio.timeout(target.timeout * waves + 10):
                readies = await asyncio.gather(*pool._readies)
        except BaseException:
            await pool.stop(0.0)
            raise
        return pool, PoolTotals.merge(readies)

    def slowest(self) -> int | None:
        """Markers seen by the slowest open reader (None: every reader is closed)."""
        lows = [low for low in self._low if low is not None]
        return min(lows) if lows else None

    def delivered_to_all(self, sent: int) -> bool:
        """Whether every open reader has seen ``sent`` markers."""
        slowest = self.slowest()
        return slowest is None or slowest >= sent

    async def _listen(self, index: int) -> None:
        stdout = self._processes[index].stdout
        assert stdout is not None
        ready = self._readies[index]
        while line := await stdout.readline():
            message = json.loads(line)
            if "low" in message:
                self._low[index] = message["low"]
                self.progress.set()
            elif "ready" in message:
                ready.set_result(PoolTotals.from_json(message["ready"]))
            elif "final" in message:
                self._finals.append(PoolTotals.from_json(message["final"]))
        if not ready.done():
            ready.set_exception(RuntimeError(f"reader worker {index} exited before it was ready"))
        self._low[index] = None  # a worker that is gone holds the writer back no longer
        self.progress.set()

    async def stop(self, timeout: float = _STOP_SECONDS) -> PoolTotals:
        """Ask every worker to close its readers and report; what they said, merged.

        Later calls return the same totals.
        """
        if self._stopped is not None:
            return self._stopped
        for process in self._processes:
            assert process.stdin is not None
            with contextlib.suppress(ConnectionError):
                process.stdin.write(b"stop\n")
                await process.stdin.drain()
        # let them exit by themselves: signalling a process that is exiting makes asyncio's
        # child watcher lose its exit status ("Unknown child process pid")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*self._tasks, *(p.wait() for p in self._processes))
        for process in self._processes:
            await stop_process(process, _STOP_SECONDS)  # one that did not exit in time
        for task in self._tasks:
            task.cancel()
        self._stopped = PoolTotals.merge(self._finals)
        return self._stopped
