"""PostgreSQL only: sequences under several writing processes, migrations racing, the disk
footprint after compaction, and how database failures surface. The rest of the contract is in
test_store_contract.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path

import asyncpg
import pytest

from collab.store.base import StoreError
from collab.store.postgres import SCHEMA_VERSION, PostgresStore
from tests.store.helpers import POSTGRES_URL, read_text, text_updates

ROOT = Path(__file__).resolve().parents[2]
PG = tuple[asyncpg.Connection, str]


def url_with(**settings: str) -> str:
    """The test database URL with extra server settings (asyncpg passes them through)."""
    query = "&".join(f"{key}={value}" for key, value in settings.items())
    return f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}{query}"


async def test_three_processes_appending_to_one_document_get_seqs_1_to_n(pg: PG) -> None:
    admin, schema = pg
    count = 300
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.store.append_worker",
            schema,
            "shared",
            str(count),
            str(client_id),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for client_id in (1, 2, 3)
    ]
    for worker in workers:  # all opened (and migrated) before any appends
        assert worker.stdout is not None
        assert await asyncio.wait_for(worker.stdout.readline(), 30) == b"ready\n"
    outputs = await asyncio.wait_for(
        asyncio.gather(*(worker.communicate(b"go\n") for worker in workers)), 60
    )
    assert [worker.returncode for worker in workers] == [0, 0, 0]
    per_process = [json.loads(stdout) for stdout, _ in outputs]
    for seqs in per_process:
        assert seqs == sorted(seqs)  # each process's updates keep their queue order
    assert sorted(s for seqs in per_process for s in seqs) == list(range(1, 3 * count + 1))
    stored = await admin.fetch(
        f"SELECT seq FROM {schema}.updates WHERE doc_id = 'shared' ORDER BY seq"
    )
    assert [row["seq"] for row in stored] == list(range(1, 3 * count + 1))
    store = PostgresStore(POSTGRES_URL, schema=schema)
    await store.open()
    info = await store.info("shared")
    document = await store.load("shared")
    await store.close()
    assert info is not None and info.last_seq == info.log_count == 3 * count
    assert len(read_text(document.parts())) == 3 * count  # nothing pending: all in order
    interleavings = sum(b != a + 1 for seqs in per_process for a, b in itertools.pairwise(seqs))
    assert interleavings > 0, "the processes ran one after another: nothing was concurrent"


async def test_compaction_and_vacuum_shrink_the_tables(pg: PG) -> None:
    """Compaction deletes rows; PostgreSQL reclaims them at VACUUM (autovacuum in production,
    explicit here). Heap and TOAST shrink; index pages become reusable but stay allocated,
    so the total with indexes is checked for staying bounded over repeated cycles."""
    admin, schema = pg

    async def sizes() -> tuple[int, int]:
        tables = f"('{schema}.updates'::regclass), ('{schema}.documents'::regclass)"
        row = await admin.fetchrow(
            "SELECT sum(pg_table_size(t)), sum(pg_total_relation_size(t)) "
            f"FROM (VALUES {tables}) AS r(t)"
        )
        return row[0], row[1]

    store = PostgresStore(
        POSTGRES_URL, schema=schema, compact_after_rows=10**9, compact_after_bytes=10**12
    )
    await store.open()
    updates, expected = text_updates(12_000)
    peaks: list[int] = []
    for cycle in range(4):
        await asyncio.gather(*(store.append("doc", u) for u in updates[cycle * 3000 :][:3000]))
        before, peak = await sizes()
        peaks.append(peak)
        assert await store.compact("doc") is not None
        await admin.execute(f"VACUUM {schema}.updates, {schema}.documents")
        after, _ = await sizes()
        assert after < before / 2, (cycle, before, after)
    stored = await store.load("doc")
    await store.close()
    assert max(peaks) < 2 * peaks[0], peaks  # 4x the updates, not 4x the disk
    assert read_text(stored.parts()) == expected


async def test_processes_starting_at_once_migrate_once(pg: PG) -> None:
    admin, schema = pg
    stores = [PostgresStore(POSTGRES_URL, schema=schema) for _ in range(5)]
    await asyncio.gather(*(store.open() for store in stores))
    for store in stores:
        await store.close()
    versions = await admin.fetch(f"SELECT version FROM {schema}.schema_version")
    assert [row["version"] for row in versions] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused(pg: PG) -> None:
    admin, schema = pg
    store = PostgresStore(POSTGRES_URL, schema=schema)
    await store.open()
    await store.close()
    await admin.execute(
        f"INSERT INTO {schema}.schema_version(version) VALUES ($1)", SCHEMA_VERSION + 1
    )
    with pytest.raises(StoreError, match="schema version"):
        await PostgresStore(POSTGRES_URL, schema=schema).open()


async def test_an_unreachable_server_is_a_clear_store_error() -> None:
    store = PostgresStore("postgresql://collab:secret@127.0.0.1:1/test")
    with pytest.raises(StoreError, match=r"cannot open .* at postgresql://collab:\*\*\*@") as info:
        await store.open()
    assert "secret" not in str(info.value)
    with pytest.raises(StoreError, match="closed"):
        await store.append("doc", b"\x00\x00")


def test_a_schema_name_must_be_a_plain_identifier() -> None:
    with pytest.raises(ValueError, match="schema"):
        PostgresStore(POSTGRES_URL, schema='x"; DROP TABLE y; --')


async def test_appends_survive_killed_connections(pg: PG) -> None:
    admin, schema = pg
    store = PostgresStore(url_with(application_name=schema), schema=schema)
    await store.open()
    updates, expected = text_updates(3)
    assert await store.append("doc", updates[0]) == 1
    killed = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        schema,
    )
    assert killed >= 1
    assert await asyncio.gather(*(store.append("doc", u) for u in updates[1:])) == [2, 3]
    assert read_text((await store.load("doc")).parts()) == expected
    await store.close()


async def test_a_blocked_write_fails_its_futures_and_the_store_recovers(pg: PG) -> None:
    admin, schema = pg
    store = PostgresStore(POSTGRES_URL, schema=schema, command_timeout=0.2)
    await store.open()
    updates, expected = text_updates(3)
    assert await store.append("doc", updates[0]) == 1
    lock = admin.transaction()
    await lock.start()
    await admin.execute(f"LOCK TABLE {schema}.updates IN ACCESS EXCLUSIVE MODE")
    with pytest.raises(StoreError, match="cannot store updates: timed out"):
        await store.append("doc", updates[1])
    await lock.rollback()
    assert await store.append("doc", updates[1]) == 2  # the failed batch left no gap
    assert await store.append("doc", updates[2]) == 3
    assert read_text((await store.load("doc")).parts()) == expected
    await store.close()


async def test_a_read_only_database_is_not_writable(pg: PG) -> None:
    _, schema = pg
    writable = PostgresStore(POSTGRES_URL, schema=schema)
    await writable.open()
    await writable.close()
    store = PostgresStore(url_with(default_transaction_read_only="on"), schema=schema)
    await store.open()
    with pytest.raises(StoreError, match=r"not writable: .*read-only"):
        await store.check_writable()
    await store.close()
