"""PostgreSQL store: the SQLite store's contract, for several hosts sharing one database.

Same shape as ``sqlite.py``: a snapshot plus an append-only log per document and one
group-commit writer task per process. Any number of processes may append to the same document:
a batch reserves its sequence numbers by raising ``documents.last_seq`` in an upsert, whose row
lock is held until the batch commits, so each document's sequence stays gap-free and in queue
order. A batch whose COMMIT is lost with its connection is retried, so it may be stored twice;
applying a Yjs update twice is harmless. Rows that compaction deletes are reclaimed by
(auto)vacuum, as usual in PostgreSQL. Needs PostgreSQL 11 or newer.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg

from collab.store.base import CompactionResult, DocumentInfo, StoredDocument, StoreError
from collab.store.folding import fold_off_loop
from collab.store.group_commit import Append, Written
from collab.store.log_store import LogStore

log = logging.getLogger(__name__)

# Entry i migrates the schema from version i to i + 1. Never edit an entry that has shipped.
_MIGRATIONS = (
    """
    CREATE TABLE {schema}.documents (
      doc_id         text COLLATE "C" PRIMARY KEY,  -- byte order, as SQLite lists them
      created_at     bigint NOT NULL,               -- unix ms
      updated_at     bigint NOT NULL,
      last_seq       bigint NOT NULL DEFAULT 0,
      snapshot_seq   bigint NOT NULL DEFAULT 0,
      snapshot       bytea,
      snapshot_bytes bigint NOT NULL DEFAULT 0,
      log_count      bigint NOT NULL DEFAULT 0,
      log_bytes      bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE {schema}.updates (
      doc_id     text COLLATE "C" NOT NULL REFERENCES {schema}.documents ON DELETE CASCADE,
      seq        bigint NOT NULL,
      data       bytea NOT NULL,
      created_at bigint NOT NULL,
      PRIMARY KEY (doc_id, seq)
    );
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_INFO_COLUMNS = (
    "doc_id, created_at, updated_at, last_seq, snapshot_seq, snapshot_bytes, log_count, log_bytes"
)
# What asyncpg raises when the server refuses, drops, times out or rejects a statement.
# InternalClientError: a pooled connection whose server process was terminated while idle
# fails its next statement with it (MagicStack/asyncpg#784); the pool then replaces it.
_DB_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


def _now_ms() -> int:
    return int(time.time() * 1000)


class PostgresStore(LogStore):
    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "collab",
        compact_after_rows: int = 500,
        compact_after_bytes: int = 512 * 1024,
        batch_max_rows: int = 512,
        batch_max_bytes: int = 4 * 1024 * 1024,
        pool_size: int = 5,
        command_timeout: float = 30.0,
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError("schema must be a lowercase SQL identifier (a-z, 0-9, _)")
        super().__init__(
            compact_after_rows=compact_after_rows,
            compact_after_bytes=compact_after_bytes,
            batch_max_rows=batch_max_rows,
            batch_max_bytes=batch_max_bytes,
            retry_on=(StoreError,),
            writer=self._write_batch,
            name="postgres-writer",
        )
        self._dsn = dsn
        self.schema = schema
        self._pool_size = pool_size
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                command_timeout=self._command_timeout,
                timeout=self._command_timeout,
            )
            async with self._pool.acquire() as conn:
                await self._migrate(conn)
        except _DB_ERRORS as exc:
            self._terminate_pool()
            raise StoreError(
                f"cannot open the PostgreSQL store at {_redact(self._dsn)}: {_describe(exc)}"
            ) from exc
        except BaseException:
            self._terminate_pool()
            raise
        self._start_writer()

    async def close(self) -> None:
        if self._closed:
            return
        await self._stop_writer()
        if self._pool is not None:
            try:
                await self._pool.close()
            except _DB_ERRORS:
                self._pool.terminate()
        self._pool = None

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        """Bring the schema up to date; an advisory lock serialises processes starting at once
        (CREATE SCHEMA IF NOT EXISTS alone races). Objects that exist are not created again,
        so a role without CREATE rights can use a schema an administrator prepared."""
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"collab.migrate:{self.schema}",
            )
            if not await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", self.schema
            ):
                await conn.execute(f"CREATE SCHEMA {self.schema}")
            if await conn.fetchval("SELECT to_regclass($1)", f"{self.schema}.schema_version"):
                version = await conn.fetchval(
                    f"SELECT coalesce(max(version), 0) FROM {self.schema}.schema_version"
                )
            else:
                await conn.execute(
                    f"CREATE TABLE {self.schema}.schema_version (version integer PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                )
                version = 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"PostgreSQL schema {self.schema!r} has schema version {version}; "
                    f"this server knows {SCHEMA_VERSION}"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                await conn.execute(_MIGRATIONS[number - 1].format(schema=self.schema))
                await conn.execute(
                    f"INSERT INTO {self.schema}.schema_version(version) VALUES ($1)", number
                )
                log.info("PostgreSQL schema %r migrated to version %d", self.schema, number)

    def _terminate_pool(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    @contextlib.asynccontextmanager
    async def _connection(self, failure: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; database errors inside become StoreError("<failure>: ...")."""
        if self._pool is None:
            raise StoreError("store is closed")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _DB_ERRORS as exc:
            raise StoreError(f"{failure}: {_describe(exc)}") from exc

    # -- writes ------------------------------------------------------------------------------

    async def _write_batch(self, batch: list[Append]) -> Written:
        """Commit one batch; returns each update's seq and each document's log size."""
        now = _now_ms()
        counts = Counter(item.doc_id for item in batch)
        sizes: Counter[str] = Counter()
        for item in batch:
            sizes[item.doc_id] += len(item.data)
        doc_ids = sorted(counts)  # every process locks rows in one order: no deadlocks
        async with self._connection("cannot store updates") as conn, conn.transaction():
            reserved = await conn.fetch(
                f"INSERT INTO {self.schema}.documents AS d "
                "(doc_id, created_at, updated_at, last_seq, log_count, log_bytes) "
                "SELECT doc_id, $4::bigint, $4::bigint, n, n, size "
                "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(doc_id, n, size) "
                "ON CONFLICT (doc_id) DO UPDATE SET last_seq = d.last_seq + excluded.last_seq, "
                "log_count = d.log_count + excluded.log_count, "
                "log_bytes = d.log_bytes + excluded.log_bytes, updated_at = excluded.updated_at "
                "RETURNING d.doc_id, d.last_seq, d.log_count, d.log_bytes",
                doc_ids,
                [counts[doc_id] for doc_id in doc_ids],
                [sizes[doc_id] for doc_id in doc_ids],
                now,
            )
            last = {row["doc_id"]: row["last_seq"] - counts[row["doc_id"]] for row in reserved}
            seqs = []
            for item in batch:
                last[item.doc_id] += 1
                seqs.append(last[item.doc_id])
            await conn.execute(
                f"INSERT INTO {self.schema}.updates(doc_id, seq, data, created_at) "
                "SELECT doc_id, seq, data, $4 "
                "FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS t(doc_id, seq, data)",
                [item.doc_id for item in batch],
                seqs,
                [item.data for item in batch],
                now,
            )
        return Written(
            seqs, {row["doc_id"]: (row["log_count"], row["log_bytes"]) for row in reserved}
        )

    async def compact(self, doc_id: str) -> CompactionResult | None:
        failure = f"cannot compact {doc_id!r}"
        async with (
            self._connection(failure) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            head = await conn.fetchrow(
                "SELECT snapshot, snapshot_seq, last_seq, snapshot_bytes, log_bytes, created_at "
                f"FROM {self.schema}.documents WHERE doc_id = $1",
                doc_id,
            )
            if head is None:
                return None
            snapshot, snapshot_seq, last_seq, snapshot_bytes, log_bytes, created_at = head
            rows = [
                row["data"]
                for row in await conn.fetch(
                    f"SELECT data FROM {self.schema}.updates "
                    "WHERE doc_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
                    doc_id,
                    snapshot_seq,
                    last_seq,
                )
            ]
        if not rows:
            return None
        folded = await fold_off_loop(([snapshot] if snapshot else []) + rows)
        folded_bytes = sum(len(row) for row in rows)
        async with self._connection(failure) as conn, conn.transaction():
            status = await conn.execute(
                f"UPDATE {self.schema}.documents SET snapshot = $1, snapshot_seq = $2, "
                "snapshot_bytes = $3, log_count = log_count - $4, log_bytes = log_bytes - $5 "
                "WHERE doc_id = $6 AND snapshot_seq = $7 AND created_at = $8",
                folded,
                last_seq,
                len(folded),
                len(rows),
                folded_bytes,
                doc_id,
                snapshot_seq,
                created_at,
            )
            # Another process compacted it first, or deleted it (perhaps to create it anew).
            if status == "UPDATE 0":
                return None
            await conn.execute(
                f"DELETE FROM {self.schema}.updates WHERE doc_id = $1 AND seq <= $2",
                doc_id,
                last_seq,
            )
        return self._compacted(
            doc_id, len(rows), folded_bytes, len(folded), snapshot_bytes, log_bytes
        )

    # -- reads -------------------------------------------------------------------------------

    async def load(self, doc_id: str) -> StoredDocument:
        async with (
            self._connection(f"cannot load {doc_id!r}") as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            head = await conn.fetchrow(
                "SELECT snapshot, snapshot_seq, last_seq "
                f"FROM {self.schema}.documents WHERE doc_id = $1",
                doc_id,
            )
            if head is None:
                return StoredDocument(None, [], 0)
            rows = await conn.fetch(
                f"SELECT data FROM {self.schema}.updates WHERE doc_id = $1 AND seq > $2 "
                "ORDER BY seq",
                doc_id,
                head["snapshot_seq"],
            )
        return StoredDocument(head["snapshot"], [row["data"] for row in rows], head["last_seq"])

    async def info(self, doc_id: str) -> DocumentInfo | None:
        async with self._connection(f"cannot read {doc_id!r}") as conn:
            row = await conn.fetchrow(
                f"SELECT {_INFO_COLUMNS} FROM {self.schema}.documents WHERE doc_id = $1", doc_id
            )
        return None if row is None else DocumentInfo(*row)

    async def list_documents(
        self, prefix: str = "", after: str = "", limit: int = 100
    ) -> list[DocumentInfo]:
        async with self._connection("cannot list documents") as conn:
            rows = await conn.fetch(
                f"SELECT {_INFO_COLUMNS} FROM {self.schema}.documents "
                "WHERE starts_with(doc_id, $1) AND doc_id > $2 ORDER BY doc_id LIMIT $3",
                prefix,
                after,
                limit,
            )
        return [DocumentInfo(*row) for row in rows]

    async def delete(self, doc_id: str) -> bool:
        async with self._connection(f"cannot delete {doc_id!r}") as conn:
            status = await conn.execute(
                f"DELETE FROM {self.schema}.documents WHERE doc_id = $1", doc_id
            )
        return status != "DELETE 0"

    async def check_writable(self) -> None:
        """Run an UPDATE that matches nothing: it fails unless the server answers and accepts
        writes (not a standby, not read-only), without writing anything."""
        async with self._connection("store not writable") as conn:
            await conn.execute(f"UPDATE {self.schema}.schema_version SET version = 0 WHERE false")


def _describe(exc: BaseException) -> str:
    return "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__


def _redact(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", dsn)
