"""YLP/1 state machines: retained down-stream frames, exactly-once up-stream frames."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab.protocol.longpoll import (
    Downstream,
    LongPollError,
    Upstream,
    UpstreamGap,
    decode_send_body,
    encode_poll_response,
    encode_send_ack,
    parse_ack,
)


def test_wire_bytes_match_the_protocol_notes() -> None:
    response = encode_poll_response(7, [b"\x00\x00\x01\x00", b"\x01\x01\x00"])
    assert response.hex(" ") == "92 07 92 c4 04 00 00 01 00 c4 03 01 01 00"
    assert encode_poll_response(5, []).hex(" ") == "92 05 90"
    assert encode_send_ack(9).hex(" ") == "91 09"


def test_frames_are_retained_until_acked_and_batches_are_capped() -> None:
    down = Downstream()
    for frame in (b"a" * 10, b"b" * 10, b"c" * 10):
        down.push(frame)
    assert down.batch(15) == [b"a" * 10]
    assert down.batch(1) == [b"a" * 10]  # at least one frame, whatever its size
    assert down.batch(100) == [b"a" * 10, b"b" * 10, b"c" * 10]
    down.ack(2)
    assert down.batch(100) == [b"c" * 10] and down.retained_bytes == 10
    down.ack(2)  # a repeated ack is harmless
    assert down.last_dseq == 3


@pytest.mark.parametrize("ack", [0, 4])
def test_acks_behind_or_beyond_are_refused(ack: int) -> None:
    down = Downstream()
    for frame in (b"a", b"b", b"c"):
        down.push(frame)
    down.ack(1)
    with pytest.raises(LongPollError) as caught:
        down.ack(ack)
    assert caught.value.status == 400


def test_upstream_applies_each_frame_once_and_reports_gaps() -> None:
    up = Upstream()
    for _ in up.accept(1, [b"1", b"2"]):
        up.processed()
    assert up.last_useq == 2
    assert up.accept(1, [b"1", b"2", b"3"]) == [b"3"]
    assert up.accept(2, [b"2"]) == []
    with pytest.raises(UpstreamGap) as gap:
        up.accept(4, [b"4"])
    assert gap.value.last_useq == 2


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(1, 2**53 - 1))
def test_send_bodies_round_trip(frames: list[bytes], first: int) -> None:
    assert decode_send_body(msgpack.packb([first, frames], use_bin_type=True), 256) == (
        first,
        frames,
    )


@given(st.binary(max_size=100))
def test_garbage_bodies_are_400(body: bytes) -> None:
    try:
        decode_send_body(body, 256)
    except LongPollError as exc:
        assert exc.status == 400


@pytest.mark.parametrize(("text", "value"), [(None, 0), ("0", 0), ("42", 42)])
def test_acks_parse(text: str | None, value: int) -> None:
    assert parse_ack(text) == value


@pytest.mark.parametrize("text", ["-1", "", "x", "1.0", "9" * 20, "٣"])
def test_bad_acks_are_400(text: str) -> None:
    with pytest.raises(LongPollError):
        parse_ack(text)
