"""Cluster messages and the applied-sequence bookkeeping behind gap detection."""

from __future__ import annotations

import msgpack
import pytest

from collab.protocol.cluster import (
    AppliedSeqs,
    BusMessage,
    Kind,
    decode_bus_message,
    encode_bus_message,
)


def test_messages_round_trip() -> None:
    message = BusMessage(Kind.UPDATE, "node-a", 42, b"\x01\x02")
    assert decode_bus_message(encode_bus_message(message)) == message


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", msgpack.packb([2, 0, "n", 1, b""]), msgpack.packb([1, 9, "n", 1, b""]),
     msgpack.packb([1, 0, 5, 1, b""]), msgpack.packb([1, 0, "n", "1", b""]),
     msgpack.packb([1, 0, "n", 1, "text"]), msgpack.packb([1, 0, "n"])],
)  # fmt: skip
def test_foreign_or_garbage_messages_are_ignored(data: bytes) -> None:
    assert decode_bus_message(data) is None


def test_a_gap_stays_open_until_filled() -> None:
    seqs = AppliedSeqs(10)
    seqs.mark(12)
    assert seqs.has_gap and 12 in seqs and 11 not in seqs
    seqs.mark(11)
    assert not seqs.has_gap and seqs.contiguous == 12


def test_catching_up_from_the_store_closes_gaps() -> None:
    seqs = AppliedSeqs(0)
    for seq in (3, 7, 9):
        seqs.mark(seq)
    seqs.caught_up_to(7)
    assert seqs.contiguous == 7 and seqs.has_gap and 9 in seqs
    seqs.mark(8)
    assert seqs.contiguous == 9 and not seqs.has_gap
