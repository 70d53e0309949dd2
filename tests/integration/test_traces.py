"""Replay a real editing trace (tests/data/automerge-paper.json.gz) through the server."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from collab.server.settings import Settings
from tests.support import RawClient, running_server

TRACE = Path(__file__).resolve().parent.parent / "data" / "automerge-paper.json.gz"
FINAL_SHA256 = "a489e9022976c14e46627aea174d07797edcb3fd17df42605956d4cf01bf9039"


@pytest.mark.slow
async def test_a_fresh_client_reads_exactly_the_traced_text(http, settings: Settings) -> None:
    trace = json.loads(gzip.decompress(TRACE.read_bytes()))
    # The replay sends as fast as the server takes it, above the default per-connection limit.
    settings = replace(settings, messages_per_second=1_000_000.0)
    async with running_server(settings) as server:
        writer = await RawClient(http, server.ws_url("paper")).connect()
        await asyncio.wait_for(writer.synced.wait(), 10)
        text = writer.text()
        for index, txn in enumerate(trace["txns"]):
            with writer.doc.transaction():
                for position, deleted, inserted in txn["patches"]:
                    if deleted:
                        del text[position : position + deleted]
                    if inserted:
                        text.insert(position, inserted)
            if index % 5000 == 4999:
                await writer.flush(timeout=60)  # bounded in-flight: the server keeps pace
        await writer.flush(timeout=60)
        assert str(text) == trace["endContent"]
        reader = await RawClient(http, server.ws_url("paper")).connect()
        await asyncio.wait_for(reader.synced.wait(), 30)
        assert str(reader.text()) == trace["endContent"]
        await writer.close()
        await reader.close()
    async with running_server(settings) as server:  # and from disk, after compactions
        reader = await RawClient(http, server.ws_url("paper")).connect()
        await asyncio.wait_for(reader.synced.wait(), 30)
        content = str(reader.text())
        await reader.close()
    assert hashlib.sha256(content.encode()).hexdigest() == FINAL_SHA256
