"""Hostile input against a live server: malformed frames and mutated Yjs updates.

The server must close only the offending connection, never crash, and leave other documents
(and what is stored of the fuzzed one) intact. Seeded, so a failure replays exactly.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from dataclasses import replace
from urllib.parse import quote

import aiohttp
import pytest
from pycrdt import Doc, Text

from collab.protocol.wire import encode_sync, encode_update, encode_var_bytes
from collab.server.keys import ROOMS
from tests.support import RawClient, running_server

INPUTS = int(os.environ.get("COLLAB_FUZZ_INPUTS", "3000"))
CONCURRENCY = 16


def real_updates(count: int, seed: int) -> list[bytes]:
    doc = Doc(client_id=seed)
    text = doc.get("content", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    rng = random.Random(seed)
    for _ in range(count):
        if len(text) and rng.random() < 0.3:
            start = rng.randrange(len(text))
            del text[start : start + 1]
        else:
            text.insert(rng.randint(0, len(text)), rng.choice(["a", "bc", "Zoë", "\n"]))
    return updates


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.4 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif choice < 0.6 and buf:
            del buf[rng.randrange(len(buf))]
        elif choice < 0.8:
            buf.insert(rng.randint(0, len(buf)), rng.randrange(256))
        else:
            buf += rng.randbytes(rng.randint(1, 8))
    return bytes(buf)


def hostile_frames(rng: random.Random, seeds: list[bytes]) -> list[tuple[str, bytes]]:
    """(target, frame): 'fuzz' gets mutated updates (some are valid CRDT updates); 'safe' only
    gets frames that are invalid at the protocol level and must not change it."""
    frames = []
    for _ in range(INPUTS):
        kind = rng.random()
        if kind < 0.5:
            frames.append(("fuzz", encode_update(mutate(rng.choice(seeds), rng))))
        elif kind < 0.6:
            frames.append(("fuzz", encode_sync(2, rng.randbytes(rng.randint(0, 64)))))
        elif kind < 0.8:
            frames.append(("safe", mutate(encode_update(rng.choice(seeds)), rng)[:-1] + b"\xff"))
        elif kind < 0.9:
            frames.append(("safe", rng.randbytes(rng.randint(0, 40))))
        elif kind < 0.95:
            length = rng.randint(0, 300)
            doc_id = "".join(rng.choice("ab/.~_-%?#é\x00 ") for _ in range(length))
            frames.append((f"id:{doc_id}", encode_sync(0, b"\x00")))
        else:
            depth = rng.randint(1, 5000)
            state = ("[" * depth + "]" * (depth - 1)).encode()  # deep and unbalanced JSON
            frames.append(
                ("safe", b"\x01" + encode_var_bytes(b"\x01\x01\x01" + encode_var_bytes(state)))
            )
    return frames


@pytest.mark.slow
async def test_hostile_frames_never_hurt_the_server_or_other_documents(http, settings) -> None:
    rng = random.Random(20261125)
    seeds = real_updates(200, seed=7)
    settings = replace(settings, connect_attempts_per_minute=100_000)
    async with running_server(settings) as server:
        safe = await RawClient(http, server.ws_url("safe")).connect()
        await asyncio.wait_for(safe.synced.wait(), 10)
        safe.text().insert(0, "precious")
        await safe.flush()

        frames = hostile_frames(rng, seeds)
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        for item in frames:
            queue.put_nowait(item)
        codes: dict[int | None, int] = {}

        async def attack() -> None:
            while not queue.empty():
                target, frame = queue.get_nowait()
                if target.startswith("id:"):  # a hostile document id, percent-encoded
                    url = server.ws_url(quote(target[3:], safe="/"))
                else:
                    url = server.ws_url(target)
                try:
                    ws = await http.ws_connect(url)
                except aiohttp.WSServerHandshakeError as exc:
                    codes[exc.status] = codes.get(exc.status, 0) + 1  # e.g. 404: no route
                    continue
                await ws.send_bytes(frame)
                await ws.send_bytes(encode_sync(0, b"\x00"))  # step1: a reply proves it lived
                code = None
                while True:
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    if msg.type is aiohttp.WSMsgType.CLOSE:
                        code = msg.data
                        break
                    if msg.type is not aiohttp.WSMsgType.BINARY:
                        break
                    if msg.data[:2] == b"\x00\x01":
                        break
                codes[code] = codes.get(code, 0) + 1
                await ws.close()

        await asyncio.gather(*(attack() for _ in range(CONCURRENCY)))
        assert set(codes) <= {None, 4400, 404}, codes
        assert codes.get(4400, 0) > INPUTS // 3

        # The bystander never noticed; the safe document is exactly what it wrote.
        safe.text().insert(8, "!")
        await safe.flush()
        assert str(safe.text()) == "precious!"
        fresh = await RawClient(http, server.ws_url("safe")).connect()
        await asyncio.wait_for(fresh.synced.wait(), 10)
        assert str(fresh.text()) == "precious!"
        assert fresh.doc.get_state() == safe.doc.get_state()
        live_fuzz_state = server.app[ROOMS].get("fuzz").encode_state()
        await fresh.close()
        await safe.close()

    async with running_server(settings) as server:  # what was stored of 'fuzz' reloads
        reloaded = await RawClient(http, server.ws_url("fuzz")).connect()
        await asyncio.wait_for(reloaded.synced.wait(), 10)
        reference = Doc()
        reference.apply_update(live_fuzz_state)
        assert reloaded.doc.get_state() == reference.get_state()
        await reloaded.close()
    with sqlite3.connect(settings.database_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
