"""Restarts: `collab serve` as a real process, stopped with SIGTERM or killed with SIGKILL."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.support import RawClient, ServerProcess


async def synced_client(http, server: ServerProcess, doc_id: str) -> RawClient:
    client = await RawClient(http, server.ws_url(doc_id)).connect()
    await asyncio.wait_for(client.synced.wait(), 10)
    return client


async def read_doc(http, server: ServerProcess, doc_id: str) -> tuple[str, dict]:
    client = await synced_client(http, server, doc_id)
    text, meta = str(client.text()), client.map("meta").to_py()
    await client.close()
    return text, meta


async def test_a_restarted_server_serves_identical_documents(http, tmp_path: Path) -> None:
    server = await asyncio.to_thread(ServerProcess(tmp_path).start)
    try:
        for doc_id in ("notes/a", "notes/b", "x"):
            client = await synced_client(http, server, doc_id)
            client.text().insert(0, f"text of {doc_id} ")
            client.map("meta")["title"] = doc_id
            await client.flush()
            await client.close()
        before = {d: await read_doc(http, server, d) for d in ("notes/a", "notes/b", "x")}
    finally:
        assert await asyncio.to_thread(server.stop) == 0
    server = await asyncio.to_thread(ServerProcess(tmp_path).start)
    try:
        after = {d: await read_doc(http, server, d) for d in ("notes/a", "notes/b", "x")}
    finally:
        await asyncio.to_thread(server.stop)
    assert after == before


@pytest.mark.slow
async def test_kill_9_loses_nothing_acknowledged_by_the_barrier(http, tmp_path: Path) -> None:
    """Writers type continuously; every flush() that returned marks a durable prefix.
    After each SIGKILL the restarted server must hold at least every acknowledged edit."""
    acknowledged: list[str] = []
    for round_ in range(5):
        server = await asyncio.to_thread(ServerProcess(tmp_path).start)
        client = await synced_client(http, server, "crash")
        text = client.text()
        assert all(marker in str(text) for marker in acknowledged), "an acknowledged edit was lost"
        typed = []
        for index in range(40):
            marker = f"[{round_}.{index}]"
            text.insert(len(text), marker)
            typed.append(marker)
            if index % 10 == 9:
                await client.flush()
                acknowledged.extend(typed)
                typed = []
        # Unacknowledged edits in flight while the process dies.
        text.insert(len(text), f"[{round_}.unacked]")
        await asyncio.to_thread(server.kill)
        await client.close()
    server = await asyncio.to_thread(ServerProcess(tmp_path).start)
    try:
        final, _ = await read_doc(http, server, "crash")
    finally:
        await asyncio.to_thread(server.stop)
    missing = [marker for marker in acknowledged if marker not in final]
    assert missing == []
    assert all(final.count(marker) == 1 for marker in acknowledged)
    with sqlite3.connect(tmp_path / "collab.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_a_served_process_compacts_large_logs_in_its_worker(http, tmp_path: Path) -> None:
    server = await asyncio.to_thread(
        ServerProcess(
            tmp_path, "--compact-after-rows", "50", env={"COLLAB_LOG_LEVEL": "INFO"}
        ).start
    )
    try:
        client = await synced_client(http, server, "big")
        for index in range(300):  # 300 KB of log: folded in the compaction worker process
            client.text().insert(len(client.text()), f"{index:04d}" * 250)
        await client.flush()
        await client.close()
        for _ in range(100):
            async with http.get(f"{server.url}/metrics") as resp:
                if "collab_store_compactions_total 0.0" not in await resp.text():
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no compaction happened")
        text, _ = await read_doc(http, server, "big")
        assert text == "".join(f"{index:04d}" * 250 for index in range(300))
    finally:
        assert await asyncio.to_thread(server.stop) == 0
