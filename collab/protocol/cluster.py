"""What nodes of a cluster tell each other about a document (sans-I/O).

Payload on the document's channel: msgpack ``[1, kind, node_id, seq, payload]``; kind 0 is a
stored update with its per-document ``seq``, kind 1 an awareness update, kind 2 a request for
every node's local presence states. Pub/sub loses messages while a subscriber is disconnected,
so receivers track which sequence numbers they have applied and catch up from the store when
a gap stays open.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import msgpack

VERSION = 1


class Kind(IntEnum):
    UPDATE = 0
    AWARENESS = 1
    QUERY_AWARENESS = 2


@dataclass(frozen=True, slots=True)
class BusMessage:
    kind: Kind
    node_id: str
    seq: int
    payload: bytes


def encode_bus_message(message: BusMessage) -> bytes:
    return msgpack.packb(
        [VERSION, int(message.kind), message.node_id, message.seq, message.payload],
        use_bin_type=True,
    )


def decode_bus_message(data: bytes) -> BusMessage | None:
    """None for anything this version does not understand (other versions, garbage)."""
    try:
        version, kind, node_id, seq, payload = msgpack.unpackb(data, raw=False)
        if version != VERSION or not isinstance(node_id, str) or type(seq) is not int:
            return None
        if type(payload) is not bytes:
            return None
        return BusMessage(Kind(kind), node_id, seq, payload)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return None


class AppliedSeqs:
    """Which stored updates of a document this node has applied: every seq up to
    ``contiguous``, plus some beyond it (its own commits, early arrivals)."""

    def __init__(self, contiguous: int = 0) -> None:
        self.contiguous = contiguous
        self._ahead: set[int] = set()

    def __contains__(self, seq: int) -> bool:
        return seq <= self.contiguous or seq in self._ahead

    @property
    def has_gap(self) -> bool:
        return bool(self._ahead)

    def mark(self, seq: int) -> None:
        if seq <= self.contiguous:
            return
        self._ahead.add(seq)
        while self.contiguous + 1 in self._ahead:
            self.contiguous += 1
            self._ahead.discard(self.contiguous)

    def caught_up_to(self, seq: int) -> None:
        """Everything up to ``seq`` was read from the store and applied."""
        if seq > self.contiguous:
            self.contiguous = seq
            self._ahead = {s for s in self._ahead if s > seq}
            self.mark(seq)
