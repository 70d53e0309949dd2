"""Awareness (presence) for one room: codec, clock rules and connection ownership (sans-I/O).

The server never relays awareness messages raw: every y-websocket client echoes each change it
applies back to the server, so a raw relay turns one cursor move into O(N²) messages. Instead
the room applies the entries it accepts and re-encodes only those. A connection owns the
clientID of its first single-entry update; it may not set the state of any other clientID, and
its owned state is removed when it leaves.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from collab.protocol.wire import (
    CloseCode,
    ProtocolError,
    Reader,
    encode_var_string,
    encode_var_uint,
)

NULL_STATE = "null"


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str | None  # the JSON text of the state; None means "this client is gone"


def decode_awareness_update(payload: bytes, max_state_bytes: int) -> list[AwarenessEntry]:
    """Decode ``varUint(n) ‖ n × (clientID, clock, JSON state)``; states must be valid JSON."""
    reader = Reader(payload)
    count = reader.var_uint()
    if count > len(payload):  # every entry takes at least three bytes: reject absurd counts early
        raise ProtocolError("awareness entry count exceeds the message")
    entries = []
    for _ in range(count):
        client_id = reader.var_uint()
        clock = reader.var_uint()
        raw = reader.var_bytes()
        if len(raw) > max_state_bytes:
            raise ProtocolError(
                f"awareness state larger than {max_state_bytes} bytes", CloseCode.TOO_LARGE
            )
        try:
            text = raw.decode("utf-8")
            parsed = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError("awareness state is not valid JSON") from exc
        entries.append(AwarenessEntry(client_id, clock, None if parsed is None else text))
    reader.expect_end()
    return entries


def encode_awareness_update(entries: Iterable[AwarenessEntry]) -> bytes:
    entries = list(entries)
    parts = [encode_var_uint(len(entries))]
    for entry in entries:
        parts.append(encode_var_uint(entry.client_id))
        parts.append(encode_var_uint(entry.clock))
        parts.append(encode_var_string(NULL_STATE if entry.state is None else entry.state))
    return b"".join(parts)


class RoomAwareness:
    """Current presence states of a room and which peer (connection) owns which clientID.

    Clock rule (as y-protocols): an entry is accepted when its clock is newer than the known
    one, or when it is a removal at the known clock. A removed client is forgotten entirely, so
    memory stays bounded by the live peers.
    """

    def __init__(self) -> None:
        self._states: dict[int, AwarenessEntry] = {}
        self._updated: dict[int, float] = {}  # when each state was last set
        self._owned_by_peer: dict[Hashable, int] = {}
        self._owners: dict[int, set[Hashable]] = {}

    def __len__(self) -> int:
        return len(self._states)

    def entries(self) -> list[AwarenessEntry]:
        return list(self._states.values())

    def owned_client_id(self, peer: Hashable) -> int | None:
        return self._owned_by_peer.get(peer)

    def receive(
        self, peer: Hashable, entries: list[AwarenessEntry], now: float = 0.0
    ) -> list[AwarenessEntry]:
        """Apply what ``peer`` sent; return the entries that changed (to broadcast)."""
        owned = self._owned_by_peer.get(peer)
        if owned is None and len(entries) == 1 and entries[0].state is not None:
            owned = entries[0].client_id
            self._owned_by_peer[peer] = owned
            self._owners.setdefault(owned, set()).add(peer)
        changed = []
        for entry in entries:
            if entry.client_id != owned:
                if entry.state is not None:
                    continue  # an echo of someone else's state, or impersonation
                if self._owners.get(entry.client_id):
                    continue  # a live connection vouches for that client
            if self._apply(entry, now):
                changed.append(entry)
        return changed

    def apply_remote(self, entries: list[AwarenessEntry], now: float) -> list[AwarenessEntry]:
        """Entries relayed by another server node: clock rules only (that node checked
        ownership); return the ones that changed."""
        return [entry for entry in entries if self._apply(entry, now)]

    def local_entries(self) -> list[AwarenessEntry]:
        """States owned by this node's connections (what it answers a cluster query with)."""
        return [self._states[cid] for cid in self._owners if cid in self._states]

    def expire(self, now: float, timeout: float) -> list[AwarenessEntry]:
        """Remove states nobody here owns that were not renewed within ``timeout`` (clients of
        a node that died); return the removals to broadcast."""
        removals = []
        for client_id, updated in list(self._updated.items()):
            if client_id not in self._owners and now - updated > timeout:
                entry = self._states.pop(client_id)
                del self._updated[client_id]
                removals.append(AwarenessEntry(client_id, entry.clock, None))
        return removals

    def peer_left(self, peer: Hashable) -> list[AwarenessEntry]:
        """Forget ``peer``; return the removal to broadcast, unless another peer owns its id."""
        client_id = self._owned_by_peer.pop(peer, None)
        if client_id is None:
            return []
        owners = self._owners[client_id]
        owners.discard(peer)
        if owners:
            return []
        del self._owners[client_id]
        current = self._states.pop(client_id, None)
        self._updated.pop(client_id, None)
        if current is None:
            return []
        return [AwarenessEntry(client_id, current.clock, None)]

    def _apply(self, entry: AwarenessEntry, now: float) -> bool:
        current = self._states.get(entry.client_id)
        current_clock = 0 if current is None else current.clock
        if entry.state is None:
            if current is None or entry.clock < current_clock:
                return False
            del self._states[entry.client_id]
            del self._updated[entry.client_id]
            return True
        if entry.clock <= current_clock:
            return False
        self._states[entry.client_id] = entry
        self._updated[entry.client_id] = now
        return True
