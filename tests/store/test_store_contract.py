"""The Store contract, run against every backend (SQLite and PostgreSQL) so they cannot drift:
gap-free sequences, group commit, restart, pending-safe compaction that shrinks the stored
bytes, listing, deletion, readiness."""

from __future__ import annotations

import asyncio

import pytest

from collab.store.base import StoreError
from tests.store.conftest import AnyStore, StoreFactory
from tests.store.helpers import read_text, text_updates


async def test_appends_get_gap_free_sequences_per_document(store: AnyStore) -> None:
    updates, _ = text_updates(30)
    futures = [store.append("a" if i % 3 else "b", u) for i, u in enumerate(updates)]
    seqs = await asyncio.gather(*futures)
    assert [s for i, s in enumerate(seqs) if i % 3] == list(range(1, 21))
    assert [s for i, s in enumerate(seqs) if not i % 3] == list(range(1, 11))
    assert store.commits < len(updates)  # appends queued together share one commit
    assert store.committed_rows == len(updates)


async def test_on_commit_reports_each_commit(store: AnyStore) -> None:
    commits: list[tuple[float, int]] = []
    store.on_commit = lambda seconds, rows: commits.append((seconds, rows))
    updates, _ = text_updates(20)
    await asyncio.gather(*(store.append("doc", u) for u in updates))
    assert sum(rows for _, rows in commits) == 20
    assert len(commits) == store.commits and all(seconds > 0 for seconds, _ in commits)


async def test_load_returns_every_update_in_order_across_a_restart(
    store_factory: StoreFactory,
) -> None:
    updates, expected = text_updates(50)
    store = store_factory()
    await store.open()
    await asyncio.gather(*(store.append("doc", u) for u in updates))
    await store.close()
    reopened = store_factory()
    await reopened.open()
    stored = await reopened.load("doc")
    assert stored.last_seq == 50
    assert stored.updates == updates
    assert read_text(stored.parts()) == expected


async def test_unknown_document_loads_empty(store: AnyStore) -> None:
    stored = await store.load("nothing/here")
    assert stored.parts() == [] and stored.last_seq == 0


async def test_close_commits_everything_already_appended(store_factory: StoreFactory) -> None:
    updates, expected = text_updates(200)
    store = store_factory()
    await store.open()
    futures = [store.append("doc", u) for u in updates]
    await store.close()
    assert all(f.done() and not f.exception() for f in futures)
    reopened = store_factory()
    await reopened.open()
    assert read_text((await reopened.load("doc")).parts()) == expected


async def test_a_closed_store_refuses_work_cleanly(store_factory: StoreFactory) -> None:
    store = store_factory()
    await store.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.append("doc", b"\x00\x00")
    with pytest.raises(StoreError):
        await store.load("doc")
    with pytest.raises(StoreError):
        await store.check_writable()


async def test_an_open_store_is_writable(store: AnyStore) -> None:
    await store.check_writable()


async def test_compaction_folds_the_log_into_a_smaller_snapshot(store: AnyStore) -> None:
    """Logical bytes (snapshot + log) shrink; each backend's own file shows the disk shrink."""
    updates, expected = text_updates(3000)
    await asyncio.gather(*(store.append("doc", u) for u in updates))
    before = await store.info("doc")
    result = await store.compact("doc")
    after = await store.info("doc")
    stored = await store.load("doc")
    assert before is not None and after is not None and result is not None
    assert before.log_count == 3000 and before.log_bytes == sum(map(len, updates))
    assert result.folded_rows == 3000 and result.bytes_before == before.stored_bytes
    assert result.bytes_after == after.stored_bytes < before.stored_bytes / 5
    assert after.log_count == 0 and after.log_bytes == 0
    assert after.snapshot_seq == after.last_seq == 3000
    assert store.compactions == 1
    assert stored.updates == [] and stored.last_seq == 3000
    assert read_text(stored.parts()) == expected
    assert await store.compact("doc") is None  # nothing new to fold


async def test_compaction_of_an_unknown_document_does_nothing(store: AnyStore) -> None:
    assert await store.compact("nothing/here") is None
    assert await store.info("nothing/here") is None


async def test_compaction_keeps_pending_structs(store: AnyStore) -> None:
    updates, expected = text_updates(3)
    u1, u2, u3 = updates
    await store.append("doc", u1)
    await store.append("doc", u3)  # depends on u2, which has not arrived yet
    assert await store.compact("doc") is not None
    assert await store.append("doc", u2) == 3
    assert read_text((await store.load("doc")).parts()) == expected


async def test_compaction_keeps_rows_appended_while_it_runs(store: AnyStore) -> None:
    updates, expected = text_updates(400)
    await asyncio.gather(*(store.append("doc", u) for u in updates[:300]))
    compaction = asyncio.create_task(store.compact("doc"))
    late = [store.append("doc", u) for u in updates[300:]]
    await compaction
    assert await asyncio.gather(*late) == list(range(301, 401))
    stored = await store.load("doc")
    assert stored.last_seq == 400
    assert read_text(stored.parts()) == expected


async def test_appends_continue_the_sequence_after_compaction(store: AnyStore) -> None:
    updates, expected = text_updates(20)
    await asyncio.gather(*(store.append("doc", u) for u in updates[:10]))
    await store.compact("doc")
    assert await asyncio.gather(*(store.append("doc", u) for u in updates[10:])) == list(
        range(11, 21)
    )
    stored = await store.load("doc")
    assert len(stored.updates) == 10 and stored.snapshot is not None
    assert read_text(stored.parts()) == expected


async def test_concurrent_compactions_of_one_document_are_safe(
    store_factory: StoreFactory,
) -> None:
    first = store_factory(compact_after_rows=10**9)
    second = store_factory(compact_after_rows=10**9)
    await first.open()
    await second.open()
    updates, expected = text_updates(500)
    await asyncio.gather(*(first.append("doc", u) for u in updates))
    results = await asyncio.gather(first.compact("doc"), second.compact("doc"))
    assert sum(r is not None for r in results) >= 1
    info = await first.info("doc")
    assert info is not None and info.log_count == 0 and info.snapshot_seq == 500
    for store in (first, second):
        assert read_text((await store.load("doc")).parts()) == expected


async def test_two_stores_on_one_database_share_the_sequence(store_factory: StoreFactory) -> None:
    first, second = store_factory(), store_factory()
    await first.open()
    await second.open()
    updates, expected = text_updates(100)
    seqs = await asyncio.gather(
        *((first if i % 2 else second).append("doc", u) for i, u in enumerate(updates))
    )
    assert sorted(seqs) == list(range(1, 101))
    stored = await first.load("doc")
    assert stored.last_seq == 100
    assert read_text(stored.parts()) == expected


async def test_size_triggered_compaction_runs_by_itself(store_factory: StoreFactory) -> None:
    store = store_factory(compact_after_rows=100)
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
    assert store.compactions >= 1
    assert read_text((await store.load("doc")).parts()) == expected


async def test_list_info_and_delete(store: AnyStore) -> None:
    updates, _ = text_updates(2)
    for doc_id in ("notes/a", "notes/b", "notes_x", "notes%y", "other"):
        await store.append(doc_id, updates[0])
    listed = [d.doc_id for d in await store.list_documents(prefix="notes/")]
    assert listed == ["notes/a", "notes/b"]  # '_' and '%' in a prefix are literal
    assert [d.doc_id for d in await store.list_documents(prefix="notes_")] == ["notes_x"]
    assert [d.doc_id for d in await store.list_documents(prefix="notes%")] == ["notes%y"]
    page = await store.list_documents(after="notes/b", limit=1)
    assert [d.doc_id for d in page] == ["notes_x"]
    info = await store.info("notes/a")
    assert info is not None and info.last_seq == info.log_count == 1
    assert info.log_bytes == len(updates[0]) and info.created_at <= info.updated_at
    assert await store.delete("notes/a") is True
    assert await store.info("notes/a") is None
    assert (await store.load("notes/a")).parts() == []
    assert await store.delete("notes/a") is False


async def test_documents_are_listed_in_code_point_order(store: AnyStore) -> None:
    updates, _ = text_updates(1)
    for doc_id in ("z", "é", "B", "a", "日本"):
        await store.append(doc_id, updates[0])
    assert [d.doc_id for d in await store.list_documents()] == ["B", "a", "z", "é", "日本"]
    assert [d.doc_id for d in await store.list_documents(after="z")] == ["é", "日本"]
