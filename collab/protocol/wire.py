"""Strict codec for the y-websocket dialect of y-protocols (sans-I/O).

Every WebSocket frame (and every YLP/1 frame) carries exactly one message:
``varUint(type) ‖ body``. The decoder is deliberately stricter than pycrdt's helpers: lengths
must match exactly, no trailing bytes are allowed and integers are capped at 2^53 - 1 (the
largest the JS side can represent), so a malformed frame is rejected here, before it can
reach the CRDT.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

MAX_VAR_UINT = 2**53 - 1
_MAX_VAR_UINT_BYTES = 8  # 7 bits per byte: 8 bytes cover 56 bits

EMPTY_UPDATE = b"\x00\x00"
UPDATE_PREFIX = b"\x00\x02"  # message type sync, sync type update


class CloseCode(IntEnum):
    """WebSocket close codes the server uses (4400-4499: the client must not retry)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002  # a malformed WebSocket frame (RFC 6455)
    NO_STATUS = 1005  # a close frame without a code: never sent, only reported
    INVALID_DATA = 1007
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    TOO_LARGE = 4413
    RATE_LIMITED = 4529  # transient: sent faster than allowed; the client backs off
    OVER_CAPACITY = 4503  # transient: too many connections (document or server)


class ProtocolError(ValueError):
    """A frame that violates the protocol; ``code`` is the close code to answer with."""

    def __init__(self, reason: str, code: CloseCode = CloseCode.BAD_REQUEST) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


class SyncType(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


AUTH_PERMISSION_DENIED = 0


@dataclass(frozen=True, slots=True)
class SyncStep1:
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    payload: bytes  # an encoded awareness update, see collab.protocol.awareness


@dataclass(frozen=True, slots=True)
class PermissionDenied:
    reason: str


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


Message = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessMessage | PermissionDenied | QueryAwareness


# -- primitives ---------------------------------------------------------------------------


def encode_var_uint(value: int) -> bytes:
    """Unsigned LEB128, as lib0 writes it."""
    if value < 0 or value > MAX_VAR_UINT:
        raise ValueError(f"varUint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_var_bytes(data: bytes) -> bytes:
    return encode_var_uint(len(data)) + data


def encode_var_string(text: str) -> bytes:
    """Length is the UTF-8 byte count (pycrdt's Encoder writes the character count: wrong)."""
    return encode_var_bytes(text.encode("utf-8"))


class Reader:
    """Cursor over one message; every read checks bounds."""

    __slots__ = ("_data", "pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.pos = 0

    def var_uint(self) -> int:
        data, pos = self._data, self.pos
        if pos < len(data) and data[pos] < 0x80:  # one byte: message types, short lengths
            self.pos = pos + 1
            return data[pos]
        value = 0
        shift = 0
        for index in range(_MAX_VAR_UINT_BYTES):
            if pos + index >= len(data):
                raise ProtocolError("truncated varUint")
            byte = data[pos + index]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if byte == 0 and index > 0:
                    raise ProtocolError("varUint is not minimally encoded")
                if value > MAX_VAR_UINT:
                    raise ProtocolError("varUint larger than 2^53 - 1")
                self.pos = pos + index + 1
                return value
            shift += 7
        raise ProtocolError("varUint longer than 8 bytes")

    def var_bytes(self) -> bytes:
        length = self.var_uint()
        end = self.pos + length
        if end > len(self._data):
            raise ProtocolError("length prefix exceeds the message")
        chunk = self._data[self.pos : end]
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)
        self.pos = end
        return chunk

    def var_string(self) -> str:
        raw = self.var_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("string is not valid UTF-8") from exc

    def at_end(self) -> bool:
        return self.pos == len(self._data)

    def expect_end(self) -> None:
        if not self.at_end():
            raise ProtocolError("trailing bytes after the message")


# -- messages -----------------------------------------------------------------------------


def decode_message(data: bytes, max_size: int | None = None) -> Message:
    """Decode one frame; raise ProtocolError for anything that is not exactly one message."""
    if max_size is not None and len(data) > max_size:
        raise ProtocolError(
            f"message of {len(data)} bytes exceeds the limit of {max_size}", CloseCode.TOO_LARGE
        )
    reader = Reader(data)
    message_type = reader.var_uint()
    message: Message
    if message_type == MessageType.SYNC:
        sync_type = reader.var_uint()
        payload = reader.var_bytes()
        if sync_type == SyncType.STEP1:
            message = SyncStep1(payload)
        elif sync_type == SyncType.STEP2:
            message = SyncStep2(payload)
        elif sync_type == SyncType.UPDATE:
            message = SyncUpdate(payload)
        else:
            raise ProtocolError(f"unknown sync message type {sync_type}")
    elif message_type == MessageType.AWARENESS:
        message = AwarenessMessage(reader.var_bytes())
    elif message_type == MessageType.AUTH:
        auth_type = reader.var_uint()
        if auth_type != AUTH_PERMISSION_DENIED:
            raise ProtocolError(f"unknown auth message type {auth_type}")
        message = PermissionDenied(reader.var_string())
    elif message_type == MessageType.QUERY_AWARENESS:
        message = QueryAwareness()
    else:
        raise ProtocolError(f"unknown message type {message_type}")
    reader.expect_end()
    return message


def encode_message(message: Message) -> bytes:
    match message:
        case SyncStep1(state_vector):
            return encode_sync(SyncType.STEP1, state_vector)
        case SyncStep2(update):
            return encode_sync(SyncType.STEP2, update)
        case SyncUpdate(update):
            return encode_sync(SyncType.UPDATE, update)
        case AwarenessMessage(payload):
            return bytes((MessageType.AWARENESS,)) + encode_var_bytes(payload)
        case PermissionDenied(reason):
            return bytes((MessageType.AUTH, AUTH_PERMISSION_DENIED)) + encode_var_string(reason)
        case QueryAwareness():
            return bytes((MessageType.QUERY_AWARENESS,))
    raise TypeError(f"not a message: {message!r}")


def encode_sync(sync_type: SyncType, payload: bytes) -> bytes:
    return bytes((MessageType.SYNC, sync_type)) + encode_var_bytes(payload)


def encode_update(update: bytes) -> bytes:
    """The hot path of fan-out: ``00 02 varBytes(update)``, built once per update."""
    return encode_sync(SyncType.UPDATE, update)


KEEP_ALIVE = b"\x01\x01\x00"
"""An awareness update with zero entries: a no-op that resets the client's 30 s watchdog."""
