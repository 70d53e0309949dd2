"""Store fixtures: every contract test runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from collab.store.postgres import PostgresStore
from collab.store.sqlite import SQLiteStore
from tests.store.helpers import POSTGRES_URL, fresh_schema

AnyStore = SQLiteStore | PostgresStore
StoreFactory = Callable[..., AnyStore]


@pytest.fixture(params=["sqlite", "postgres"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Makes unopened stores sharing one database (a file, or a fresh PostgreSQL schema), as
    several processes would; all of them are closed after the test."""
    created: list[AnyStore] = []
    async with _database(request.param, tmp_path) as make:

        def tracked(**options: Any) -> AnyStore:
            created.append(make(**options))
            return created[-1]

        try:
            yield tracked
        finally:
            for store in created:
                await store.close()


@contextlib.asynccontextmanager
async def _database(backend: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    if backend == "sqlite":
        yield lambda **options: SQLiteStore(tmp_path / "db.sqlite3", **options)
    else:
        async with fresh_schema() as (_, schema):
            yield lambda **options: PostgresStore(POSTGRES_URL, schema=schema, **options)


@pytest.fixture
async def store(store_factory: StoreFactory) -> AnyStore:
    """An open store that compacts only when asked."""
    store = store_factory(compact_after_rows=10**9)
    await store.open()
    return store


@pytest.fixture
async def pg() -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    """An admin connection and a fresh schema name, for PostgreSQL-only tests."""
    async with fresh_schema() as admin_and_schema:
        yield admin_and_schema
