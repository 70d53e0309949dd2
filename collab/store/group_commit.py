"""Group commit, shared by the stores: one writer task commits whatever queued while the
previous commit ran (no artificial delay: low latency when idle, big batches under load).

A backend supplies ``write(batch)``, which stores one batch in one transaction and returns
each append's sequence number plus the per-document log size (for size-triggered
compaction). Failed batches are retried, then their futures fail; nothing stops the writer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from collab.store.base import StoreError

log = logging.getLogger(__name__)

ATTEMPTS = 3


@dataclass(slots=True)
class Append:
    doc_id: str
    data: bytes
    future: asyncio.Future[int] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Written:
    seqs: list[int]  # one per append, in batch order
    log_sizes: dict[str, tuple[int, int]]  # doc_id -> (log rows, log bytes) after the commit


Writer = Callable[[list[Append]], Awaitable[Written]]


class GroupCommitter:
    def __init__(
        self,
        write: Writer,
        *,
        retry_on: tuple[type[Exception], ...],
        on_log_size: Callable[[str, int, int], None],
        batch_max_rows: int = 512,
        batch_max_bytes: int = 4 * 1024 * 1024,
        name: str = "store-writer",
    ) -> None:
        self._write = write
        self._retry_on = retry_on
        self._on_log_size = on_log_size
        self._batch_max_rows = batch_max_rows
        self._batch_max_bytes = batch_max_bytes
        self._name = name
        self._queue: asyncio.Queue[Append | None] = asyncio.Queue()
        self._committed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = True
        self.commits = 0
        self.committed_rows = 0
        self.on_commit: Callable[[float, int], None] | None = None  # (seconds, rows)

    @property
    def backlog(self) -> int:
        """Appends waiting for a commit."""
        return self._queue.qsize()

    def start(self) -> None:
        self._closed = False
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def close(self) -> None:
        """Commit everything already appended, then stop."""
        if self._closed:
            return
        self._closed = True
        await self._queue.put(None)
        if self._task is not None:
            await self._task
        self._committed.set()

    def append(self, doc_id: str, data: bytes) -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(StoreError("store is closed"))
        else:
            self._queue.put_nowait(Append(doc_id, data, future))
        return future

    async def wait_for_backlog(self, below: int) -> None:
        """Backpressure: return once fewer than ``below`` appends wait (or the store closed)."""
        while self._queue.qsize() >= below and not self._closed:
            self._committed.clear()
            await self._committed.wait()

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            size = len(first.data)
            while (
                not self._queue.empty()
                and len(batch) < self._batch_max_rows
                and size < self._batch_max_bytes
            ):
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                size += len(item.data)
            try:
                await self._commit(batch)
            except Exception as exc:  # never let one bad batch stop every later append
                log.exception("commit failed unexpectedly")
                _fail(batch, StoreError(f"cannot store updates: {exc}"))
            self._committed.set()

    async def _commit(self, batch: list[Append]) -> None:
        started = time.perf_counter()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                written = await self._write(batch)
                break
            except self._retry_on as exc:
                log.warning("commit of %d updates failed (try %d): %s", len(batch), attempt, exc)
                if attempt == ATTEMPTS:
                    error = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                    _fail(batch, StoreError(f"cannot store updates: {error}"))
                    return
                await asyncio.sleep(0.05 * 2**attempt)
        self.commits += 1
        self.committed_rows += len(batch)
        if self.on_commit is not None:
            try:
                self.on_commit(time.perf_counter() - started, len(batch))
            except Exception:
                log.exception("commit observer failed")
        for item, seq in zip(batch, written.seqs, strict=True):
            if not item.future.done():
                item.future.set_result(seq)
        for doc_id, (rows, size) in written.log_sizes.items():
            self._on_log_size(doc_id, rows, size)


def _fail(batch: list[Append], error: StoreError) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(error)
