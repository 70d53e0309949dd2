"""Several nodes, one service: real Redis, a shared store, real sockets."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from collab.server.keys import ROOMS
from collab.server.settings import Settings
from tests.store.helpers import POSTGRES_URL, fresh_schema
from tests.support import LongPollPeer, RawClient, RunningServer, ServerProcess, running_server

REDIS_URL = os.environ.get("COLLAB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def cluster_settings(settings: Settings) -> AsyncIterator[Settings]:
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as exc:
        pytest.fail(f"Redis is needed at {REDIS_URL} (make test / .ci/run start it): {exc}")
    finally:
        await client.aclose()
    yield replace(settings, redis_url=REDIS_URL, redis_prefix=f"test-{secrets.token_hex(4)}")


async def synced(http, server: RunningServer, doc_id: str = "doc", **kw) -> RawClient:
    client = await RawClient(http, server.ws_url(doc_id), **kw).connect()
    await asyncio.wait_for(client.synced.wait(), 10)
    return client


async def test_clients_on_different_nodes_converge_and_see_presence(http, cluster_settings) -> None:
    async with (
        running_server(replace(cluster_settings, node_id="a")) as node_a,
        running_server(replace(cluster_settings, node_id="b")) as node_b,
    ):
        alice = await synced(http, node_a, client_id=1)
        bob = await synced(http, node_b, client_id=2)
        for index in range(20):
            alice.text().insert(0, f"a{index} ")
            bob.text().insert(len(bob.text()), f"b{index} ")
        total = sum(len(f"a{i} ") + len(f"b{i} ") for i in range(20))
        await alice.wait_for(lambda: len(str(alice.text())) == total)
        await bob.wait_for(lambda: len(str(bob.text())) == total)
        assert str(alice.text()) == str(bob.text())
        await alice.set_awareness(1, '{"user":"alice"}')
        await bob.wait_for(lambda: 1 in bob.awareness)
        await alice.close()
        await bob.wait_for(lambda: 1 not in bob.awareness)
        late = await synced(http, node_a)
        assert str(late.text()) == str(bob.text())
        await late.close()
        await bob.close()


async def test_nodes_catch_up_after_the_bus_connection_is_killed(http, cluster_settings) -> None:
    async with (
        running_server(replace(cluster_settings, node_id="a")) as node_a,
        running_server(replace(cluster_settings, node_id="b")) as node_b,
    ):
        writer = await synced(http, node_a)
        reader = await synced(http, node_b)
        admin = aioredis.from_url(REDIS_URL)
        try:
            for round_ in range(3):
                for index in range(30):
                    writer.text().insert(len(writer.text()), f"[{round_}.{index}]")
                    if index == 10:
                        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
                    await asyncio.sleep(0.005)
            await writer.flush()
            expected = str(writer.text())
            await reader.wait_for(lambda: str(reader.text()) == expected, timeout=40)
            assert node_b.app[ROOMS].bus.resets >= 1  # the kills were noticed...
            assert node_b.app[ROOMS].catch_ups >= 1  # ...and repaired from the store
        finally:
            await admin.aclose()
        await writer.close()
        await reader.close()


async def test_a_node_loading_while_another_writes_misses_nothing(http, cluster_settings) -> None:
    async with (
        running_server(replace(cluster_settings, node_id="a")) as node_a,
        running_server(replace(cluster_settings, node_id="b")) as node_b,
    ):
        writer = await synced(http, node_a, "race")
        stop = asyncio.Event()

        async def type_continuously() -> None:
            index = 0
            while not stop.is_set():
                writer.text().insert(len(writer.text()), f"<{index}>")
                index += 1
                await asyncio.sleep(0.001)

        typing = asyncio.create_task(type_continuously())
        readers = []
        for _ in range(5):  # each join loads the doc on node b while node a writes
            reader = await synced(http, node_b, "race")
            readers.append(reader)
            await reader.close()
            await asyncio.sleep(0.05)
            await node_b.app[ROOMS].evict("race", 1001, "reload")  # the next join loads again
        stop.set()
        await typing
        await writer.flush()
        final = await synced(http, node_b, "race")
        await final.wait_for(lambda: str(final.text()) == str(writer.text()), timeout=20)
        await final.close()
        await writer.close()


async def test_presence_of_a_vanished_node_expires(http, cluster_settings) -> None:
    fast = replace(cluster_settings, presence_timeout_seconds=1.0)
    async with running_server(replace(fast, node_id="b")) as node_b:
        watcher = await synced(http, node_b)
        async with running_server(replace(fast, node_id="a")) as node_a:
            ghost = await synced(http, node_a, client_id=9)
            await ghost.set_awareness(1, '{"user":"ghost"}')
            await watcher.wait_for(lambda: 9 in watcher.awareness)
            await node_a.app[ROOMS].bus.close()  # the node vanishes without goodbyes
        await watcher.wait_for(lambda: 9 not in watcher.awareness, timeout=10)
        await watcher.close()


@pytest.mark.slow
async def test_kill_9_of_a_node_loses_nothing_acknowledged(
    http, cluster_settings, tmp_path
) -> None:
    extra = ("--redis-url", REDIS_URL, "--redis-prefix", cluster_settings.redis_prefix)
    nodes = [
        await asyncio.to_thread(ServerProcess(tmp_path, *extra, "--node-id", name).start)
        for name in ("a", "b")
    ]
    try:
        writer = await RawClient(http, nodes[0].ws_url("crash")).connect()
        await asyncio.wait_for(writer.synced.wait(), 10)
        watcher = await RawClient(http, nodes[1].ws_url("crash")).connect()
        await asyncio.wait_for(watcher.synced.wait(), 10)
        acknowledged = []
        for index in range(60):
            writer.text().insert(len(writer.text()), f"<{index}>")
            if index % 10 == 9:
                await writer.flush()
                acknowledged = str(writer.text())
        await asyncio.to_thread(nodes[0].kill)
        await writer.close()
        again = await RawClient(http, nodes[1].ws_url("crash")).connect()  # reconnect elsewhere
        await asyncio.wait_for(again.synced.wait(), 10)
        assert str(again.text()).startswith(acknowledged)
        await again.close()
        await watcher.close()
    finally:
        for node in nodes:
            if node.proc and node.proc.poll() is None:
                await asyncio.to_thread(node.stop)


async def test_long_poll_and_websocket_peers_on_different_nodes(http, cluster_settings) -> None:
    async with (
        running_server(replace(cluster_settings, node_id="a")) as node_a,
        running_server(replace(cluster_settings, node_id="b")) as node_b,
    ):
        ws = await synced(http, node_a)
        lp = await LongPollPeer(http, node_b.url).open("doc")
        ws.text().insert(0, "hello ")
        await lp.wait_for(lambda: str(lp.text()) == "hello ")
        lp.text().insert(6, "there")
        await ws.wait_for(lambda: str(ws.text()) == "hello there")
        await lp.close()
        await ws.close()


async def test_nodes_sharing_postgresql_serve_one_document(http, cluster_settings) -> None:
    async with fresh_schema() as (_, schema):
        shared = replace(cluster_settings, postgres_url=POSTGRES_URL, postgres_schema=schema)
        async with (
            running_server(replace(shared, node_id="a")) as node_a,
            running_server(replace(shared, node_id="b")) as node_b,
        ):
            alice = await synced(http, node_a, "pg")
            bob = await synced(http, node_b, "pg")
            alice.text().insert(0, "from a ")
            bob.text().insert(0, "from b ")
            await alice.wait_for(lambda: len(str(alice.text())) == 14)
            await bob.wait_for(lambda: len(str(bob.text())) == 14)
            assert str(bob.text()) == str(alice.text())
            await alice.flush()
            await bob.flush()
            expected = str(alice.text())
            await alice.close()
            await bob.close()
        async with running_server(replace(shared, node_id="c")) as node_c:  # from PostgreSQL
            reader = await synced(http, node_c, "pg")
            assert str(reader.text()) == expected
            await reader.close()
