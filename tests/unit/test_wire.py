"""The strict y-websocket codec: reference byte vectors, round trips, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab.protocol.wire import (
    KEEP_ALIVE,
    MAX_VAR_UINT,
    AwarenessMessage,
    CloseCode,
    PermissionDenied,
    ProtocolError,
    QueryAwareness,
    Reader,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
    encode_var_string,
    encode_var_uint,
)

VAR_UINT_VECTORS = {
    0: "00",
    1: "01",
    127: "7f",
    128: "80 01",
    300: "ac 02",
    16383: "ff 7f",
    16384: "80 80 01",
    2**32: "80 80 80 80 10",
    2**53 - 1: "ff ff ff ff ff ff ff 0f",
}


@pytest.mark.parametrize(("value", "hex_bytes"), VAR_UINT_VECTORS.items())
def test_var_uint_matches_lib0(value: int, hex_bytes: str) -> None:
    assert encode_var_uint(value) == bytes.fromhex(hex_bytes)
    assert Reader(bytes.fromhex(hex_bytes)).var_uint() == value


def test_var_string_counts_utf8_bytes_not_characters() -> None:
    assert encode_var_string("Zoë😀") == bytes.fromhex("08 5a 6f c3 ab f0 9f 98 80")


MESSAGE_VECTORS = [
    ("00 00 01 00", SyncStep1(b"\x00")),
    ("00 00 03 01 01 02", SyncStep1(bytes.fromhex("01 01 02"))),
    (
        "00 01 0c 01 01 01 00 04 01 01 74 02 68 69 00",
        SyncStep2(bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00")),
    ),
    ("00 02 02 00 00", SyncUpdate(b"\x00\x00")),
    ("01 08 01 01 01 04 6e 75 6c 6c", AwarenessMessage(bytes.fromhex("01 01 01 04 6e 75 6c 6c"))),
    ("02 00 09 72 65 61 64 2d 6f 6e 6c 79", PermissionDenied("read-only")),
    ("03", QueryAwareness()),
    ("01 01 00", AwarenessMessage(b"\x00")),
]


@pytest.mark.parametrize(("hex_bytes", "message"), MESSAGE_VECTORS)
def test_reference_messages_decode_and_encode_byte_for_byte(hex_bytes: str, message) -> None:
    data = bytes.fromhex(hex_bytes)
    assert decode_message(data) == message
    assert encode_message(message) == data


def test_awareness_vector_with_json_state() -> None:
    state = '{"user":{"name":"Zoë"}}'.encode()
    payload = bytes.fromhex("01 01 01") + bytes([len(state)]) + state
    data = bytes.fromhex("01 1c") + payload
    assert decode_message(data) == AwarenessMessage(payload)


def test_keep_alive_is_an_empty_awareness_update() -> None:
    assert decode_message(KEEP_ALIVE) == AwarenessMessage(b"\x00")


@pytest.mark.parametrize(
    ("hex_bytes", "reason"),
    [
        ("", "truncated varUint"),
        ("00", "truncated varUint"),
        ("00 00", "truncated varUint"),
        ("00 00 05 00", "length prefix exceeds"),
        ("00 00 01 00 ff", "trailing bytes"),
        ("00 07 01 00", "unknown sync message type"),
        ("09", "unknown message type"),
        ("03 00", "trailing bytes"),
        ("02 05", "unknown auth message type"),
        ("02 00 02 c3 28", "not valid UTF-8"),
        ("80 80 80 80 80 80 80 80 01", "longer than 8 bytes"),
        ("ff ff ff ff ff ff ff 7f", r"larger than 2\^53"),
        ("83 00", "not minimally encoded"),
    ],
)
def test_malformed_frames_are_rejected_with_4400(hex_bytes: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason) as caught:
        decode_message(bytes.fromhex(hex_bytes))
    assert caught.value.code == CloseCode.BAD_REQUEST


def test_oversized_frames_are_rejected_with_4413() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_message(bytes(1001), max_size=1000)
    assert caught.value.code == CloseCode.TOO_LARGE


def test_var_uint_out_of_range_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode_var_uint(MAX_VAR_UINT + 1)
    with pytest.raises(ValueError):
        encode_var_uint(-1)


messages = st.one_of(
    st.binary(max_size=300).map(SyncStep1),
    st.binary(max_size=300).map(SyncStep2),
    st.binary(max_size=300).map(SyncUpdate),
    st.binary(max_size=300).map(AwarenessMessage),
    st.text(max_size=100).map(PermissionDenied),
    st.just(QueryAwareness()),
)


@given(messages)
def test_every_message_round_trips(message) -> None:
    assert decode_message(encode_message(message)) == message


@given(st.integers(min_value=0, max_value=MAX_VAR_UINT))
def test_every_var_uint_round_trips(value: int) -> None:
    reader = Reader(encode_var_uint(value))
    assert reader.var_uint() == value
    assert reader.at_end()


@given(st.binary(max_size=200))
def test_arbitrary_bytes_either_decode_exactly_or_raise_protocol_error(data: bytes) -> None:
    try:
        message = decode_message(data)
    except ProtocolError:
        return
    assert encode_message(message) == data


@given(messages, st.binary(min_size=1, max_size=20))
def test_trailing_bytes_are_never_accepted(message, junk: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_message(encode_message(message) + junk)


@given(messages, st.data())
def test_truncated_messages_are_never_accepted(message, data) -> None:
    encoded = encode_message(message)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(ProtocolError):
        decode_message(encoded[:cut])
