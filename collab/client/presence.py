"""The bot's own awareness state and the states of the other peers (sans-I/O).

Clock rules are those of y-protocols: a state wins when its clock is newer, a removal also at
an equal clock. Our own clock starts at 1 (a first state at clock 0 is ignored by y-protocols
peers) and is bumped on every change, every renewal and every reconnection, so that a new state
always beats a removal the server may still send for the previous connection. Peers whose state
was not renewed for 30 s are dropped, as y-protocols does (live clients renew every 15 s).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collab.protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)
from collab.protocol.wire import AwarenessMessage, ProtocolError, encode_message

log = logging.getLogger(__name__)

RENEW_SECONDS = 15.0
OUTDATED_SECONDS = 30.0
MAX_STATE_BYTES = 1 << 20  # what we accept from the server; the server caps peers at 64 KiB


@dataclass(slots=True)
class _PeerState:
    clock: int
    state: Any
    updated_at: float


class Presence:
    """``session.presence``: set the bot's state; read who else is here in ``peers``."""

    def __init__(
        self,
        client_id: int,
        state: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id
        self._state: dict[str, Any] | None = dict(state) if state is not None else None
        self._clock = 0
        self._now = clock
        self._sent_at = -RENEW_SECONDS
        self._peers: dict[int, _PeerState] = {}
        self.on_publish: Callable[[bytes], None] | None = None  # set by the sync layer

    # -- our own state -----------------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any] | None:
        """The bot's current awareness state (None: not announced)."""
        return None if self._state is None else dict(self._state)

    def set(self, fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` into the state (``{"status": "thinking"}`` keeps ``"user"``)."""
        self.replace({**(self._state or {}), **fields})

    def replace(self, state: Mapping[str, Any]) -> None:
        """Replace the whole state; it must be JSON-serialisable."""
        json.dumps(state)  # fail here, in the caller, rather than later in the sender
        self._state = dict(state)
        self._publish()

    def clear(self) -> None:
        """Tell the peers the bot left (state ``null``), without closing the session."""
        if self._state is not None:
            self._state = None
            self._publish()

    def announce(self) -> bytes | None:
        """A fresh awareness message with our state at a new clock (None if we have none)."""
        if self._state is None:
            return None
        return self._message(json.dumps(self._state, separators=(",", ":"), ensure_ascii=False))

    def leave(self) -> bytes | None:
        """The removal message to send before closing (None if we never announced)."""
        return self._message(None) if self._clock else None

    def renewal_due(self) -> bool:
        return self._state is not None and self._now() - self._sent_at >= RENEW_SECONDS

    def renew(self) -> None:
        """Re-send our state at a new clock, so peers do not time it out."""
        if self._state is not None:
            self._publish()

    def _publish(self) -> None:
        message = self.announce() if self._state is not None else self._message(None)
        if self.on_publish is not None:
            self.on_publish(message)

    def _message(self, state: str | None) -> bytes:
        self._clock += 1
        self._sent_at = self._now()
        entry = AwarenessEntry(self.client_id, self._clock, state)
        return encode_message(AwarenessMessage(encode_awareness_update([entry])))

    # -- the other peers ---------------------------------------------------------------------

    @property
    def peers(self) -> dict[int, Any]:
        """clientID -> awareness state of every other peer (e.g. ``{"user": {"name": ...}}``)."""
        return {client_id: peer.state for client_id, peer in self._peers.items()}

    def receive(self, payload: bytes) -> tuple[bool, bytes | None]:
        """Apply an awareness update from the server.

        Returns whether ``peers`` changed, and a re-announcement to send when someone declared
        us gone while we are still here (y-protocols does the same).
        """
        try:
            entries = decode_awareness_update(payload, MAX_STATE_BYTES)
        except ProtocolError as exc:
            log.warning("ignoring a malformed awareness update: %s", exc.reason)
            return False, None
        now = self._now()
        changed = False
        reannounce = None
        for entry in entries:
            if entry.client_id == self.client_id:
                if entry.state is None and entry.clock >= self._clock:
                    reannounce = self.announce()
                continue
            current = self._peers.get(entry.client_id)
            if entry.state is None:
                if current is not None and entry.clock >= current.clock:
                    del self._peers[entry.client_id]
                    changed = True
                continue
            if current is None or entry.clock > current.clock:
                self._peers[entry.client_id] = _PeerState(entry.clock, json.loads(entry.state), now)
                changed = True
        return changed, reannounce

    def expire(self) -> bool:
        """Drop peers not renewed for 30 s; True if any was dropped."""
        deadline = self._now() - OUTDATED_SECONDS
        stale = [cid for cid, peer in self._peers.items() if peer.updated_at < deadline]
        for client_id in stale:
            del self._peers[client_id]
        return bool(stale)

    def forget_peers(self) -> bool:
        """Disconnected: we no longer know who is here (the server resends everyone)."""
        had = bool(self._peers)
        self._peers.clear()
        return had
