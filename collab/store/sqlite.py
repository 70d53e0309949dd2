"""SQLite store: WAL, one group-commit writer task, snapshot + update log per document.

Appends are queued; a single writer task commits whatever queued while the previous commit ran
(no artificial delay: low latency when idle, large batches under load). Sequence numbers are
assigned by the database inside the transaction, so several processes sharing the file still
get gap-free per-document sequences.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path

import aiosqlite

from collab.store.base import CompactionResult, DocumentInfo, StoredDocument, StoreError
from collab.store.folding import fold_off_loop
from collab.store.group_commit import Append, Written
from collab.store.log_store import LogStore

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA_V1 = """
CREATE TABLE documents (
  doc_id         TEXT PRIMARY KEY,
  created_at     INTEGER NOT NULL,
  updated_at     INTEGER NOT NULL,
  last_seq       INTEGER NOT NULL DEFAULT 0,
  snapshot_seq   INTEGER NOT NULL DEFAULT 0,
  snapshot       BLOB,
  snapshot_bytes INTEGER NOT NULL DEFAULT 0,
  log_count      INTEGER NOT NULL DEFAULT 0,
  log_bytes      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE updates (
  doc_id     TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
  seq        INTEGER NOT NULL,
  data       BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (doc_id, seq)
) WITHOUT ROWID;
CREATE TRIGGER updates_after_insert AFTER INSERT ON updates BEGIN
  UPDATE documents SET last_seq = NEW.seq, updated_at = NEW.created_at,
         log_count = log_count + 1, log_bytes = log_bytes + length(NEW.data)
   WHERE doc_id = NEW.doc_id;
END;
"""

_APPEND = (
    "INSERT INTO updates(doc_id, seq, data, created_at) "
    "VALUES (?1, (SELECT last_seq + 1 FROM documents WHERE doc_id = ?1), ?2, ?3)"
)
_INFO_COLUMNS = (
    "doc_id, created_at, updated_at, last_seq, snapshot_seq, snapshot_bytes, log_count, log_bytes"
)


def _now_ms() -> int:
    return int(time.time() * 1000)


# The document's row (part 0), then its updates after the snapshot in order (part 1).
_LOAD = """
SELECT 0, snapshot, snapshot_seq, last_seq FROM documents WHERE doc_id = ?1
UNION ALL
SELECT 1, updates.data, updates.seq, NULL FROM updates
  JOIN documents ON documents.doc_id = updates.doc_id
 WHERE updates.doc_id = ?1 AND updates.seq > documents.snapshot_seq
ORDER BY 1, 3
"""


class SQLiteStore(LogStore):
    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        compact_after_rows: int = 500,
        compact_after_bytes: int = 512 * 1024,
        batch_max_rows: int = 512,
        batch_max_bytes: int = 4 * 1024 * 1024,
        busy_timeout_ms: int = 5000,
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        super().__init__(
            compact_after_rows=compact_after_rows,
            compact_after_bytes=compact_after_bytes,
            batch_max_rows=batch_max_rows,
            batch_max_bytes=batch_max_bytes,
            retry_on=(sqlite3.Error,),
            writer=self._write_batch,
            name="sqlite-writer",
        )
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await self._connect()
            await self._migrate(self._writer)
            self._reader = await self._connect()
        except sqlite3.Error as exc:
            await self._close_connections()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        except BaseException:
            await self._close_connections()
            raise
        self._start_writer()

    async def close(self) -> None:
        if self._closed:
            return
        await self._stop_writer()
        if self._writer is not None:
            with contextlib.suppress(sqlite3.Error):
                await _run_pragma(self._writer, "wal_checkpoint(TRUNCATE)")
        await self._close_connections()

    async def _connect(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self.path, isolation_level=None)
        await db.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute(f"PRAGMA synchronous={self.synchronous}")
        return db

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        async with db.execute("PRAGMA user_version") as cursor:
            (version,) = await cursor.fetchone()  # type: ignore[misc]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}; this server knows {SCHEMA_VERSION}"
            )
        if version == 0:
            # auto_vacuum must be chosen before the first table exists.
            await db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            await db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_statements(_SCHEMA_V1):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        async with db.execute("PRAGMA journal_mode=WAL") as cursor:
            (mode,) = await cursor.fetchone()  # type: ignore[misc]
        if mode != "wal":
            raise StoreError(f"{self.path}: cannot enable WAL (journal_mode={mode})")

    async def _close_connections(self) -> None:
        for db in (self._reader, self._writer):
            if db is not None:
                with contextlib.suppress(Exception):
                    await db.close()
        self._reader = self._writer = None

    # -- writes ------------------------------------------------------------------------------

    async def _write_batch(self, batch: list[Append]) -> Written:
        """One transaction; the database assigns the seqs (gap-free across processes)."""
        doc_ids = list(dict.fromkeys(item.doc_id for item in batch))
        now = _now_ms()
        db = self._require(self._writer)
        async with self._write_lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(
                    "INSERT OR IGNORE INTO documents(doc_id, created_at, updated_at) "
                    "VALUES (?, ?, ?)",
                    [(doc_id, now, now) for doc_id in doc_ids],
                )
                await db.executemany(_APPEND, [(item.doc_id, item.data, now) for item in batch])
                placeholders = ",".join("?" * len(doc_ids))
                async with db.execute(
                    "SELECT doc_id, last_seq, log_count, log_bytes FROM documents "
                    f"WHERE doc_id IN ({placeholders})",
                    doc_ids,
                ) as cursor:
                    rows = await cursor.fetchall()
                await db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                raise
        last = {row[0]: row[1] for row in rows}
        seqs = [0] * len(batch)
        for index in range(len(batch) - 1, -1, -1):  # a doc's k rows end at its last_seq
            doc_id = batch[index].doc_id
            seqs[index] = last[doc_id]
            last[doc_id] -= 1
        return Written(seqs, {row[0]: (row[2], row[3]) for row in rows})

    # -- compaction --------------------------------------------------------------------------

    async def compact(self, doc_id: str) -> CompactionResult | None:
        reader = self._require(self._reader)
        async with self._read_lock:
            await reader.execute("BEGIN")
            try:
                async with reader.execute(
                    "SELECT snapshot, snapshot_seq, last_seq, snapshot_bytes, log_bytes, "
                    "created_at FROM documents WHERE doc_id = ?",
                    (doc_id,),
                ) as cursor:
                    head = await cursor.fetchone()
                if head is None:
                    return None
                snapshot, snapshot_seq, last_seq, snapshot_bytes, log_bytes, created_at = head
                async with reader.execute(
                    "SELECT data FROM updates WHERE doc_id = ? AND seq > ? AND seq <= ? "
                    "ORDER BY seq",
                    (doc_id, snapshot_seq, last_seq),
                ) as cursor:
                    rows = [row[0] for row in await cursor.fetchall()]
            finally:
                await reader.execute("COMMIT")
        if not rows:
            return None
        folded = await fold_off_loop(([snapshot] if snapshot else []) + rows)
        folded_bytes = sum(len(row) for row in rows)
        writer = self._require(self._writer)
        async with self._write_lock:
            await writer.execute("BEGIN IMMEDIATE")
            try:
                cursor = await writer.execute(
                    "UPDATE documents SET snapshot = ?, snapshot_seq = ?, snapshot_bytes = ?, "
                    "log_count = log_count - ?, log_bytes = log_bytes - ? "
                    "WHERE doc_id = ? AND snapshot_seq = ? AND created_at = ?",
                    (
                        folded,
                        last_seq,
                        len(folded),
                        len(rows),
                        folded_bytes,
                        doc_id,
                        snapshot_seq,
                        created_at,
                    ),  # the document may have been deleted and re-created meanwhile
                )
                if cursor.rowcount == 0:
                    await writer.execute("ROLLBACK")
                    return None
                await writer.execute(
                    "DELETE FROM updates WHERE doc_id = ? AND seq <= ?", (doc_id, last_seq)
                )
                await writer.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await writer.execute("ROLLBACK")
                raise
            await _run_pragma(writer, "incremental_vacuum")
        return self._compacted(
            doc_id, len(rows), folded_bytes, len(folded), snapshot_bytes, log_bytes
        )

    # -- reads -------------------------------------------------------------------------------

    async def load(self, doc_id: str) -> StoredDocument:
        """One statement, so one consistent read and one trip to aiosqlite's thread: a connect
        storm to new documents loads one per connection, and each trip hands the GIL over."""
        reader = self._require(self._reader)
        try:
            async with self._read_lock:
                rows = await reader.execute_fetchall(_LOAD, (doc_id,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot load {doc_id!r}: {exc}") from exc
        if not rows:
            return StoredDocument(None, [], 0)
        (_, snapshot, _, last_seq), *updates = rows
        return StoredDocument(snapshot, [row[1] for row in updates], last_seq)

    async def info(self, doc_id: str) -> DocumentInfo | None:
        reader = self._require(self._reader)
        async with (
            self._read_lock,
            reader.execute(
                f"SELECT {_INFO_COLUMNS} FROM documents WHERE doc_id = ?", (doc_id,)
            ) as cursor,
        ):
            row = await cursor.fetchone()
        return None if row is None else DocumentInfo(*row)

    async def list_documents(
        self, prefix: str = "", after: str = "", limit: int = 100
    ) -> list[DocumentInfo]:
        reader = self._require(self._reader)
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        async with (
            self._read_lock,
            reader.execute(
                f"SELECT {_INFO_COLUMNS} FROM documents "
                "WHERE doc_id LIKE ? ESCAPE '\\' AND doc_id > ? ORDER BY doc_id LIMIT ?",
                (pattern, after, limit),
            ) as cursor,
        ):
            rows = await cursor.fetchall()
        return [DocumentInfo(*row) for row in rows]

    async def delete(self, doc_id: str) -> bool:
        writer = self._require(self._writer)
        async with self._write_lock:
            cursor = await writer.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            deleted = cursor.rowcount > 0
            await _run_pragma(writer, "incremental_vacuum")
        return deleted

    async def check_writable(self) -> None:
        """Take and release the write lock: proves the file can be written right now."""
        writer = self._require(self._writer)
        try:
            async with self._write_lock:
                await writer.execute("BEGIN IMMEDIATE")
                await writer.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(f"store not writable: {exc}") from exc

    async def checkpoint(self) -> None:
        """Move the WAL into the main file and truncate it (shrinks what is on disk)."""
        writer = self._require(self._writer)
        async with self._write_lock:
            await _run_pragma(writer, "wal_checkpoint(TRUNCATE)")

    def _require(self, db: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if db is None:
            raise StoreError("store is closed")
        return db


async def _run_pragma(db: aiosqlite.Connection, pragma: str) -> None:
    """Run a pragma to completion: through ``execute`` Python's sqlite3 steps
    ``incremental_vacuum`` only once (one page); ``executescript`` runs it fully."""
    await db.executescript(f"PRAGMA {pragma};")


def _split_statements(script: str) -> list[str]:
    """Split the schema into statements; a trigger body keeps its inner semicolons."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        joined = "\n".join(current)
        if line.rstrip().endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    return statements
