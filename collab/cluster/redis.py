"""Redis pub/sub bus between server nodes: one channel per loaded document.

Ordering rules that make it lossless together with the store: a node publishes an update only
after it is committed, and subscribes to a document (confirmation received) before loading it.
Pub/sub itself drops what is published while a subscriber is disconnected; redis-py reconnects
and re-subscribes silently, so a connection error or a repeated subscribe confirmation is
reported as a reset, after which every loaded document catches up from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from collab.protocol.cluster import BusMessage, decode_bus_message, encode_bus_message

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, BusMessage], None]
ResetHandler = Callable[[list[str]], Awaitable[None] | None]


class BusError(Exception):
    """Redis is unreachable."""


class RedisBus:
    def __init__(self, url: str, node_id: str, prefix: str = "ycollab") -> None:
        self.url = url
        self.node_id = node_id
        self._prefix = f"{prefix}:doc:"
        self._redis: aioredis.Redis | None = None
        self._pubsub: aioredis.client.PubSub | None = None
        self._confirmed: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._subscribed = asyncio.Event()
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_message: MessageHandler = lambda doc_id, message: None
        self._on_reset: ResetHandler = lambda doc_ids: None
        self.connected = False
        self._closed = False
        self.published = 0
        self.received = 0
        self.resets = 0

    async def start(self, on_message: MessageHandler, on_reset: ResetHandler) -> None:
        self._on_message, self._on_reset = on_message, on_reset
        self._redis = aioredis.from_url(self.url, decode_responses=False)
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise BusError(f"cannot reach Redis at {self.url}: {exc}") from exc
        self.connected = True
        self._pubsub = self._redis.pubsub()
        self._tasks = [
            asyncio.create_task(self._read(), name="redis-bus reader"),
            asyncio.create_task(self._publish_loop(), name="redis-bus publisher"),
        ]

    async def close(self) -> None:
        """Publish what is queued (a few seconds at most), then disconnect."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.join(), 5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.aclose()

    async def advertise(self, url: str, ttl_seconds: float = 30.0) -> None:
        """Tell the other nodes where this node's long-poll endpoints answer, and keep telling
        them (the entry expires if the node dies)."""
        self._tasks.append(
            asyncio.create_task(self._advertise_loop(url, ttl_seconds), name="redis-bus advertise")
        )

    async def _advertise_loop(self, url: str, ttl_seconds: float) -> None:
        assert self._redis is not None
        while True:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.set(self._node_key(self.node_id), url, ex=int(ttl_seconds))
            await asyncio.sleep(ttl_seconds / 3)

    async def node_url(self, node_id: str) -> str | None:
        """Where another node answers, if it is alive."""
        assert self._redis is not None
        try:
            value = await self._redis.get(self._node_key(node_id))
        except (RedisError, OSError):
            return None
        return value.decode() if value else None

    def _node_key(self, node_id: str) -> str:
        return f"{self._prefix[: -len('doc:')]}node:{node_id}"

    def _channel(self, doc_id: str) -> str:
        return self._prefix + doc_id

    async def subscribe(self, doc_id: str, timeout: float = 5.0) -> None:
        """Return once Redis confirmed the subscription (then loading the doc is safe)."""
        assert self._pubsub is not None
        channel = self._channel(doc_id)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            await self._pubsub.subscribe(channel)
            self._subscribed.set()
            await asyncio.wait_for(waiter, timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            raise BusError(f"cannot subscribe to {doc_id!r}: {exc}") from exc
        finally:
            waiters = self._waiters.get(channel, [])
            if waiter in waiters:
                waiters.remove(waiter)

    async def unsubscribe(self, doc_id: str) -> None:
        assert self._pubsub is not None
        channel = self._channel(doc_id)
        self._confirmed.discard(channel)
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.unsubscribe(channel)

    def publish(self, doc_id: str, message: BusMessage) -> None:
        """Queue for publishing; one task publishes in order, pipelining what queued up."""
        if self._closed:
            return
        self._outbox.put_nowait((self._channel(doc_id), encode_bus_message(message)))

    async def _publish_loop(self) -> None:
        assert self._redis is not None
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()
                self.published += len(batch)
            except (RedisError, OSError) as exc:
                # Receivers notice the hole in the sequence and read the store instead.
                log.warning("publishing %d messages failed: %s", len(batch), exc)
            finally:
                for _ in batch:
                    self._outbox.task_done()

    async def _read(self) -> None:
        assert self._pubsub is not None
        await self._subscribed.wait()
        backoff = 0.1
        while True:
            try:
                raw = await self._pubsub.get_message(timeout=1.0)
                backoff = 0.1
                if not self.connected:
                    self.connected = True
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.warning("Redis bus connection lost: %s", exc)
                self.connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if raw is not None:
                await self._dispatch(raw)

    async def _dispatch(self, raw: dict) -> None:
        kind = raw.get("type")
        channel = raw["channel"].decode() if isinstance(raw["channel"], bytes) else raw["channel"]
        if kind == b"subscribe" or kind == "subscribe":
            repeated = channel in self._confirmed
            self._confirmed.add(channel)
            for waiter in self._waiters.pop(channel, []):
                if not waiter.done():
                    waiter.set_result(None)
            if repeated:  # redis-py re-subscribed after a reconnect: messages may be lost
                self.resets += 1
                result = self._on_reset([channel[len(self._prefix) :]])
                if result is not None:
                    await result
            return
        if kind not in (b"message", "message"):
            return
        message = decode_bus_message(raw["data"])
        if message is None or message.node_id == self.node_id:
            return
        self.received += 1
        self._on_message(channel[len(self._prefix) :], message)
