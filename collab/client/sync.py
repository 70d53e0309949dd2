"""The client side of the y-websocket protocol for one document (sans-I/O).

Feed it the frames the server sends (``receive``); it applies them to the pycrdt ``Doc`` and
queues its answers, the local updates and the presence messages in ``outbox`` for whatever
transport is connected. Local updates made while disconnected are not queued: on every
connection the server sends its step 1 first and our step 2 answer carries everything it lacks,
which also bounds memory during long outages.

Step 2 replies are counted per connection: the n-th step 2 answers our n-th step 1, and the
server sends it only after every earlier update of this connection is committed, which is what
``Session.flush`` waits for.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pycrdt import Doc, Subscription, TransactionEvent

from collab.client.changes import Change, RootEvent, clients_added, plain
from collab.client.presence import Presence
from collab.protocol.wire import (
    AwarenessMessage,
    PermissionDenied,
    ProtocolError,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncType,
    SyncUpdate,
    decode_message,
    encode_sync,
    encode_update,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    """What one frame from the server did."""

    change: Change | None = None
    step2: int = 0  # n when this frame was the n-th step 2 of the connection
    peers_changed: bool = False
    denied: str | None = None  # the server refused our edits (e.g. "read-only")


class DocSync:
    def __init__(self, doc: Doc, presence: Presence, on_outgoing: Callable[[], None]) -> None:
        self.doc = doc
        self.presence = presence
        self.outbox: deque[bytes] = deque()
        self.connected = False
        self.step1_sent = 0
        self.step2_received = 0
        self._on_outgoing = on_outgoing
        self._applying = False
        self._applied: tuple[bytes, frozenset[int]] | None = None
        self._events: list[RootEvent] = []
        self._roots: dict[str, tuple[Any, Subscription]] = {}
        self._subscription = doc.observe(self._on_transaction)
        presence.on_publish = self.queue

    # -- connection lifecycle ----------------------------------------------------------------

    def connection_made(self) -> None:
        """Queue what y-websocket sends on open: our step 1, then our presence."""
        self.connected = True
        self.outbox.clear()
        self.step1_sent = self.step2_received = 0
        self.send_step1()
        announcement = self.presence.announce()
        if announcement is not None:
            self.queue(announcement)

    def connection_lost(self) -> bool:
        """Forget what was not sent (the next step 2 carries it); True if peers changed."""
        self.connected = False
        self.outbox.clear()
        return self.presence.forget_peers()

    def send_step1(self) -> int:
        """Queue a step 1 behind everything queued so far; return the number of its step 2."""
        self.queue(encode_sync(SyncType.STEP1, self.doc.get_state()))
        self.step1_sent += 1
        return self.step1_sent

    def queue(self, frame: bytes) -> None:
        """Send ``frame`` after everything queued so far (dropped while disconnected)."""
        if self.connected:
            self.outbox.append(frame)
            self._on_outgoing()

    # -- frames from the server --------------------------------------------------------------

    def receive(self, frame: bytes) -> Received:
        """Handle one frame; ProtocolError means the connection must be dropped (and resynced)."""
        try:
            message = decode_message(frame)
        except ProtocolError as exc:  # y-websocket also skips messages it cannot handle
            log.warning("ignoring a frame from the server: %s", exc.reason)
            return Received()
        match message:
            case SyncStep1(state_vector):
                try:
                    update = self.doc.get_update(state_vector)
                except ValueError as exc:
                    raise ProtocolError("the server sent an invalid state vector") from exc
                self.queue(encode_sync(SyncType.STEP2, update))
            case SyncStep2(update):
                change = self._apply(update, initial=True)
                self.step2_received += 1
                return Received(change=change, step2=self.step2_received)
            case SyncUpdate(update):
                return Received(change=self._apply(update, initial=False))
            case AwarenessMessage(payload):
                changed, reannouncement = self.presence.receive(payload)
                if reannouncement is not None:
                    self.queue(reannouncement)
                return Received(peers_changed=changed)
            case PermissionDenied(reason):
                log.warning("the server refused our edits: %s", reason)
                return Received(denied=reason)
            case QueryAwareness():
                announcement = self.presence.announce()
                if announcement is not None:
                    self.queue(announcement)
        return Received()

    def _apply(self, update: bytes, initial: bool) -> Change | None:
        self._applying = True
        self._applied = None
        self._events = []
        try:
            self.doc.apply_update(update)
        except ExceptionGroup:  # an observer of the bot failed; the update itself was applied
            log.exception("an observer raised while applying a remote update")
        except Exception as exc:
            raise ProtocolError(f"the server sent an update pycrdt rejects: {exc}") from exc
        finally:
            self._applying = False
        if self._applied is None:
            return None  # a duplicate, or structs waiting for missing dependencies
        effective, clients = self._applied
        peers = self.presence.peers
        users = {client: peers[client] for client in clients if client in peers}
        return Change(effective, clients, users, tuple(self._events), initial)

    # -- observers (record only: mutating the document inside them is not allowed) -----------

    def _on_transaction(self, event: TransactionEvent) -> None:
        if self._applying:
            try:
                clients = clients_added(event.before_state, event.after_state)
            except ProtocolError:
                clients = frozenset()
            self._applied = (event.update, clients)
        else:
            self.queue(encode_update(event.update))

    def detach(self) -> None:
        """Stop observing the doc: pycrdt's observers and the Doc reference each other where
        Python's cycle collector cannot see, so a session never detached would leak its doc."""
        self.doc.unobserve(self._subscription)
        for root, subscription in self._roots.values():
            root.unobserve(subscription)
        self._roots.clear()

    def observe_root(self, name: str, root: Any) -> None:
        """Report what changes inside ``root`` in each Change (once per root name)."""
        if name not in self._roots:
            self._roots[name] = (root, root.observe_deep(partial(self._on_root_events, name)))

    def _on_root_events(self, name: str, events: list[Any]) -> None:
        if not self._applying:
            return
        for event in events:
            try:
                self._events.append(
                    RootEvent(
                        root=name,
                        path=tuple(event.path),
                        delta=plain(getattr(event, "delta", None)),
                        keys=plain(getattr(event, "keys", None)),
                    )
                )
            except Exception:  # never let an observer error abort the remote update
                log.exception("could not describe a change of root %r", name)
