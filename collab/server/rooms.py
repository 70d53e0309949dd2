"""Registry of loaded documents: load once, evict when idle, cap how many stay in memory.

States per doc id: loading (a shared task; concurrent first connections wait on it) -> active
-> evicting (writes drained; arrivals wait and then load afresh) -> gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator

from collab.cluster.redis import BusError, RedisBus
from collab.protocol.cluster import BusMessage, Kind
from collab.server.connection import Connection
from collab.server.memory import release_free_memory
from collab.server.room import Room
from collab.server.settings import Settings
from collab.server.stats import ServerStats
from collab.store.base import Store, StoreError

log = logging.getLogger(__name__)

GAP_GRACE_SECONDS = 0.5  # a missing seq usually arrives within this; else read the store
AUDIT_SECONDS = 30.0


class RoomsFull(Exception):
    """Every loaded room is in use and the cap is reached."""


class OverCapacity(Exception):
    """Too many connections to this document, or to this server."""


class Rooms:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        stats: ServerStats | None = None,
        bus: RedisBus | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self.stats = stats or ServerStats()
        self.bus = bus
        self._buffers: dict[str, list[BusMessage]] = {}  # bus messages while a doc loads
        self._gap_checks: dict[str, asyncio.TimerHandle] = {}
        self._housekeeping: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.catch_ups = 0
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Task[Room]] = {}
        self._evicting: dict[str, asyncio.Task[None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.connection_count = 0
        self.loads = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, doc_id: str) -> Room | None:
        return self._rooms.get(doc_id)

    def rooms(self) -> list[Room]:
        return list(self._rooms.values())

    async def join(self, doc_id: str, conn: Connection) -> Room:
        """Add ``conn`` to the room of ``doc_id``, loading the document if needed."""
        room = await self._active(doc_id)
        if self.bus is not None:
            await self._catch_up_if_behind(room)
        if len(room.connections) >= self._settings.max_connections_per_document:
            raise OverCapacity("too many connections to this document")
        if self.connection_count >= self._settings.max_connections:
            raise OverCapacity("server at its connection limit")
        room.join(conn)
        self.connection_count += 1
        self.stats.connections_opened[conn.transport] += 1
        # at once, not when its transport ends; one partial per connection, not two closures
        conn.on_close(functools.partial(self._closed, room, conn))
        return room

    def _closed(self, room: Room, conn: Connection) -> None:
        self.stats.closes.update([conn.close_code or 0])
        self.leave(room, conn)

    @contextlib.asynccontextmanager
    async def borrow(self, doc_id: str) -> AsyncIterator[Room]:
        """Use a room without a connection (HTTP API); it stays loaded meanwhile."""
        room = await self._active(doc_id)
        room.holds += 1
        try:
            yield room
        finally:
            room.holds -= 1
            self._maybe_schedule_eviction(room)

    async def _active(self, doc_id: str) -> Room:
        # A finished eviction or load may still be in its dict: the callback that removes it
        # runs on a later loop turn, and awaiting a finished task does not yield, so such an
        # entry must be skipped here, never awaited in a loop (that spun the server forever).
        while True:
            evicting = self._evicting.get(doc_id)
            if evicting is not None and not evicting.done():
                await asyncio.shield(evicting)
                continue
            room = self._rooms.get(doc_id)
            if room is None:
                loading = self._loading.get(doc_id)
                if loading is None or loading.done():
                    loading = asyncio.create_task(self._load(doc_id), name=f"load {doc_id}")
                    self._loading[doc_id] = loading
                    loading.add_done_callback(functools.partial(_forget, self._loading, doc_id))
                room = await asyncio.shield(loading)
                continue
            self._cancel_timer(doc_id)
            return room

    def leave(self, room: Room, conn: Connection) -> None:
        if conn not in room.connections:
            return
        self.connection_count -= 1
        room.leave(conn)
        self._maybe_schedule_eviction(room)

    def _maybe_schedule_eviction(self, room: Room) -> None:
        if not room.connections and not room.holds and self._rooms.get(room.doc_id) is room:
            room.idle_since = time.monotonic()
            self._cancel_timer(room.doc_id)
            self._timers[room.doc_id] = asyncio.get_running_loop().call_later(
                self._settings.idle_evict_seconds, self._start_eviction, room
            )

    async def _load(self, doc_id: str) -> Room:
        if len(self._rooms) >= self._settings.max_rooms:
            await self._evict_least_recently_used()
        publish = None
        if self.bus is not None:
            # Subscribe, then load: whatever is committed after the load's read arrives here.
            self._buffers[doc_id] = []
            try:
                await self.bus.subscribe(doc_id)
            except BusError:
                del self._buffers[doc_id]
                raise
            publish = functools.partial(self._publish, doc_id)
        try:
            stored = await self._store.load(doc_id)
        except BaseException:
            self._buffers.pop(doc_id, None)
            raise
        room = Room(
            doc_id,
            self._store,
            self._settings,
            on_store_failure=self._drop_failed,
            stats=self.stats,
            publish=publish,
        )
        room.load(stored)
        room.idle_since = time.monotonic()
        self._rooms[doc_id] = room
        self.loads += 1
        for message in self._buffers.pop(doc_id, []):
            room.receive_remote(message)
        if publish is not None:
            publish(Kind.QUERY_AWARENESS, 0, b"")
            self._check_gap(room)
        return room

    def _publish(self, doc_id: str, kind: Kind, seq: int, payload: bytes) -> None:
        assert self.bus is not None
        self.bus.publish(doc_id, BusMessage(kind, self.bus.node_id, seq, payload))

    # -- the cluster bus ---------------------------------------------------------------------

    def on_bus_message(self, doc_id: str, message: BusMessage) -> None:
        buffer = self._buffers.get(doc_id)
        if buffer is not None:
            buffer.append(message)
            return
        room = self._rooms.get(doc_id)
        if room is not None:
            room.receive_remote(message)
            self._check_gap(room)

    def _check_gap(self, room: Room) -> None:
        """A hole in the sequence that is still open after a moment: read the store."""
        if not room.applied.has_gap or room.doc_id in self._gap_checks:
            return
        loop = asyncio.get_running_loop()

        def check() -> None:
            self._gap_checks.pop(room.doc_id, None)
            if room.applied.has_gap and self._rooms.get(room.doc_id) is room:
                task = loop.create_task(self.catch_up([room.doc_id]))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

        self._gap_checks[room.doc_id] = loop.call_later(GAP_GRACE_SECONDS, check)

    async def catch_up(self, doc_ids: list[str]) -> None:
        """Apply from the store what the bus may have lost for these documents."""
        for doc_id in doc_ids:
            room = self._rooms.get(doc_id)
            if room is None:
                continue
            try:
                stored = await self._store.load(doc_id)
            except StoreError as exc:
                log.warning("catch-up of %r failed: %s", doc_id, exc)
                continue
            if self._rooms.get(doc_id) is room:
                room.catch_up(stored)
                self.catch_ups += 1

    async def _catch_up_if_behind(self, room: Room) -> None:
        """A node that died between its commit and its publish leaves the others behind the
        store with no gap to notice; a joining client must still see every acknowledged edit,
        so each join compares with the store (one indexed read)."""
        try:
            info = await self._store.info(room.doc_id)
        except StoreError as exc:
            log.warning("cannot compare %r with the store: %s", room.doc_id, exc)
            return
        if info is not None and info.last_seq > room.applied.contiguous:
            await self.catch_up([room.doc_id])

    async def on_bus_reset(self, doc_ids: list[str]) -> None:
        await self.catch_up(doc_ids)

    def start(self) -> None:
        self._housekeeping = asyncio.create_task(self._keep_house(), name="rooms housekeeping")

    async def _keep_house(self) -> None:
        """Every few seconds: keep-alive frames for quiet connections, drop presence of
        clients of vanished nodes, give the memory of evicted documents back to the OS; every
        30 s: compare each document with the store (catches a publish lost after a crash)."""
        last_audit = time.monotonic()
        evictions_seen = self.evictions
        while True:
            settings = self._settings
            await asyncio.sleep(
                min(3.0, settings.presence_timeout_seconds / 4, settings.keepalive_seconds / 3)
            )
            now = time.monotonic()
            self._sweep(now)
            if self.evictions != evictions_seen:
                evictions_seen = self.evictions
                release_free_memory()
            if self.bus is not None and now - last_audit >= AUDIT_SECONDS:
                last_audit = now
                await self._audit()

    async def _audit(self) -> None:
        behind = []
        for room in list(self._rooms.values()):
            with contextlib.suppress(StoreError):
                info = await self._store.info(room.doc_id)
                if info is not None and info.last_seq > room.applied.contiguous:
                    behind.append(room.doc_id)
        await self.catch_up(behind)

    def _sweep(self, now: float) -> None:
        """A function of its own so that no loop variable keeps an evicted room alive."""
        timeout = self._settings.presence_timeout_seconds
        for room in list(self._rooms.values()):
            room.expire_remote_presence(now, timeout)
            for conn in room.connections:
                conn.keep_alive(now)

    async def _evict_least_recently_used(self) -> None:
        idle = [room for room in self._rooms.values() if not room.connections and not room.holds]
        if not idle:
            raise RoomsFull(f"{len(self._rooms)} documents are loaded and in use")
        oldest = min(idle, key=lambda room: room.idle_since)
        self._start_eviction(oldest)
        await asyncio.shield(self._evicting[oldest.doc_id])

    def _start_eviction(self, room: Room) -> None:
        self._timers.pop(room.doc_id, None)
        evicting = self._evicting.get(room.doc_id)
        if room.connections or room.holds or (evicting is not None and not evicting.done()):
            return
        if self._rooms.get(room.doc_id) is not room:
            return
        task = asyncio.create_task(self._evict(room), name=f"evict {room.doc_id}")
        self._evicting[room.doc_id] = task
        task.add_done_callback(functools.partial(_forget, self._evicting, room.doc_id))

    async def _evict(self, room: Room) -> None:
        try:
            await room.drain_writes()
        finally:
            if self._rooms.get(room.doc_id) is room:
                del self._rooms[room.doc_id]
            room.dispose()
            self.evictions += 1
            log.debug("evicted %r", room.doc_id)
        await self._unsubscribe(room.doc_id)

    async def _unsubscribe(self, doc_id: str) -> None:
        if self.bus is not None and doc_id not in self._rooms:
            handle = self._gap_checks.pop(doc_id, None)
            if handle is not None:
                handle.cancel()
            await self.bus.unsubscribe(doc_id)

    async def evict(self, doc_id: str, code: int, reason: str) -> bool:
        """Close the document's connections with ``code`` and unload it now (admin, delete)."""
        room = self._rooms.get(doc_id)
        if room is None:
            return False
        room.close_all(code, reason)
        self._cancel_timer(doc_id)
        del self._rooms[doc_id]
        await room.drain_writes()
        room.dispose()
        self.evictions += 1
        await self._unsubscribe(doc_id)
        return True

    def _drop_failed(self, room: Room) -> None:
        """A store failure left the room's memory ahead of the disk: forget it at once; the
        clients hold their edits and re-send them when they reconnect."""
        self._cancel_timer(room.doc_id)
        if self._rooms.get(room.doc_id) is room:
            del self._rooms[room.doc_id]
        room.dispose()

    def _cancel_timer(self, doc_id: str) -> None:
        timer = self._timers.pop(doc_id, None)
        if timer is not None:
            timer.cancel()

    async def close(self, code: int, reason: str) -> None:
        """Shutdown: close every connection, then wait for the rooms' writes."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for handle in self._gap_checks.values():
            handle.cancel()
        for doc_id in list(self._timers):
            self._cancel_timer(doc_id)
        rooms = list(self._rooms.values())
        for room in rooms:
            room.close_all(code, reason)
        for room in rooms:
            with contextlib.suppress(Exception):
                await room.drain_writes()


def _forget(tasks: dict[str, asyncio.Task], key: str, task: asyncio.Task) -> None:
    """Done callback: drop ``task`` from ``tasks``, unless a newer task took its place."""
    if tasks.get(key) is task:
        del tasks[key]
