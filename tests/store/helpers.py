"""Shared by the store tests: Yjs updates to append, reading them back, and a scratch
PostgreSQL schema (at COLLAB_TEST_POSTGRES_URL) per test."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pycrdt import Doc, Text

POSTGRES_URL = os.environ.get(
    "COLLAB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


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


@contextlib.asynccontextmanager
async def fresh_schema() -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    """An admin connection and the name of a schema no one uses; the schema (and whatever a
    store created in it) is dropped afterwards. An unreachable server fails the test."""
    reason = ""
    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = (
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({str(exc) or type(exc).__name__})."
            " Start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)"
            " or point COLLAB_TEST_POSTGRES_URL at one."
        )
    if reason:  # failed outside the except block: the message alone, without a traceback
        pytest.fail(reason, pytrace=False)
    schema = f"collab_test_{secrets.token_hex(6)}"
    try:
        yield admin, schema
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
