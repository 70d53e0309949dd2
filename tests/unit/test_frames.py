"""RFC 6455 framing as the server parses and writes it."""

from __future__ import annotations

import os
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab.protocol.frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    TEXT,
    FrameParser,
    binary_frame,
    close_frame,
    deflated_binary_frame,
    parse_close,
)
from collab.protocol.wire import CloseCode, ProtocolError


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """A frame as a browser sends it: masked with a random key."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


def feed_in_pieces(parser: FrameParser, data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    messages = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        messages += parser.feed(data[start:cut])
        start = cut
    return messages


@given(
    payloads=st.lists(st.binary(max_size=70_000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
)
def test_messages_come_out_whole_however_the_bytes_are_split(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(client_frame(BINARY, payload) for payload in payloads)
    messages = feed_in_pieces(FrameParser(1 << 20), stream, cuts)
    assert messages == [(BINARY, payload) for payload in payloads]


def test_a_fragmented_message_is_reassembled_around_a_ping() -> None:
    stream = (
        client_frame(BINARY, b"abc", fin=False)
        + client_frame(PING, b"are you there")
        + client_frame(CONTINUATION, b"def", fin=False)
        + client_frame(CONTINUATION, b"ghi")
    )
    assert FrameParser(100).feed(stream) == [(PING, b"are you there"), (BINARY, b"abcdefghi")]


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        (client_frame(BINARY, b"x", masked=False), CloseCode.PROTOCOL_ERROR),
        (client_frame(BINARY, b"x", rsv=0x40), CloseCode.PROTOCOL_ERROR),  # deflate not agreed
        (client_frame(BINARY, b"x", rsv=0x20), CloseCode.PROTOCOL_ERROR),
        (client_frame(0x3, b"x"), CloseCode.PROTOCOL_ERROR),  # reserved opcode
        (client_frame(CONTINUATION, b"x"), CloseCode.PROTOCOL_ERROR),  # nothing to continue
        (
            client_frame(TEXT, b"a", fin=False) + client_frame(BINARY, b"b"),
            CloseCode.PROTOCOL_ERROR,
        ),
        (client_frame(PING, b"x", fin=False), CloseCode.PROTOCOL_ERROR),
        (client_frame(PING, b"x" * 126), CloseCode.PROTOCOL_ERROR),
        (client_frame(BINARY, b"x" * 101), CloseCode.TOO_LARGE),
        (
            client_frame(BINARY, b"x" * 60, fin=False) + client_frame(CONTINUATION, b"x" * 41),
            CloseCode.TOO_LARGE,
        ),
    ],
    ids=[
        "unmasked",
        "rsv1",
        "rsv2",
        "opcode",
        "continuation",
        "interleaved",
        "ping-fragment",
        "long-ping",
        "too-large",
        "too-large-in-fragments",
    ],
)
def test_frames_that_break_the_rules_are_refused(stream: bytes, code: CloseCode) -> None:
    with pytest.raises(ProtocolError) as refused:
        FrameParser(100).feed(stream)
    assert refused.value.code == code


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    header_only = struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 40) + os.urandom(4)
    with pytest.raises(ProtocolError) as refused:
        FrameParser(32 << 20).feed(header_only)
    assert refused.value.code == CloseCode.TOO_LARGE


def test_compressed_messages_are_inflated_when_deflate_was_agreed() -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflater.compress(b"hello " * 100) + deflater.flush(zlib.Z_SYNC_FLUSH)
    stream = client_frame(BINARY, body.removesuffix(b"\x00\x00\xff\xff"), rsv=0x40)
    assert FrameParser(1000, deflate=True).feed(stream) == [(BINARY, b"hello " * 100)]


def test_a_compressed_message_that_inflates_past_the_limit_is_refused() -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = deflater.compress(b"\x00" * 1_000_000) + deflater.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(ProtocolError) as refused:
        FrameParser(1000, deflate=True).feed(client_frame(BINARY, bomb, rsv=0x40))
    assert refused.value.code == CloseCode.TOO_LARGE


@given(st.binary(max_size=70_000))
def test_server_frames_are_unmasked_and_whole(payload: bytes) -> None:
    frame = binary_frame(payload)
    assert frame[0] == 0x82 and not frame[1] & 0x80
    assert frame.endswith(payload)
    header = 2 if len(payload) < 126 else 4 if len(payload) < 1 << 16 else 10
    assert len(frame) == header + len(payload)


def test_a_deflated_frame_inflates_back_to_its_payload() -> None:
    payload = b"\x00\x02\x05hello" * 50
    frame = deflated_binary_frame(payload, 15)
    assert frame[0] == 0xC2  # FIN, RSV1 (compressed), binary
    assert frame[1] < 126  # 550 bytes of repetition compress well
    inflater = zlib.decompressobj(-15)
    assert inflater.decompress(frame[2:] + b"\x00\x00\xff\xff") == payload


def test_close_frames_carry_code_and_a_reason_cut_to_fit() -> None:
    frame = close_frame(4400, "é" * 100)
    assert frame[0] == 0x88 and frame[1] <= 125
    code, reason = parse_close(frame[2:])
    assert code == 4400 and reason == "é" * 61


@pytest.mark.parametrize("payload", [b"\x03", struct.pack("!H", 1005), struct.pack("!H", 999)])
def test_invalid_close_payloads_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_close(payload)


def test_a_close_without_a_code_reports_1005() -> None:
    assert parse_close(b"") == (CloseCode.NO_STATUS, "")
    assert FrameParser(10).feed(client_frame(CLOSE, b"")) == [(CLOSE, b"")]
