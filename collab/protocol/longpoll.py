"""YLP/1: y-websocket frames over HTTP long-polling (sans-I/O framing and state machines).

Both directions carry sequence numbers and cumulative acks, so a retried or lost HTTP request
never loses or duplicates a frame:

* down-stream, the server numbers frames ``dseq = 1, 2, ...`` and retains them until the client
  acks them with ``GET poll?ack=A`` (answer: ``[A+1, [frame, ...]]``);
* up-stream, the client numbers frames ``useq = 1, 2, ...`` and re-sends every unacked frame in
  ``POST send`` as ``[first_useq, [frame, ...]]``; the server applies only those beyond its
  ``last_useq`` and answers ``[last_useq]``.
"""

from __future__ import annotations

from collections import deque

import msgpack


class LongPollError(Exception):
    """A request the server must refuse: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class UpstreamGap(Exception):
    """The client skipped frames: it must re-send from ``last_useq + 1`` (HTTP 409)."""

    def __init__(self, last_useq: int) -> None:
        super().__init__(f"expected frames from {last_useq + 1}")
        self.last_useq = last_useq


MAX_SEQ = 2**53 - 1


def parse_ack(text: str | None) -> int:
    if text is None:
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > 16 or int(text) > MAX_SEQ:
        raise LongPollError(400, "ack must be a non-negative integer")
    return int(text)


def decode_send_body(body: bytes, max_frames: int) -> tuple[int, list[bytes]]:
    """Parse ``[first_useq, [frame, ...]]``; anything else is a 400."""
    try:
        value = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            max_array_len=max(max_frames, 2),
            max_map_len=0,
            max_str_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise LongPollError(400, "body is not msgpack [first_useq, [frame, ...]]") from exc
    if not (isinstance(value, list | tuple) and len(value) == 2):
        raise LongPollError(400, "body must be a two-element array [first_useq, frames]")
    first_useq, frames = value
    if type(first_useq) is not int or not 1 <= first_useq <= MAX_SEQ:
        raise LongPollError(400, "first_useq must be a positive integer")
    if not isinstance(frames, list | tuple) or len(frames) > max_frames:
        raise LongPollError(400, f"frames must be an array of at most {max_frames} binaries")
    if not all(type(frame) is bytes for frame in frames):
        raise LongPollError(400, "every frame must be a msgpack binary")
    return first_useq, list(frames)


def encode_poll_response(first_dseq: int, frames: list[bytes]) -> bytes:
    return msgpack.packb([first_dseq, frames], use_bin_type=True)


def encode_send_ack(last_useq: int) -> bytes:
    return msgpack.packb([last_useq])


class Downstream:
    """Server -> client frames, retained until acked."""

    def __init__(self) -> None:
        self._frames: deque[bytes] = deque()
        self._first_dseq = 1  # dseq of self._frames[0]
        self.retained_bytes = 0

    @property
    def last_dseq(self) -> int:
        return self._first_dseq + len(self._frames) - 1

    @property
    def retained_frames(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes) -> None:
        self._frames.append(frame)
        self.retained_bytes += len(frame)

    def ack(self, acked: int) -> None:
        """Drop frames up to ``acked``; an ack behind an earlier one or beyond what was sent
        means the client lost track, which no retry can fix."""
        if acked < self._first_dseq - 1:
            raise LongPollError(
                400, f"ack {acked} is behind the acknowledged {self._first_dseq - 1}"
            )
        if acked > self.last_dseq:
            raise LongPollError(400, f"ack {acked} is beyond the last frame sent")
        while self._first_dseq <= acked:
            self.retained_bytes -= len(self._frames.popleft())
            self._first_dseq += 1

    def batch(self, max_bytes: int) -> list[bytes]:
        """Frames after the last ack, up to ``max_bytes`` (always at least one if any)."""
        out: list[bytes] = []
        size = 0
        for frame in self._frames:
            if out and size + len(frame) > max_bytes:
                break
            out.append(frame)
            size += len(frame)
        return out


class Upstream:
    """Client -> server frames: apply each useq exactly once, in order."""

    def __init__(self) -> None:
        self.last_useq = 0

    def accept(self, first_useq: int, frames: list[bytes]) -> list[bytes]:
        """Return the frames not seen before; raise UpstreamGap if some were skipped.
        The caller advances ``last_useq`` with ``processed`` as it handles each one."""
        if first_useq > self.last_useq + 1:
            raise UpstreamGap(self.last_useq)
        return frames[self.last_useq + 1 - first_useq :]

    def processed(self) -> None:
        self.last_useq += 1
