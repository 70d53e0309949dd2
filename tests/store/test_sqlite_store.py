"""SQLite only: the file on disk shrinks, schema versions, a writer locked out by another
process. The rest of the contract is in test_store_contract.py."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from collab.store.base import StoreError
from collab.store.sqlite import SCHEMA_VERSION, SQLiteStore
from tests.store.helpers import read_text, text_updates


def stored_bytes(path: Path) -> int:
    """What the database occupies on disk, main file plus write-ahead log."""
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def test_compaction_shrinks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SQLiteStore(path, compact_after_rows=10**9, compact_after_bytes=10**12)
    await store.open()
    updates, expected = text_updates(3000)
    await asyncio.gather(*(store.append("doc", u) for u in updates))
    await store.checkpoint()
    before = stored_bytes(path)
    assert await store.compact("doc") is not None
    await store.checkpoint()
    after = stored_bytes(path)
    stored = await store.load("doc")
    await store.close()
    assert after < before / 2, (before, after)
    assert read_text(stored.parts()) == expected


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="schema version"):
        await SQLiteStore(path).open()


async def test_write_failures_fail_the_futures_and_leave_the_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SQLiteStore(path, busy_timeout_ms=50)
    await store.open()
    updates, _ = text_updates(3)
    await store.append("doc", updates[0])
    # Another process holds the write lock longer than the busy timeout allows.
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match="cannot store"):
        await store.append("doc", updates[1])
    blocker.rollback()
    blocker.close()
    assert await store.append("doc", updates[2]) == 2  # the store recovers once the lock is gone
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
