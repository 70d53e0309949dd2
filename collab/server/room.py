"""One live document: the pycrdt Doc, its presence, its connections; apply, broadcast, persist.

The way of one update: strict decode -> permission check -> queued for this event-loop turn.
At the end of the turn the queued updates are applied in one transaction (errors close only
the connection that sent the bad one), each one that changed something is queued for the group
commit, and the turn's effective change is encoded once and sent to every connection that did
not send all of it: a writer faster than the server is served in fewer, larger messages
instead of a growing backlog. A connection's next step1 is answered only after its earlier
updates are committed, so a step2 reply is a durability barrier.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from pycrdt import Doc, TransactionEvent, get_update, merge_updates

from collab.protocol.awareness import (
    AwarenessEntry,
    RoomAwareness,
    decode_awareness_update,
    encode_awareness_update,
)
from collab.protocol.cluster import AppliedSeqs, BusMessage, Kind
from collab.protocol.wire import (
    EMPTY_UPDATE,
    AwarenessMessage,
    CloseCode,
    PermissionDenied,
    ProtocolError,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncType,
    SyncUpdate,
    decode_message,
    encode_message,
    encode_sync,
    encode_update,
)
from collab.server.connection import Connection
from collab.server.settings import Settings
from collab.server.stats import ServerStats
from collab.store.base import Store, StoredDocument
from collab.store.folding import has_unintegrated_structs

log = logging.getLogger(__name__)

EMPTY_STATE_VECTOR = b"\x00"  # a client that has nothing yet
_FATAL = (KeyboardInterrupt, SystemExit, asyncio.CancelledError, MemoryError)
# A batch with more senders than this goes to its senders whole (echoing their own part, which
# Yjs ignores) rather than merged once per sender.
_MAX_SENDERS_EXCLUDED = 4


class Room:
    def __init__(
        self,
        doc_id: str,
        store: Store,
        settings: Settings,
        on_store_failure: Callable[[Room], None] = lambda room: None,
        stats: ServerStats | None = None,
        publish: Callable[[Kind, int, bytes], None] | None = None,
    ) -> None:
        self.doc_id = doc_id
        self.connections: set[Connection] = set()
        self.awareness = RoomAwareness()
        self.failed = False
        self.idle_since = 0.0
        self._store = store
        self._settings = settings
        self._on_store_failure = on_store_failure
        self._stats = stats or ServerStats()
        self._publish = publish
        self.applied = AppliedSeqs()  # stored updates applied here (gap detection)
        self.holds = 0  # HTTP API requests using the room without a connection
        self.stored_bytes = 0  # an upper bound of what the store holds (compaction shrinks it)
        self._doc = Doc()
        self._last_change: bytes | None = None
        # Encoded while the document is unchanged: our step1 (every join sends it) and the
        # step2 for a client that has nothing yet (a join storm would encode it per client).
        self._step1: bytes | None = None
        self._full_step2: bytes | None = None
        # Unobserved in dispose(): the callback and the Doc reference each other through
        # pycrdt's Rust side, where Python's cycle collector cannot see, so without that the
        # whole document would stay in memory after eviction.
        self._subscription = self._doc.observe(self._record_change)
        self._writes: set[asyncio.Future[int]] = set()
        self._batch: list[tuple[Connection | None, bytes]] = []  # (sender, change) this turn
        self._incoming: list[tuple[Connection, bytes]] = []  # updates to apply this turn
        self._presence: dict[int, AwarenessEntry] = {}  # presence changes this turn
        self._incoming_bytes = 0
        self._batch_flush: asyncio.Handle | None = None

    def _record_change(self, event: TransactionEvent) -> None:
        self._last_change = event.update

    def _changing(self) -> None:
        """Before an update is applied (pending structs change the state without an event)."""
        self._last_change = None
        self._step1 = self._full_step2 = None

    def load(self, stored: StoredDocument) -> None:
        for part in stored.parts():
            self._doc.apply_update(part)
            self.stored_bytes += len(part)
        self.applied.caught_up_to(stored.last_seq)
        self._changing()

    @property
    def queued_updates(self) -> int:
        """Updates received this turn, not yet applied nor handed to the store."""
        return len(self._incoming)

    def state_vector(self) -> bytes:
        return self._doc.get_state()

    def encode_state(self, state_vector: bytes | None = None) -> bytes:
        return self._doc.get_update(state_vector)

    # -- membership --------------------------------------------------------------------------

    def join(self, conn: Connection) -> None:
        """Greet like the reference server: our step1, then every known presence state."""
        self.flush_broadcast()
        self.connections.add(conn)
        if self._step1 is None:
            self._step1 = encode_sync(SyncType.STEP1, self._doc.get_state())
        conn.send(self._step1)
        if len(self.awareness):
            conn.send(self._awareness_message(self.awareness.entries()))

    def leave(self, conn: Connection) -> None:
        self.connections.discard(conn)
        removals = self.awareness.peer_left(conn)
        if removals:
            self._share_awareness(removals)

    def dispose(self) -> None:
        """Release the document (after eviction); the room is not used again."""
        if self._batch_flush is not None:
            self._batch_flush.cancel()
            self._batch_flush = None
        self._batch.clear()
        self._incoming.clear()
        self._presence.clear()
        self._doc.unobserve(self._subscription)

    def close_all(self, code: int, reason: str) -> None:
        for conn in list(self.connections):
            conn.close(code, reason)

    async def drain_writes(self) -> None:
        """Wait until every update received is committed (or failed)."""
        self.flush_broadcast()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    # -- messages ----------------------------------------------------------------------------

    def receive(self, conn: Connection, data: bytes) -> Coroutine[Any, Any, None] | None:
        """Handle one frame from ``conn`` at once; ProtocolError means: close ``conn`` with its
        code. Returns what is left to await, if anything: a step 1 answer that must wait for
        the connection's earlier writes to be stored. The transport awaits it before it
        reads on, so one peer's frames are handled in order without a task per frame."""
        message = decode_message(data, self._settings.max_message_bytes)
        match message:
            case SyncStep1(state_vector):
                self.flush_broadcast()  # this turn's updates reach the store: the barrier
                barrier = conn.pending_write
                if barrier is not None and not barrier.done():
                    return self._answer_step1_when_stored(conn, barrier, state_vector)
                conn.pending_write = None
                if barrier is not None:
                    barrier.result()  # a failed write raises its StoreError here
                self._answer_step1(conn, state_vector)
            case SyncStep2(update) | SyncUpdate(update):
                self._receive_update(conn, update)
            case AwarenessMessage(payload):
                self._receive_awareness(conn, payload)
            case QueryAwareness():
                self.flush_broadcast()
                conn.send(self._awareness_message(self.awareness.entries()))
            case PermissionDenied():
                raise ProtocolError("auth messages only travel from server to client")
        return None

    async def _answer_step1_when_stored(
        self, conn: Connection, barrier: asyncio.Future[int], state_vector: bytes
    ) -> None:
        await barrier  # durability barrier; StoreError closes the connection
        if conn.pending_write is barrier:
            conn.pending_write = None
        self.flush_broadcast()  # what arrived meanwhile goes out before the answer
        self._answer_step1(conn, state_vector)

    def _answer_step1(self, conn: Connection, state_vector: bytes) -> None:
        """After a flush: the answer holds (and follows) every change broadcast so far."""
        if state_vector == EMPTY_STATE_VECTOR:
            if self._full_step2 is None:
                self._full_step2 = encode_sync(SyncType.STEP2, self._doc.get_update())
            conn.send(self._full_step2)
            return
        try:
            update = self._doc.get_update(state_vector)
        except ValueError as exc:
            raise ProtocolError("invalid state vector in sync step 1") from exc
        conn.send(encode_sync(SyncType.STEP2, update))

    def _receive_update(self, conn: Connection, update: bytes) -> None:
        """Queue ``update`` for this turn's batch (see ``_apply_incoming``)."""
        if not conn.can_write:
            if update != EMPTY_UPDATE and not conn.told_read_only:
                conn.told_read_only = True
                conn.send(encode_message(PermissionDenied("read-only")))
            return
        if update == EMPTY_UPDATE:
            return
        size = self.stored_bytes + self._incoming_bytes + len(update)
        if size > self._settings.max_document_bytes:
            raise ProtocolError("document size limit reached", CloseCode.TOO_LARGE)
        self._stats.updates_in += 1
        self._stats.update_bytes_in += len(update)
        self._incoming.append((conn, update))
        self._incoming_bytes += len(update)
        self._schedule_flush()

    def _apply_incoming(self) -> None:
        """Apply the updates peers sent this turn in one transaction, then store each.

        pycrdt's cost is per transaction, and it grows linearly with the text one author has
        written (300,000 appended characters: 294 µs per update applied alone with our
        observer, 29 µs in batches of 10). A writer faster than the event loop is therefore
        applied in batches, whatever its document's size.

        A duplicate (nothing beyond our state, no deletions) is neither applied nor stored;
        an invalid update closes its connection with 4400, and what that connection sent
        after it in the batch is dropped, as if it had never been read.
        """
        incoming, self._incoming, self._incoming_bytes = self._incoming, [], 0
        refused: set[Connection] = set()
        applied: list[tuple[Connection, bytes]] = []
        self._changing()
        self._stats.update_batches += 1
        with self._doc.transaction():
            for conn, update in incoming:
                if conn in refused:
                    continue
                try:
                    with _refused_as_invalid():
                        if get_update(update, self._doc.get_state()) == EMPTY_UPDATE:
                            self._stats.duplicate_updates += 1
                            continue
                        self._doc.apply_update(update)
                except ProtocolError as exc:
                    refused.add(conn)
                    log.warning("closing %s (%d): %s", conn.label, exc.code, exc.reason)
                    conn.close(exc.code, exc.reason)
                    continue
                applied.append((conn, update))
        change, self._last_change = self._last_change, None
        for conn, update in applied:
            conn.pending_write = self._persist(update)
        if change is None:
            return  # only structs still waiting for what they depend on
        senders = {conn for conn, _ in applied}
        if len(senders) == 1:
            self._batch.append((applied[0][0], change))
        elif len(senders) > _MAX_SENDERS_EXCLUDED:
            self._batch.append((None, change))
        else:
            self._batch.extend(applied)  # merged per receiver by flush_broadcast

    def apply_update(self, update: bytes) -> asyncio.Future[int] | None:
        """Apply at once, broadcast, persist; None for a no-op update (the HTTP API's way).
        Raises ProtocolError (4400) for bytes that are not a valid Yjs update."""
        if update == EMPTY_UPDATE:
            return None
        if self.stored_bytes + len(update) > self._settings.max_document_bytes:
            raise ProtocolError("document size limit reached", CloseCode.TOO_LARGE)
        self._changing()
        with _refused_as_invalid():
            self._doc.apply_update(update)
        change, self._last_change = self._last_change, None
        stats = self._stats
        stats.updates_in += 1
        stats.update_bytes_in += len(update)
        if change is not None:
            self._add_to_batch(None, change)
        elif not has_unintegrated_structs(update, self._doc.get_state()):
            stats.duplicate_updates += 1
            return None  # a duplicate: neither stored nor broadcast
        return self._persist(update)

    def _persist(self, update: bytes) -> asyncio.Future[int]:
        self.stored_bytes += len(update)
        future = self._store.append(self.doc_id, update)
        self._writes.add(future)
        future.add_done_callback(functools.partial(self._write_done, update))
        return future

    def _write_done(self, update: bytes, future: asyncio.Future[int]) -> None:
        self._writes.discard(future)
        if future.cancelled():
            return
        if future.exception() is None:
            seq = future.result()
            self.applied.mark(seq)
            if self._publish is not None:
                self._publish(Kind.UPDATE, seq, update)
            return
        if self.failed:
            return
        self.failed = True
        log.error("store failed for %r: %s", self.doc_id, future.exception())
        self.close_all(CloseCode.INTERNAL_ERROR, "storage error")
        self._on_store_failure(self)

    def _receive_awareness(self, conn: Connection, payload: bytes) -> None:
        self._stats.awareness_in += 1
        entries = decode_awareness_update(payload, self._settings.max_awareness_state_bytes)
        changed = self.awareness.receive(conn, entries, time.monotonic())
        if changed:
            self._share_awareness(changed)

    def _share_awareness(self, changed: list[AwarenessEntry]) -> None:
        """Queue for this turn's presence message (see ``_send_presence``)."""
        for entry in changed:
            self._presence[entry.client_id] = entry
        self._schedule_flush()

    def _send_presence(self) -> None:
        """The presence changes of this turn as one message, the latest state per client: to
        local connections (the sender too: the echo keeps it alive) and to other nodes. A turn
        in which many cursors move (a join storm, a busy room) costs one send per peer, not
        one per change per peer."""
        entries, self._presence = list(self._presence.values()), {}
        payload = encode_awareness_update(entries)
        message = encode_message(AwarenessMessage(payload))
        for conn in self.connections:
            conn.send(message)
        if self._publish is not None:
            self._publish(Kind.AWARENESS, 0, payload)

    # -- other nodes (through the cluster bus) ------------------------------------------------

    def receive_remote(self, message: BusMessage) -> None:
        """Apply what another node relayed; never stored again (that node stored it)."""
        try:
            if message.kind is Kind.UPDATE:
                if message.seq not in self.applied:
                    self._apply_remote(message.payload)
                    self.applied.mark(message.seq)
            elif message.kind is Kind.AWARENESS:
                entries = decode_awareness_update(message.payload, 1 << 24)
                changed = self.awareness.apply_remote(entries, time.monotonic())
                if changed:
                    self._broadcast(self._awareness_message(changed))
            elif message.kind is Kind.QUERY_AWARENESS and self._publish is not None:
                local = self.awareness.local_entries()
                if local:
                    self._publish(Kind.AWARENESS, 0, encode_awareness_update(local))
        except ProtocolError as exc:
            log.warning(
                "ignored a bad %s from node %s for %r: %s",
                message.kind.name,
                message.node_id,
                self.doc_id,
                exc.reason,
            )

    def catch_up(self, stored: StoredDocument) -> None:
        """Apply what the store holds (after lost bus messages); only news is broadcast."""
        for part in stored.parts():
            self._apply_remote(part)
        self.applied.caught_up_to(stored.last_seq)

    def _apply_remote(self, update: bytes) -> None:
        self._changing()
        with _refused_as_invalid():
            self._doc.apply_update(update)
        change, self._last_change = self._last_change, None
        if change is not None:
            self.stored_bytes += len(update)
            self._add_to_batch(None, change)

    def expire_remote_presence(self, now: float, timeout: float) -> None:
        removals = self.awareness.expire(now, timeout)
        if removals:
            self._broadcast(self._awareness_message(removals))

    def _add_to_batch(self, sender: Connection | None, change: bytes) -> None:
        self._batch.append((sender, change))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._batch_flush is None:
            self._batch_flush = asyncio.get_running_loop().call_soon(self.flush_broadcast)

    def flush_broadcast(self) -> None:
        """Apply and send this turn's document changes; anything else sent to a connection
        goes after them, so a presence state never arrives before the text it points into."""
        if self._batch_flush is not None:
            self._batch_flush.cancel()
            self._batch_flush = None
        if self._incoming:
            self._apply_incoming()
        if self._batch:
            self._send_changes()
        if self._presence:
            self._send_presence()

    def _send_changes(self) -> None:
        batch, self._batch = self._batch, []
        message = _merged_message([change for _, change in batch])
        senders = {sender for sender, _ in batch if sender in self.connections}
        if len(senders) > _MAX_SENDERS_EXCLUDED:
            senders.clear()
        for conn in self.connections:
            if conn not in senders:
                conn.send(message)
        sent = len(self.connections) - len(senders)
        for sender in senders:
            rest = [change for origin, change in batch if origin is not sender]
            if rest:
                sender.send(_merged_message(rest))
                sent += 1
        self._stats.fanout_messages += sent

    def _broadcast(self, message: bytes) -> None:
        self.flush_broadcast()
        for conn in self.connections:
            conn.send(message)

    @staticmethod
    def _awareness_message(entries: list[AwarenessEntry]) -> bytes:
        return encode_message(AwarenessMessage(encode_awareness_update(entries)))


@contextlib.contextmanager
def _refused_as_invalid() -> Iterator[None]:
    """pycrdt's refusal of bytes that are not a Yjs update (ValueError, RuntimeError; older
    versions panic) as ProtocolError 4400, with the first line of its message."""
    try:
        yield
    except _FATAL:
        raise
    except BaseException as exc:
        raise ProtocolError(f"invalid Yjs update: {exc}".splitlines()[0][:200]) from exc


def _merged_message(changes: list[bytes]) -> bytes:
    """One sync update message with the effect of all ``changes`` (no merge for one)."""
    return encode_update(changes[0] if len(changes) == 1 else merge_updates(*changes))
