"""Bench clients that never write (readers), spread over worker processes, so that the bench
client is not the limit.

One Python process handling every frame of hundreds of readers saturates a core before a fast
server does, delays a writer that shares its event loop, and serves the readers of an update one
after another, so its own scheduling shows up as latency and caps connect storms. Each worker
(collab.bench.scenarios.reader_worker) holds a share of the readers and talks over its stdin
and stdout, one line each way at every step:

1. the parent writes the worker's ReaderConfig; the worker says ``armed`` once it can connect
   (interpreter started, modules imported);
2. the parent writes ``go`` to every worker at once (a common start for a connect storm); each
   opens and syncs its share and says ``ready`` with how that went (Joins);
3. while it holds them, it says ``low`` whenever the fewest markers any of its open readers has
   seen changes (the writers' flow control, and the end of a drain);
4. the parent writes ``stop``; the worker says ``final`` with its totals (PoolTotals), closes
   its readers and exits. The end of stdin means stop too: a worker never outlives the bench.

Times (Joins, ``last_update_at``, ``arrivals``) are ``time.perf_counter`` readings, which is
CLOCK_MONOTONIC on Linux: one clock for all processes, so a worker's arrival time minus the
writer's send time in the parent is a delivery latency.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from collab.bench.results import ScenarioResult
from collab.bench.scenarios.common import Joins, Target
from collab.bench.system import stop_process

ReaderKind = Literal["counting", "websocket", "longpoll"]  # see reader_worker.READERS

_ARM_SECONDS = 30.0  # to start an interpreter and import the bench on a busy machine
_STOP_SECONDS = 5.0
_LINE_LIMIT = 1 << 30  # a final line carries the arrival times of each timing reader
_WORKER = "collab.bench.scenarios.reader_worker"


class PoolError(RuntimeError):
    """A worker process did not start, or did not connect its readers in time."""


def default_processes(kept_cores: int = 0) -> int:
    """One reader process per core, less ``kept_cores`` for processes busy all the run long
    (throughput's server and writer); at least one, at most four.

    Where the server and the writer work in bursts (a steady fanout, a connect storm), a
    process per core wins although they share the cores: on 2 cores, two processes beat one.
    """
    return max(1, min(4, (os.cpu_count() or 2) - kept_cores))


@dataclass(frozen=True, slots=True)
class ReaderConfig:
    """One worker's share: which readers, of which urls, how many connecting at once."""

    reader: ReaderKind
    urls: list[str]
    label: str
    timeout: float
    concurrency: int
    expected: int = 0  # updates of writer 0 each reader times (by sequence number); 0: none


@dataclass(slots=True)
class PoolTotals:
    """What the readers received after they synced (bytes include keep-alives)."""

    readers: int = 0
    updates: int = 0  # update frames (messages)
    bytes: int = 0
    markers: int = 0  # writer updates found in them
    min_markers: int = 0  # of the reader that received the fewest
    max_markers: int = 0
    last_update_at: float = 0.0
    bad_frames: int = 0
    closed: Counter[str] = field(default_factory=Counter)  # by the server, by close code
    duplicates: int = 0  # timed updates that arrived twice
    reordered: int = 0  # timed updates that arrived after a later one
    # arrival time of each timed update, ``expected`` per reader, reader after reader (NaN: never)
    arrivals: array = field(default_factory=lambda: array("d"))

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["arrivals"] = base64.b64encode(self.arrivals.tobytes()).decode()
        return data

    @classmethod
    def from_json(cls, data: dict) -> PoolTotals:
        arrivals = array("d")
        arrivals.frombytes(base64.b64decode(data["arrivals"]))
        return cls(**{**data, "closed": Counter(data["closed"]), "arrivals": arrivals})

    @classmethod
    def merge(cls, parts: Sequence[PoolTotals]) -> PoolTotals:
        total = cls()
        for part in parts:
            total.readers += part.readers
            total.updates += part.updates
            total.bytes += part.bytes
            total.markers += part.markers
            total.last_update_at = max(total.last_update_at, part.last_update_at)
            total.bad_frames += part.bad_frames
            total.closed.update(part.closed)
            total.duplicates += part.duplicates
            total.reordered += part.reordered
            total.arrivals.extend(part.arrivals)
        counted = [part for part in parts if part.readers]
        total.min_markers = min((p.min_markers for p in counted), default=0)
        total.max_markers = max((p.max_markers for p in counted), default=0)
        return total


def report_reader_trouble(result: ScenarioResult, totals: PoolTotals) -> None:
    """Readers the server closed while they were held, and frames it got wrong."""
    closed = sum(totals.closed.values())
    if closed:
        detail = ", ".join(f"code {code} x{n}" for code, n in totals.closed.most_common())
        result.problem(f"the server closed {closed} readers during the run ({detail})")
    if totals.bad_frames:
        result.problem(f"{totals.bad_frames} frames received were not valid y-websocket messages")


class ReaderPool:
    """Worker processes holding readers between them, from ``connect_all`` until ``stop``."""

    def __init__(self, target: Target, readers: int) -> None:
        self._target = target
        self._readers = readers
        self._processes: list[asyncio.subprocess.Process] = []
        # each worker's answers; None: it exited without giving one
        self._armed: list[asyncio.Future[bool | None]] = []
        self._readies: list[asyncio.Future[Joins | None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._low: list[int | None] = []  # None: no open reader left
        self._finals: list[PoolTotals] = []
        self._stopped: PoolTotals | None = None
        self.progress = asyncio.Event()  # set whenever a worker reports progress

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        target: Target,
        reader: ReaderKind,
        urls: Sequence[str],
        processes: int,
        expected: int = 0,
    ) -> AsyncIterator[ReaderPool]:
        """Start ``processes`` workers, each with its share of ``urls`` (one reader per url),
        and wait (bounded) until they are armed; on the way out, whatever happened, they stop.

        Each worker opens at most its share of the target's ``connect_concurrency`` at once.
        """
        processes = max(1, min(processes, len(urls)))
        concurrency = max(1, target.connect_concurrency // processes)
        pool = cls(target, len(urls))
        try:
            for _ in range(processes):
                await pool._spawn()
            configs = (
                ReaderConfig(
                    reader=reader,
                    urls=list(urls[index::processes]),
                    label=f"reader{index}",
                    timeout=target.timeout,
                    concurrency=concurrency,
                    expected=expected,
                )
                for index in range(processes)
            )
            await asyncio.gather(
                *(pool._send(index, json.dumps(asdict(c))) for index, c in enumerate(configs))
            )
            await pool._answers(pool._armed, _ARM_SECONDS, "start")
            yield pool
        finally:
            await pool.stop()

    async def _spawn(self) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", _WORKER,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=_LINE_LIMIT,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        self._processes.append(process)
        self._armed.append(loop.create_future())
        self._readies.append(loop.create_future())
        self._low.append(0)
        self._tasks.append(asyncio.create_task(self._listen(len(self._processes) - 1)))

    async def _send(self, index: int, line: str) -> None:
        stdin = self._processes[index].stdin
        assert stdin is not None
        with contextlib.suppress(ConnectionError):  # a worker that is gone is noticed elsewhere
            stdin.write(line.encode() + b"\n")
            await stdin.drain()

    async def _answers(self, futures: list[asyncio.Future], timeout: float, step: str) -> list:
        try:
            async with asyncio.timeout(timeout):
                answers = await asyncio.gather(*futures)
        except TimeoutError:
            raise PoolError(f"the reader processes did not {step} within {timeout:g} s") from None
        if None in answers:
            raise PoolError(f"a reader process exited before it could {step}")
        return answers

    async def connect_all(self) -> Joins:
        """Start every worker's connections at once; wait (bounded) until each synced or failed."""
        await asyncio.gather(*(self._send(index, "go") for index in range(len(self._processes))))
        waves = 2 + self._readers / self._target.connect_concurrency
        parts = await self._answers(self._readies, self._target.timeout * waves + 10, "connect")
        return Joins.merge(parts)

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
        armed, ready = self._armed[index], self._readies[index]
        try:
            while line := await stdout.readline():
                ((kind, value),) = json.loads(line).items()
                if kind == "low":
                    self._low[index] = value
                    self.progress.set()
                elif kind == "armed":
                    _settle(armed, True)
                elif kind == "ready":
                    _settle(ready, Joins.from_json(value))
                elif kind == "final":
                    self._finals.append(PoolTotals.from_json(value))
        finally:
            _settle(armed, None)
            _settle(ready, None)
            self._low[index] = None  # a worker that is gone holds the writer back no longer
            self.progress.set()

    async def stop(self) -> PoolTotals:
        """Ask every worker to close its readers and report; what they said, merged.

        Later calls return the same totals.
        """
        if self._stopped is not None:
            return self._stopped
        await asyncio.gather(*(self._send(index, "stop") for index in range(len(self._processes))))
        # let them exit by themselves: signalling a process that is exiting makes asyncio's
        # child watcher lose its exit status ("Unknown child process pid")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._target.timeout + _STOP_SECONDS):
                waits = (process.wait() for process in self._processes)
                await asyncio.gather(*self._tasks, *waits, return_exceptions=True)
        for process in self._processes:
            await stop_process(process, _STOP_SECONDS)  # one that did not exit in time
        for task in self._tasks:
            task.cancel()
        self._stopped = PoolTotals.merge(self._finals)
        return self._stopped


def _settle(future: asyncio.Future, value: object) -> None:
    """Resolve unless it is already (a wait that timed out cancels what it waited for)."""
    if not future.done():
        future.set_result(value)
