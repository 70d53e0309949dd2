"""RFC 6455 framing as the server sees it (sans-I/O): client frames in, server frames out.

The parser is strict: client frames must be masked, control frames short and unfragmented,
reserved bits unset (RSV1 only on a compressed message when permessage-deflate was agreed),
and a message larger than the limit is refused from its frame header, before its payload is
buffered. Every violation raises ProtocolError with the close code to answer.
"""

from __future__ import annotations

import functools
import struct
import zlib

from collab.protocol.wire import CloseCode, ProtocolError

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPCODES = (CONTINUATION, TEXT, BINARY)
_CONTROL_OPCODES = (CLOSE, PING, PONG)
_DEFLATE_TAIL = b"\x00\x00\xff\xff"
MAX_CONTROL_PAYLOAD = 125
MAX_CLOSE_REASON_BYTES = MAX_CONTROL_PAYLOAD - 2
# Codes a peer may send in a close frame (RFC 6455 §7.4; 1004-1006 and 1015 are reserved).
_VALID_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                1013, 1014))  # fmt: skip


def _protocol_error(reason: str) -> ProtocolError:
    return ProtocolError(reason, CloseCode.PROTOCOL_ERROR)


class FrameParser:
    """Turns the bytes of one connection into whole messages: ``(opcode, payload)`` pairs.

    Fragmented messages are reassembled; control frames between fragments come out in
    order. An idle parser holds no buffer.
    """

    __slots__ = ("_buffer", "_compressed", "_deflate", "_fragments", "_message_opcode",
                 "_message_size", "_needed", "max_message_bytes")  # fmt: skip

    def __init__(self, max_message_bytes: int, deflate: bool = False) -> None:
        self.max_message_bytes = max_message_bytes
        self._deflate = deflate
        self._buffer: list[bytes] = []  # received bytes not yet parsed
        self._needed = 0  # how many the frame they start needs (0: a header's worth)
        self._fragments: list[bytes] | None = None  # payloads of an unfinished message
        self._message_opcode = 0
        self._message_size = 0
        self._compressed = False

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The messages completed by ``data``. A large frame arriving in many reads is joined
        once, when complete, not copied again on every read."""
        if self._buffer:
            self._buffer.append(data)
            self._needed -= len(data)
            if self._needed > 0:
                return []
            data = b"".join(self._buffer)
            self._buffer = []
        buffer = data
        messages: list[tuple[int, bytes]] = []
        pos, end = 0, len(buffer)
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            header = 6
            if length == 126:
                header = 8
                if end - pos < header:
                    break
                (length,) = struct.unpack_from("!H", buffer, pos + 2)
            elif length == 127:
                header = 14
                if end - pos < header:
                    break
                (length,) = struct.unpack_from("!Q", buffer, pos + 2)
            if not second & 0x80:
                raise _protocol_error("client frames must be masked")
            self._check_header(first, length)
            if end - pos < header + length:
                self._needed = header + length - (end - pos)
                break
            mask = buffer[pos + header - 4 : pos + header]
            payload = _unmask(buffer[pos + header : pos + header + length], mask)
            pos += header + length
            message = self._frame(first, payload)
            if message is not None:
                messages.append(message)
        if pos < end:
            self._buffer = [buffer[pos:]]
            if self._needed <= 0:
                self._needed = 1  # a header's remainder: parse again on the next read
        else:
            self._needed = 0
        return messages

    def _check_header(self, first: int, length: int) -> None:
        opcode = first & 0x0F
        if first & 0x30 or (first & 0x40 and not (self._deflate and opcode in (TEXT, BINARY))):
            raise _protocol_error("reserved bits set")
        if opcode in _CONTROL_OPCODES:
            if not first & 0x80 or length > MAX_CONTROL_PAYLOAD:
                raise _protocol_error("control frames must be unfragmented and short")
            return
        if opcode not in _DATA_OPCODES:
            raise _protocol_error(f"unknown opcode {opcode}")
        if (opcode == CONTINUATION) != (self._fragments is not None):
            raise _protocol_error("unexpected continuation or interleaved message")
        if self._message_size + length > self.max_message_bytes:
            raise ProtocolError("message too large", CloseCode.TOO_LARGE)

    def _frame(self, first: int, payload: bytes) -> tuple[int, bytes] | None:
        opcode = first & 0x0F
        if opcode in _CONTROL_OPCODES:
            return opcode, payload
        if opcode != CONTINUATION:
            self._message_opcode = opcode
            self._compressed = bool(first & 0x40)
        if not first & 0x80:  # more fragments follow
            if self._fragments is None:
                self._fragments = []
            self._fragments.append(payload)
            self._message_size += len(payload)
            return None
        if self._fragments is not None:
            self._fragments.append(payload)
            payload = b"".join(self._fragments)
            self._fragments, self._message_size = None, 0
        if self._compressed:
            payload = self._inflate(payload)
        return self._message_opcode, payload

    def _inflate(self, payload: bytes) -> bytes:
        """Each message on its own (client_no_context_takeover was agreed): no state kept."""
        inflater = zlib.decompressobj(-15)
        try:
            data = inflater.decompress(payload + _DEFLATE_TAIL, self.max_message_bytes + 1)
        except zlib.error as exc:
            raise ProtocolError("invalid compressed message", CloseCode.BAD_REQUEST) from exc
        if len(data) > self.max_message_bytes or inflater.unconsumed_tail:
            raise ProtocolError("message too large", CloseCode.TOO_LARGE)
        return data


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the repeating 4-byte mask, done as one big-integer XOR (C speed)."""
    length = len(payload)
    if not length:
        return b""
    key = (bytes(mask) * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        length, "little"
    )


def parse_close(payload: bytes) -> tuple[int, str]:
    """The code and reason of a client's close frame; 1005 (none given) for an empty one."""
    if not payload:
        return CloseCode.NO_STATUS, ""
    if len(payload) < 2:
        raise _protocol_error("close frame with a 1-byte payload")
    (code,) = struct.unpack_from("!H", payload)
    if code not in _VALID_CLOSE_CODES and not 3000 <= code <= 4999:
        raise _protocol_error(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("close reason is not UTF-8", CloseCode.INVALID_DATA) from exc
    return code, reason


def frame(opcode: int, payload: bytes, *, compressed: bool = False) -> bytes:
    """One unmasked, unfragmented frame: what a server sends."""
    first = 0x80 | opcode | (0x40 if compressed else 0)
    length = len(payload)
    if length < 126:
        header = bytes((first, length))
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


@functools.lru_cache(maxsize=4)
def binary_frame(payload: bytes) -> bytes:
    """A broadcast hands every peer the same bytes object, so its frame is built once."""
    return frame(BINARY, payload)


@functools.lru_cache(maxsize=4)
def deflated_binary_frame(payload: bytes, window_bits: int) -> bytes:
    """permessage-deflate without context takeover: the same compressed frame for every peer."""
    deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
    data = deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)
    return frame(BINARY, data.removesuffix(_DEFLATE_TAIL), compressed=True)


def close_frame(code: int, reason: str = "") -> bytes:
    encoded = reason.encode("utf-8")[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")
    return frame(CLOSE, struct.pack("!H", code) + encoded.encode("utf-8"))
