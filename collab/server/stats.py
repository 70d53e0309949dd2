"""Plain counters bumped on the hot path (an attribute add, no locks); /metrics reads them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class ServerStats:
    updates_in: int = 0  # updates that reached apply (duplicates included)
    update_bytes_in: int = 0
    duplicate_updates: int = 0
    update_batches: int = 0  # transactions that applied a turn's updates (updates_in / this)
    fanout_messages: int = 0  # update messages queued to other connections
    awareness_in: int = 0
    connections_opened: Counter[str] = field(default_factory=Counter)  # by transport
    closes: Counter[int] = field(default_factory=Counter)  # by close code
