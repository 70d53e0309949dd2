"""Remote changes as plain data, and the streams that hand them to ``session.changes()``.

Who made a change: a Yjs update carries the clientID of every struct it inserts, and a
y-websocket client uses its document's clientID as its awareness clientID, so comparing the
state vectors before and after applying an update names the authors of its insertions, and the
awareness states name the people behind them. A change that only deletes cannot be attributed:
Yjs records what was deleted, not by whom (``clients`` is then empty).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collab.protocol.wire import Reader

log = logging.getLogger(__name__)

MAX_QUEUED_CHANGES = 10_000


@dataclass(frozen=True, slots=True)
class RootEvent:
    """What changed inside one typed root (see ``Session.text``/``map``/``array``/``xml``).

    ``path`` leads from the root to the changed shared type. Sequences (text, array, xml)
    carry a Yjs ``delta`` (for text, ``retain``/``delete`` count UTF-8 bytes, as pycrdt does);
    maps and xml attributes carry ``keys`` (``{key: {"action", "oldValue", "newValue"}}``).
    """

    root: str
    path: tuple[str | int, ...]
    delta: list[dict[str, Any]] | None = None
    keys: dict[str, dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One remote update applied to the local document."""

    update: bytes  # the Yjs v1 update, as applied
    clients: frozenset[int]  # clientIDs whose insertions it carries
    users: Mapping[int, Any] = field(default_factory=dict)  # their awareness states, if known
    events: tuple[RootEvent, ...] = ()  # per typed root
    initial: bool = False  # True when it came in a sync step 2 (first sync or resync)

    @property
    def names(self) -> list[str]:
        """Display names of the authors, from their awareness ``user.name`` (when known)."""
        names = []
        for state in self.users.values():
            user = state.get("user") if isinstance(state, dict) else None
            if isinstance(user, dict) and isinstance(user.get("name"), str):
                names.append(user["name"])
        return sorted(names)


def decode_state_vector(data: bytes) -> dict[int, int]:
    """``varUint(n) ‖ n × (clientID, clock)``: how much of each client a document holds."""
    reader = Reader(data)
    vector = {}
    for _ in range(reader.var_uint()):
        client_id = reader.var_uint()
        vector[client_id] = reader.var_uint()
    reader.expect_end()
    return vector


def clients_added(before: bytes, after: bytes) -> frozenset[int]:
    """ClientIDs whose clock advanced between two encoded state vectors."""
    old = decode_state_vector(before)
    return frozenset(c for c, clock in decode_state_vector(after).items() if clock > old.get(c, 0))


def plain(value: Any) -> Any:
    """Shared types in events become Python values (they are only valid in the callback)."""
    to_py = getattr(value, "to_py", None)
    if callable(to_py):
        return to_py()
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


class ChangeStream:
    """``async for change in session.changes()``: every remote change from its creation on.

    Bounded: a consumer that falls more than 10 000 changes behind loses the oldest ones (the
    document itself is always complete; only the notifications are dropped), with a warning.
    Ends when the session closes; raises the session's error if it failed.
    """

    def __init__(
        self, maxlen: int = MAX_QUEUED_CHANGES, on_error: Callable[[], None] = lambda: None
    ) -> None:
        self._on_error = on_error  # the session's error has reached its owner
        self._queue: deque[Change] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self._ended = False
        self._error: BaseException | None = None
        self._dropped = 0

    def push(self, change: Change) -> None:
        if len(self._queue) == self._queue.maxlen:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("a change stream is not consumed; dropping its oldest changes")
        self._queue.append(change)
        self._ready.set()

    def end(self, error: BaseException | None = None) -> None:
        """No more changes; once drained, iteration stops, or raises ``error`` if given."""
        if not self._ended:
            self._ended, self._error = True, error
            self._ready.set()

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> Change:
        while not self._queue:
            if self._ended:
                if self._error is not None:
                    self._on_error()
                    raise self._error
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()
