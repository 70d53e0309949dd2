"""The storage contract every backend fulfils (SQLite now, PostgreSQL for several hosts).

A document is a snapshot (a Yjs update holding the folded state) plus an append-only log of
raw Yjs updates with per-document sequence numbers. ``append`` resolves only after the update
is committed: that is what makes a step2 reply a durability barrier.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol


class StoreError(Exception):
    """The store could not do what was asked (disk full, locked, closed, corrupt)."""


@dataclass(frozen=True, slots=True)
class StoredDocument:
    snapshot: bytes | None
    updates: list[bytes]
    last_seq: int

    def parts(self) -> list[bytes]:
        """Everything to apply to a fresh Doc, in order."""
        return ([self.snapshot] if self.snapshot else []) + self.updates


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    doc_id: str
    created_at: int  # unix ms
    updated_at: int
    last_seq: int
    snapshot_seq: int
    snapshot_bytes: int
    log_count: int
    log_bytes: int

    @property
    def stored_bytes(self) -> int:
        return self.snapshot_bytes + self.log_bytes


@dataclass(frozen=True, slots=True)
class CompactionResult:
    doc_id: str
    folded_rows: int
    bytes_before: int
    bytes_after: int


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None:
        """Commit everything already appended, then release the database."""

    async def load(self, doc_id: str) -> StoredDocument: ...

    def append(self, doc_id: str, update: bytes) -> asyncio.Future[int]:
        """Queue one raw Yjs update for the next group commit.

        The future resolves to the update's sequence number once it is committed, or fails with
        StoreError. Updates are committed in the order they were appended."""

    @property
    def backlog(self) -> int:
        """Appends waiting for a commit."""

    async def wait_for_backlog(self, below: int) -> None:
        """Return once fewer than ``below`` appends wait: readers pause meanwhile, so a store
        that cannot keep up slows the writers instead of queueing without bound."""

    async def compact(self, doc_id: str) -> CompactionResult | None:
        """Fold the log into the snapshot; None when there was nothing to fold or a
        concurrent compaction won."""

    async def delete(self, doc_id: str) -> bool: ...

    async def check_writable(self) -> None:
        """Raise StoreError unless a write could be committed now (readiness)."""

    async def info(self, doc_id: str) -> DocumentInfo | None: ...

    async def list_documents(
        self, prefix: str = "", after: str = "", limit: int = 100
    ) -> list[DocumentInfo]: ...
