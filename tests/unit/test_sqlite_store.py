"""SQLite store: gap-free sequences, group commit, restart, pending-safe shrinking compaction."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from pycrdt import Doc, Text

from collab.store.base import StoreError
from collab.store.sqlite import SCHEMA_VERSION, SQLiteStore


def text_updates(count: int, client_id: int = 1) -> tuple[list[bytes], str]:
    """``count`` one-character Yjs updates typed by one author, and the resulting text."""
    doc = Doc(client_id=client_id)
    text = doc.get("content", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for index in range(count):
        text.insert(len(text), chr(ord("a") + index % 26))
    return updates, str(text)


def read_text(parts: list[bytes]) -> str:
    doc = Doc()
    for part in parts:
        doc.apply_update(part)
    return str(doc.get("content", type=Text))


def stored_bytes(path: Path) -> int:
    """What the database occupies on disk, main file plus write-ahead log."""
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


@pytest.fixture
async def store(tmp_path: Path):
    store = SQLiteStore(tmp_path / "db.sqlite3", compact_after_rows=10**9)
    await store.open()
    yield store
    await store.close()


async def test_appends_get_gap_free_sequences_per_document(store: SQLiteStore) -> None:
    updates, _ = text_updates(30)
    futures = [store.append("a" if i % 3 else "b", u) for i, u in enumerate(updates)]
    seqs = await asyncio.gather(*futures)
    assert [s for i, s in enumerate(seqs) if i % 3] == list(range(1, 21))
    assert [s for i, s in enumerate(seqs) if not i % 3] == list(range(1, 11))
    assert store.commits < len(updates)  # appends queued together share one commit


async def test_load_returns_every_update_in_order_across_a_restart(tmp_path: Path) -> None:
    updates, expected = text_updates(50)
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.open()
    await asyncio.gather(*(store.append("doc", u) for u in updates))
    await store.close()
    reopened = SQLiteStore(tmp_path / "db.sqlite3")
    await reopened.open()
    stored = await reopened.load("doc")
    await reopened.close()
    assert stored.last_seq == 50
    assert read_text(stored.parts()) == expected


async def test_unknown_document_loads_empty(store: SQLiteStore) -> None:
    stored = await store.load("nothing/here")
    assert stored.parts() == [] and stored.last_seq == 0


async def test_close_commits_everything_already_appended(tmp_path: Path) -> None:
    updates, expected = text_updates(200)
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.open()
    futures = [store.append("doc", u) for u in updates]
    await store.close()
    assert all(f.done() and not f.exception() for f in futures)
    reopened = SQLiteStore(tmp_path / "db.sqlite3")
    await reopened.open()
    assert read_text((await reopened.load("doc")).parts()) == expected
    await reopened.close()


async def test_append_after_close_fails_cleanly(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.append("doc", b"\x00\x00")


async def test_compaction_shrinks_storage_and_keeps_the_document(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SQLiteStore(path, compact_after_rows=10**9, compact_after_bytes=10**12)
    await store.open()
    updates, expected = text_updates(3000)
    await asyncio.gather(*(store.append("doc", u) for u in updates))
    await store.checkpoint()
    before = stored_bytes(path)
    info_before = await store.info("doc")
    result = await store.compact("doc")
    await store.checkpoint()
    after = stored_bytes(path)
    info = await store.info("doc")
    stored = await store.load("doc")
    await store.close()
    assert result is not None and result.folded_rows == 3000
    assert info is not None and info_before is not None
    assert info.log_count == 0 and info.snapshot_seq == 3000
    assert info.stored_bytes < info_before.stored_bytes / 5
    assert after < before / 2, (before, after)
    assert stored.updates == [] and read_text(stored.parts()) == expected


async def test_compaction_keeps_pending_structs(store: SQLiteStore) -> None:
    updates, expected = text_updates(3)
    u1, u2, u3 = updates
    await store.append("doc", u1)
    await store.append("doc", u3)  # depends on u2, which has not arrived yet
    assert await store.compact("doc") is not None
    await store.append("doc", u2)
    assert read_text((await store.load("doc")).parts()) == expected


async def test_compaction_keeps_rows_appended_while_it_runs(store: SQLiteStore) -> None:
    updates, expected = text_updates(400)
    await asyncio.gather(*(store.append("doc", u) for u in updates[:300]))
    compaction = asyncio.create_task(store.compact("doc"))
    late = [store.append("doc", u) for u in updates[300:]]
    await compaction
    await asyncio.gather(*late)
    stored = await store.load("doc")
    assert stored.last_seq == 400
    assert read_text(stored.parts()) == expected


async def test_concurrent_compactions_of_one_document_are_safe(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    first = SQLiteStore(path, compact_after_rows=10**9)
    second = SQLiteStore(path, compact_after_rows=10**9)
    await first.open()
    await second.open()
    updates, expected = text_updates(500)
    await asyncio.gather(*(first.append("doc", u) for u in updates))
    results = await asyncio.gather(first.compact("doc"), second.compact("doc"))
    assert sum(r is not None for r in results) >= 1
    for store in (first, second):
        assert read_text((await store.load("doc")).parts()) == expected
    await first.close()
    await second.close()


async def test_size_triggered_compaction_runs_by_itself(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite3", compact_after_rows=100)
    await store.open()
    updates, expected = text_updates(250)
    for update in updates:
        await store.append("doc", update)
    for _ in range(100):
        info = await store.info("doc")
        if info and info.log_count < 100:
            break
        await asyncio.sleep(0.02)
    assert info is not None and info.log_count < 100 and info.snapshot_seq >= 100
    assert read_text((await store.load("doc")).parts()) == expected
    await store.close()


async def test_list_info_and_delete(store: SQLiteStore) -> None:
    updates, _ = text_updates(2)
    for doc_id in ("notes/a", "notes/b", "notes_x", "other"):
        await store.append(doc_id, updates[0])
    listed = [d.doc_id for d in await store.list_documents(prefix="notes/")]
    assert listed == ["notes/a", "notes/b"]  # '_' in a prefix is literal, not a wildcard
    page = await store.list_documents(after="notes/b", limit=1)
    assert [d.doc_id for d in page] == ["notes_x"]
    assert await store.delete("notes/a") is True
    assert await store.info("notes/a") is None
    assert (await store.load("notes/a")).parts() == []
    assert await store.delete("notes/a") is False


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
