"""YLP/1 long-polling: the same collaboration over plain HTTP, with no loss and no duplication."""

from __future__ import annotations

import asyncio
import gc
import os
import weakref
from dataclasses import replace

import msgpack
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab.protocol.wire import (
    CloseCode,
    SyncStep1,
    SyncType,
    decode_message,
    encode_sync,
    encode_update,
)
from collab.server.keys import LONGPOLL, ROOMS
from tests.support import LongPollClient, LongPollPeer, RawClient, running_server


async def ws_peer(http, server, doc_id: str = "doc", **kw) -> RawClient:
    client = await RawClient(http, server.ws_url(doc_id), **kw).connect()
    await asyncio.wait_for(client.synced.wait(), 10)
    return client


def update_frame(text: str, client_id: int = 99) -> bytes:
    doc = Doc(client_id=client_id)
    doc.get("content", type=Text).insert(0, text)
    return encode_update(doc.get_update())


async def test_open_describes_the_session(http, server) -> None:
    lp = await LongPollClient(http, server.url).open("doc")
    node, _, token = lp.sid.partition(".")
    assert node == server.app[LONGPOLL].node_id and len(token) >= 20
    assert lp.info["poll_timeout_ms"] == 25_000 and lp.info["session_ttl_ms"] == 45_000
    assert lp.info["max_post_bytes"] > 0 and lp.info["ws"] is True
    status, (first, frames) = await lp.poll(0)
    assert status == 200 and first == 1
    assert decode_message(frames[0]) == SyncStep1(b"\x00")
    assert await lp.close() == 204


async def test_long_poll_and_websocket_peers_share_text_and_presence(http, server) -> None:
    ws = await ws_peer(http, server, client_id=1)
    lp = await LongPollPeer(http, server.url, client_id=2).open("doc")
    ws.text().insert(0, "from ws ")
    await lp.wait_for(lambda: str(lp.text()) == "from ws ")
    lp.text().insert(len(lp.text()), "from lp")
    await ws.wait_for(lambda: str(ws.text()) == "from ws from lp")
    await lp.set_awareness(1, '{"user":"lp"}')
    await ws.set_awareness(1, '{"user":"ws"}')
    await ws.wait_for(lambda: 2 in ws.awareness)
    await lp.wait_for(lambda: 1 in lp.awareness)
    await lp.close()
    await ws.wait_for(lambda: 2 not in ws.awareness)  # presence removed when the session ends
    await ws.close()


async def test_a_repeated_poll_returns_the_same_frames(http, server) -> None:
    lp = await LongPollClient(http, server.url).open("doc")
    writer = await ws_peer(http, server)
    writer.text().insert(0, "abc")
    await writer.flush()
    first = await lp.poll(0)
    again = await lp.poll(0)  # the first response was "lost"
    assert first == again and first[0] == 200 and len(first[1][1]) >= 2
    first_dseq, frames = first[1]
    writer.text().insert(0, "d")
    status, (next_first, rest) = await asyncio.wait_for(lp.poll(first_dseq + len(frames) - 1), 5)
    assert status == 200 and rest
    assert next_first == first_dseq + len(frames)
    await lp.close()
    await writer.close()


async def test_a_retried_send_is_applied_once(http, server) -> None:
    lp = await LongPollClient(http, server.url).open("doc")
    frame = update_frame("once")
    assert await lp.send(1, [frame]) == (200, [1])
    assert await lp.send(1, [frame]) == (200, [1])  # the same POST again: acknowledged, ignored
    second = update_frame(" more", client_id=100)
    assert await lp.send(1, [frame, second]) == (200, [2])  # overlapping batch
    reader = await ws_peer(http, server)
    assert str(reader.text()).count("once") == 1 and "more" in str(reader.text())
    await reader.close()
    await lp.close()


async def test_a_gap_gets_409_with_the_last_seen_sequence(http, server) -> None:
    lp = await LongPollClient(http, server.url).open("doc")
    assert await lp.send(1, [update_frame("a")]) == (200, [1])
    assert await lp.send(5, [update_frame("b", 5)]) == (409, [1])
    assert await lp.send(2, [update_frame("b", 5)]) == (200, [2])
    await lp.close()


async def test_a_newer_poll_supersedes_a_held_one(http, server) -> None:
    lp = await LongPollClient(http, server.url).open("doc")
    status, (first, frames) = await lp.poll(0)
    acked = first + len(frames) - 1
    held = asyncio.create_task(lp.poll(acked))
    await asyncio.sleep(0.2)
    newer = asyncio.create_task(lp.poll(acked))
    status, body = await asyncio.wait_for(held, 5)
    assert status == 409 and "superseded" in body["error"]
    writer = await ws_peer(http, server)
    writer.text().insert(0, "wake")
    status, (first_again, frames) = await asyncio.wait_for(newer, 5)
    assert status == 200 and first_again == acked + 1 and frames
    await writer.close()
    await lp.close()


async def test_an_idle_poll_answers_empty_at_the_poll_timeout(http, settings) -> None:
    async with running_server(replace(settings, lp_poll_timeout_seconds=0.3)) as server:
        lp = await LongPollClient(http, server.url).open("doc")
        _status, (first, frames) = await lp.poll(0)
        acked = first + len(frames) - 1
        assert await lp.poll(acked) == (200, [acked + 1, []])
        await lp.close()


async def test_expired_sessions_clean_up_and_answer_410(http, settings) -> None:
    short = replace(settings, lp_session_ttl_seconds=0.4, lp_poll_timeout_seconds=0.1)
    async with running_server(short) as server:
        watcher = await ws_peer(http, server)
        lp = await LongPollPeer(http, server.url, client_id=5).open("doc")
        lp.text().insert(0, "kept")
        await lp.set_awareness(1, '{"user":"gone soon"}')
        await watcher.wait_for(lambda: 5 in watcher.awareness and str(watcher.text()) == "kept")
        sid = lp.lp.sid
        for task in lp._tasks:  # the client vanishes: no more polls
            task.cancel()
        await watcher.wait_for(lambda: 5 not in watcher.awareness, timeout=10)
        status, body = await _poll_sid(http, server.url, sid)
        assert status == 410 and body["code"] == CloseCode.GOING_AWAY
        fresh = await LongPollPeer(http, server.url).open("doc")  # a new session recovers all
        assert str(fresh.text()) == "kept"
        await fresh.close()
        await watcher.close()


async def test_a_closed_session_kept_for_its_410_does_not_keep_its_document(http, settings) -> None:
    async with running_server(replace(settings, idle_evict_seconds=0.05)) as server:
        lp = await LongPollPeer(http, server.url).open("released")
        lp.text().insert(0, "x" * 1000)
        await lp.wait_for(lambda: not lp._unacked)
        room = weakref.ref(server.app[ROOMS].get("released"))
        await lp.close()
        await server.wait_until_unloaded("released")
        assert server.app[LONGPOLL].get(lp.lp.sid).closed  # still there, to answer 410
        gc.collect()
        assert room() is None, "the closed session still holds the evicted room"


async def _poll_sid(http, base: str, sid: str):
    client = LongPollClient(http, base)
    client.sid = sid
    return await client.poll(0)


async def test_unknown_sessions_answer_410_on_every_endpoint(http, server) -> None:
    ghost = LongPollClient(http, server.url)
    ghost.sid = "nope.nothing"
    status, body = await ghost.poll(0)
    assert status == 410 and body["code"] == 1001
    status, body = await ghost.send(1, [b"\x03"])
    assert status == 410 and body["code"] == 1001
    assert await ghost.close() == 204


async def test_a_bad_frame_closes_the_session_with_its_code(http, server) -> None:
    lp = await LongPollClient(http, server.url).open("doc")
    status, body = await lp.send(1, [b"\x09"])
    assert status == 410 and body["code"] == CloseCode.BAD_REQUEST and body["error"]
    status, body = await lp.poll(0)
    assert status in (200, 410)  # retained frames may still be read, then 410
    if status == 200:
        first, frames = body
        status, body = await lp.poll(first + len(frames) - 1)
    assert status == 410 and body["code"] == CloseCode.BAD_REQUEST


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"\xc1", 400),
        (msgpack.packb({"a": 1}), 400),
        (msgpack.packb([0, []]), 400),
        (msgpack.packb([-3, []]), 400),
        (msgpack.packb([1, ["text"]]), 400),
        (msgpack.packb([1, [b"\x03"], 5]), 400),
        (msgpack.packb([1.5, []]), 400),
        (msgpack.packb([1, [b"\x03"] * 300], use_bin_type=True), 400),
    ],
)
async def test_malformed_send_bodies_get_400(http, server, body: bytes, status: int) -> None:
    lp = await LongPollClient(http, server.url).open("doc")
    async with http.post(f"{server.url}/lp/{lp.sid}/send", data=body) as resp:
        assert resp.status == status
        assert (await resp.json())["error"]
    await lp.close()


async def test_oversized_send_bodies_get_413(http, settings) -> None:
    async with running_server(replace(settings, lp_max_post_bytes=1000)) as server:
        lp = await LongPollClient(http, server.url).open("doc")
        status, _body = await lp.send(1, [bytes(2000)])
        assert status == 413
        await lp.close()


@pytest.mark.parametrize("doc", ["", "a//b", "x" * 300, "../etc"])
async def test_open_with_a_bad_document_id_gets_400(http, server, doc: str) -> None:
    async with http.post(f"{server.url}/lp/open", params={"doc": doc}) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == 4400


async def test_too_many_sessions_get_429(http, settings) -> None:
    async with running_server(replace(settings, lp_max_sessions=2)) as server:
        await LongPollClient(http, server.url).open("doc")
        await LongPollClient(http, server.url).open("doc")
        async with http.post(f"{server.url}/lp/open", params={"doc": "doc"}) as resp:
            assert resp.status == 429


@pytest.mark.parametrize("ack", ["-1", "abc", "1e3", "99999999999999999999", "5"])
async def test_bad_acks_get_400(http, server, ack: str) -> None:
    lp = await LongPollClient(http, server.url).open("doc")
    async with http.get(f"{server.url}/lp/{lp.sid}/poll", params={"ack": ack}) as resp:
        assert resp.status == 400
    await lp.close()


async def test_a_client_that_never_polls_is_closed_when_its_backlog_is_full(http, settings) -> None:
    async with running_server(replace(settings, lp_retained_frames=20)) as server:
        lp = await LongPollClient(http, server.url).open("doc")
        writer = await ws_peer(http, server)
        for index in range(50):
            writer.text().insert(0, str(index))
            await asyncio.sleep(0)
        await writer.flush()
        status, body = await lp.send(1, [encode_sync(SyncType.STEP1, b"\x00")])
        assert status == 410 and body["code"] == CloseCode.TRY_AGAIN_LATER
        await writer.close()


_hostile = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda a, b: msgpack.packb([a, b], use_bin_type=True),
        st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(), st.none()),
        st.lists(
            st.one_of(st.binary(max_size=30), st.integers(0, 9), st.text(max_size=5)), max_size=5
        ),
    ),
)


@pytest.mark.slow
async def test_fuzzed_requests_only_get_2xx_or_4xx(http, settings) -> None:
    # a short poll timeout: a fuzzed but valid ack may hold a poll
    async with running_server(replace(settings, lp_poll_timeout_seconds=0.2)) as server:
        await _fuzz_endpoints(http, server)


async def _fuzz_endpoints(http, server) -> None:
    writer = await ws_peer(http, server, "victim")
    writer.text().insert(0, "intact")
    await writer.flush()
    lp = await LongPollClient(http, server.url).open("fuzz")
    statuses: list[int] = []

    @hypothesis_settings(
        max_examples=int(os.environ.get("COLLAB_FUZZ_EXAMPLES", "300")),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        body=_hostile,
        path=st.sampled_from(["open", "poll", "send", "close"]),
        query=st.dictionaries(
            st.sampled_from(["doc", "ack", "x"]), st.text(max_size=20), max_size=2
        ),
        sid=st.one_of(st.just("live"), st.text(max_size=30)),
    )
    def run(body, path, query, sid):
        session_id = lp.sid if sid == "live" else sid
        url = f"{server.url}/lp/open" if path == "open" else f"{server.url}/lp/{session_id}/{path}"
        method = "GET" if path == "poll" else "POST"
        if path == "poll":
            query = {**query, "ack": query.get("ack", "999")}  # never hold the poll
        statuses.append(
            asyncio.run_coroutine_threadsafe(_request(http, method, url, query, body), loop).result(
                30
            )
        )

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(run)
    assert statuses and all(200 <= s < 500 for s in statuses), sorted(set(statuses))
    reader = await ws_peer(http, server, "victim")
    assert str(reader.text()) == "intact"
    await reader.close()
    await writer.close()


async def _request(http, method: str, url: str, query: dict, body: bytes) -> int:
    try:
        async with http.request(method, url, params=query, data=body) as resp:
            await resp.read()
            return resp.status
    except ValueError:
        return 400  # the client library refused to build the URL: nothing reached the server
