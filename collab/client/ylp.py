"""YLP/1 client side, sans-I/O: the up-stream buffer and the request/response bodies.

Up-stream, frames are numbered ``useq = 1, 2, ...`` and kept until the server acknowledges
them; each POST carries every unacknowledged frame (within the size limits), so a retried POST
is de-duplicated by the server and a lost response loses nothing. Down-stream needs no buffer:
the client polls with ``ack`` = the last frame it processed and the server resends the rest.
"""

from __future__ import annotations

from collections import deque

import msgpack

MAX_FRAMES_PER_POST = 256
_FRAME_OVERHEAD = 5  # msgpack bin32 header
_BODY_OVERHEAD = 16  # array header and first_useq


class YlpError(Exception):
    """The server's answer does not fit YLP/1 (or its own earlier answers)."""


class FrameTooLarge(YlpError):
    """One frame does not fit in a POST of ``max_post_bytes``: it can never be sent."""


class Upstream:
    """Frames waiting for the server's cumulative ack."""

    def __init__(self, max_post_bytes: int, max_frames: int = MAX_FRAMES_PER_POST) -> None:
        self._frames: deque[bytes] = deque()
        self._first_useq = 1  # useq of self._frames[0]
        self._max_bytes = max_post_bytes
        self._max_frames = max_frames

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes) -> None:
        if len(frame) + _FRAME_OVERHEAD + _BODY_OVERHEAD > self._max_bytes:
            raise FrameTooLarge(f"a frame of {len(frame)} bytes exceeds max_post_bytes")
        self._frames.append(frame)

    def batch(self) -> tuple[int, list[bytes]]:
        """``(first_useq, frames)`` for the next POST: the oldest unacked frames that fit."""
        frames: list[bytes] = []
        size = _BODY_OVERHEAD
        for frame in self._frames:
            size += len(frame) + _FRAME_OVERHEAD
            if len(frames) == self._max_frames or size > self._max_bytes:
                break
            frames.append(frame)
        return self._first_useq, frames

    def acked(self, last_useq: int) -> None:
        """The server has processed every frame up to ``last_useq``."""
        if last_useq < self._first_useq - 1:
            raise YlpError(f"ack {last_useq} is behind the earlier ack {self._first_useq - 1}")
        if last_useq >= self._first_useq + len(self._frames):
            raise YlpError(f"ack {last_useq} is beyond the last frame sent")
        while self._first_useq <= last_useq:
            self._frames.popleft()
            self._first_useq += 1


def encode_send_body(first_useq: int, frames: list[bytes]) -> bytes:
    return msgpack.packb([first_useq, frames], use_bin_type=True)


def decode_send_ack(body: bytes) -> int:
    """``[last_useq]``."""
    value = _unpack(body)
    if not (isinstance(value, list) and len(value) == 1 and _is_seq(value[0])):
        raise YlpError("send answer is not [last_useq]")
    return value[0]


def decode_poll_body(body: bytes) -> tuple[int, list[bytes]]:
    """``[first_dseq, [frame, ...]]``."""
    value = _unpack(body)
    if not (isinstance(value, list) and len(value) == 2 and _is_seq(value[0])):
        raise YlpError("poll answer is not [first_dseq, frames]")
    first, frames = value
    if not (isinstance(frames, list) and all(type(frame) is bytes for frame in frames)):
        raise YlpError("poll answer frames are not binaries")
    return first, frames


def _is_seq(value: object) -> bool:
    return type(value) is int and value >= 0


def _unpack(body: bytes) -> object:
    try:
        return msgpack.unpackb(body, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise YlpError("body is not msgpack") from exc
