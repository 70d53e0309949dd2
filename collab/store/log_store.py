"""What the stores share: documents are a snapshot plus an update log, appended through one
group-commit writer and folded into the snapshot once the log grows past a threshold.

A backend subclasses ``LogStore``, calls ``_start_writer(write_batch)`` when it opens and
``_stop_writer()`` when it closes, and implements ``compact``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from collab.store.base import CompactionResult, StoreError
from collab.store.group_commit import GroupCommitter, Writer

log = logging.getLogger(__name__)


class LogStore:
    def __init__(
        self,
        *,
        compact_after_rows: int,
        compact_after_bytes: int,
        batch_max_rows: int,
        batch_max_bytes: int,
        retry_on: tuple[type[Exception], ...],
        writer: Writer,
        name: str,
    ) -> None:
        self.compact_after_rows = compact_after_rows
        self.compact_after_bytes = compact_after_bytes
        self.compactions = 0
        self._closed = True
        self._compactions: dict[str, asyncio.Task[None]] = {}
        self._compaction_errors: tuple[type[Exception], ...] = (StoreError, ValueError, *retry_on)
        self._committer = GroupCommitter(
            writer,
            retry_on=retry_on,
            on_log_size=self._maybe_compact,
            batch_max_rows=batch_max_rows,
            batch_max_bytes=batch_max_bytes,
            name=name,
        )

    async def compact(self, doc_id: str) -> CompactionResult | None:
        raise NotImplementedError

    # -- the group-commit writer -------------------------------------------------------------

    def _start_writer(self) -> None:
        self._closed = False
        self._committer.start()

    async def _stop_writer(self) -> None:
        """Commit what is queued, then stop the writer and any compaction in flight."""
        self._closed = True
        await self._committer.close()
        for task in list(self._compactions.values()):
            task.cancel()
        await asyncio.gather(*self._compactions.values(), return_exceptions=True)

    def append(self, doc_id: str, update: bytes) -> asyncio.Future[int]:
        return self._committer.append(doc_id, update)

    @property
    def backlog(self) -> int:
        return self._committer.backlog

    async def wait_for_backlog(self, below: int) -> None:
        await self._committer.wait_for_backlog(below)

    @property
    def commits(self) -> int:
        return self._committer.commits

    @property
    def committed_rows(self) -> int:
        return self._committer.committed_rows

    @property
    def on_commit(self) -> Callable[[float, int], None] | None:
        return self._committer.on_commit

    @on_commit.setter
    def on_commit(self, observer: Callable[[float, int], None] | None) -> None:
        self._committer.on_commit = observer

    # -- size-triggered compaction -----------------------------------------------------------

    def _maybe_compact(self, doc_id: str, log_rows: int, log_bytes: int) -> None:
        if log_rows < self.compact_after_rows and log_bytes < self.compact_after_bytes:
            return
        if doc_id in self._compactions or self._closed:
            return  # single-flight per document
        task = asyncio.create_task(self._compact_in_background(doc_id), name=f"compact {doc_id}")
        self._compactions[doc_id] = task
        task.add_done_callback(lambda _: self._compactions.pop(doc_id, None))

    def _compacted(
        self,
        doc_id: str,
        folded_rows: int,
        folded_bytes: int,
        snapshot_bytes: int,
        old_snapshot_bytes: int,
        log_bytes: int,
    ) -> CompactionResult:
        """Count and report a compaction that committed."""
        self.compactions += 1
        result = CompactionResult(
            doc_id,
            folded_rows,
            old_snapshot_bytes + log_bytes,
            snapshot_bytes + log_bytes - folded_bytes,
        )
        log.info(
            "compacted %r: %d rows, %d -> %d bytes",
            doc_id, result.folded_rows, result.bytes_before, result.bytes_after,
        )  # fmt: skip
        return result

    async def _compact_in_background(self, doc_id: str) -> None:
        try:
            await self.compact(doc_id)
        except self._compaction_errors as exc:
            log.warning("compaction of %r failed: %s", doc_id, exc)
