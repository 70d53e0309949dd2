"""Appends per second through group commit, SQLite vs PostgreSQL (not a test; prints a table).

Each of C writers appends one small Yjs update at a time and awaits its commit before the
next, like C busy documents. With C = 1 every commit holds one row; with more writers the
updates that queue during a commit share the next one.

Usage: .venv/bin/python -m tests.store.measure_appends [--appends N]
(PostgreSQL at COLLAB_TEST_POSTGRES_URL, in a scratch schema dropped afterwards.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from collab.store.postgres import PostgresStore
from collab.store.sqlite import SQLiteStore
from tests.store.helpers import POSTGRES_URL, fresh_schema, text_updates

CONCURRENCY = (1, 10, 100)


async def measure(store: SQLiteStore | PostgresStore, writers: int, appends: int) -> str:
    updates, _ = text_updates(appends // writers)
    latencies: list[float] = []

    async def writer(index: int) -> None:
        for update in updates:
            started = time.perf_counter()
            await store.append(f"doc-{writers}-{index}", update)
            latencies.append(time.perf_counter() - started)

    await store.open()
    commits = store.commits
    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    elapsed = time.perf_counter() - started
    commits = store.commits - commits
    await store.close()
    quantiles = statistics.quantiles(latencies, n=100)
    return (
        f"| {writers:>3} | {len(latencies) / elapsed:>9,.0f} | {len(latencies) / commits:>6.1f} "
        f"| {quantiles[49] * 1000:>6.2f} | {quantiles[98] * 1000:>6.2f} |"
    )


async def main(appends: int) -> None:
    print("| backend | writers | appends/s | rows/commit | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for writers in CONCURRENCY:
            store = SQLiteStore(Path(tmp) / "db.sqlite3", compact_after_rows=10**9)
            print("| SQLite (WAL, NORMAL) " + await measure(store, writers, appends))
    separator = "&" if "?" in POSTGRES_URL else "?"
    async with fresh_schema() as (_, schema):
        for commit in ("on", "off"):  # "off" is like SQLite's NORMAL: no fsync wait at commit
            dsn = f"{POSTGRES_URL}{separator}synchronous_commit={commit}"
            for writers in CONCURRENCY:
                store = PostgresStore(dsn, schema=schema, compact_after_rows=10**9)
                print(
                    f"| PostgreSQL (synchronous_commit={commit}) "
                    + await measure(store, writers, appends)
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=3000, help="appends per row of the table")
    asyncio.run(main(parser.parse_args().appends))
