"""What arrives in one event-loop turn is handled together: document updates are applied in
one transaction (pycrdt's cost is per transaction and grows with a long text), yet each keeps
its own fate: stored, refused or recognized as a duplicate; presence changes go out as one
message."""

from __future__ import annotations

import asyncio
import struct

import pytest
from pycrdt import Doc, Text

from collab.protocol.awareness import AwarenessEntry, encode_awareness_update
from collab.protocol.frames import BINARY, CLOSE
from collab.protocol.wire import AwarenessMessage, decode_message, encode_message, encode_update
from collab.server.keys import ROOMS, STORE
from collab.server.settings import Settings
from tests.integration.test_websocket_transport import EMPTY_STEP1, RawSocket
from tests.support import RawClient, RunningServer, running_server
from tests.unit.test_frames import client_frame


def appends(count: int, client_id: int = 42) -> list[bytes]:
    """``count`` updates, each appending to the text the previous ones wrote."""
    doc = Doc(client_id=client_id)
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    text = doc.get("content", type=Text)
    for index in range(count):
        text.insert(len(text), f"<{index}>")
    doc.unobserve(subscription)
    return updates


@pytest.fixture
async def server(settings: Settings):
    async with running_server(settings) as running:
        yield running


async def joined(server: RunningServer, doc_id: str) -> RawSocket:
    sock = await RawSocket.open(server)
    await sock.upgrade(doc_id)
    sock.send(BINARY, EMPTY_STEP1)
    await sock.receive_step2()
    return sock


async def test_updates_sent_together_are_applied_together_and_each_stored(
    http, server: RunningServer
) -> None:
    reader = await RawClient(http, server.ws_url("batch")).connect()
    await asyncio.wait_for(reader.synced.wait(), 5)
    writer = await joined(server, "batch")
    stats = server.app[ROOMS].stats
    batches_before = stats.update_batches
    updates = appends(50)
    writer.writer.write(b"".join(client_frame(BINARY, encode_update(u)) for u in updates))
    expected = "".join(f"<{index}>" for index in range(50))
    await reader.wait_for(lambda: str(reader.text()) == expected)
    assert stats.update_batches - batches_before < 5  # one per read, not one per update
    writer.send(BINARY, EMPTY_STEP1)  # the durability barrier: all 50 are committed now
    await writer.receive_step2()
    stored = await server.app[STORE].load("batch")
    assert stored.last_seq == 50
    writer.close()
    await reader.close()


async def test_a_bad_update_closes_only_its_sender_and_spares_the_batch(
    http, server: RunningServer
) -> None:
    reader = await RawClient(http, server.ws_url("mixed")).connect()
    await asyncio.wait_for(reader.synced.wait(), 5)
    good = await joined(server, "mixed")
    bad = await joined(server, "mixed")
    first, second = appends(2, client_id=1)
    other = appends(1, client_id=2)[0]
    bad.writer.write(
        client_frame(BINARY, encode_update(first))
        + client_frame(BINARY, encode_update(b"\x01\xff\xff"))  # not a Yjs update
        + client_frame(BINARY, encode_update(second))  # never read: its sender is closed
    )
    good.send(BINARY, encode_update(other))
    code = struct.unpack("!H", (await bad.receive_until(CLOSE))[:2])[0]
    assert code == 4400
    await reader.wait_for(lambda: str(reader.text()) in ("<0><0>",))
    good.send(BINARY, EMPTY_STEP1)
    await good.receive_step2()
    assert (await server.app[STORE].load("mixed")).last_seq == 2
    good.close()
    bad.close()
    await reader.close()


async def test_a_repeated_update_in_the_same_batch_is_stored_once(
    http, server: RunningServer
) -> None:
    writer = await joined(server, "twice")
    (update,) = appends(1)
    writer.writer.write(client_frame(BINARY, encode_update(update)) * 3)
    writer.send(BINARY, EMPTY_STEP1)
    await writer.receive_step2()
    assert (await server.app[STORE].load("twice")).last_seq == 1
    assert server.app[ROOMS].stats.duplicate_updates == 2
    writer.close()


async def test_presence_changes_of_one_turn_reach_peers_as_one_message(
    http, server: RunningServer
) -> None:
    reader = await RawClient(http, server.ws_url("cursors")).connect()
    await asyncio.wait_for(reader.synced.wait(), 5)
    mover = await joined(server, "cursors")
    moves = [
        encode_message(AwarenessMessage(encode_awareness_update(
            [AwarenessEntry(77, clock, f'{{"cursor":{clock}}}')]
        )))
        for clock in range(1, 21)
    ]  # fmt: skip
    mover.writer.write(b"".join(client_frame(BINARY, move) for move in moves))
    await reader.wait_for(lambda: 77 in reader.awareness and reader.awareness[77].clock == 20)
    presence = [m for m in map(decode_message, reader.received) if isinstance(m, AwarenessMessage)]
    assert len(presence) < 5  # one per read, not one per move
    mover.close()
    await reader.close()
