"""Presence rules: y-protocols clocks, connection ownership, only changes are broadcast."""

from __future__ import annotations

import pytest

from collab.protocol.awareness import (
    AwarenessEntry,
    RoomAwareness,
    decode_awareness_update,
    encode_awareness_update,
)
from collab.protocol.wire import ProtocolError, encode_var_bytes

A, B = "conn-a", "conn-b"


def entry(client_id: int, clock: int, state: str | None = '{"user":"x"}') -> AwarenessEntry:
    return AwarenessEntry(client_id, clock, state)


def test_codec_round_trips_and_matches_the_reference_removal_bytes() -> None:
    removal = [entry(1, 1, None)]
    assert encode_awareness_update(removal) == bytes.fromhex("01 01 01 04 6e 75 6c 6c")
    assert decode_awareness_update(encode_awareness_update(removal), 100) == removal
    states = [entry(7, 3, '{"a":[1,2]}'), entry(2**40, 9, '"Zoë"')]
    assert decode_awareness_update(encode_awareness_update(states), 100) == states


@pytest.mark.parametrize(
    "state", ["{not json", "[" * 100_000 + "]" * 100_000, "\udcff"], ids=["junk", "deep", "utf8"]
)
def test_invalid_states_are_rejected(state: str) -> None:
    payload = b"\x01\x01\x01" + encode_var_bytes(state.encode("utf-8", "surrogatepass"))
    with pytest.raises(ProtocolError):
        decode_awareness_update(payload, 1 << 30)


def test_oversized_state_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="larger than"):
        decode_awareness_update(encode_awareness_update([entry(1, 1, '"' + "x" * 100 + '"')]), 64)


def test_absurd_entry_count_is_rejected_before_allocating() -> None:
    with pytest.raises(ProtocolError):
        decode_awareness_update(b"\xff\xff\xff\x07", 100)


def test_newer_clock_wins_and_equal_clock_state_is_an_echo() -> None:
    room = RoomAwareness()
    assert room.receive(A, [entry(1, 1)]) == [entry(1, 1)]
    assert room.receive(A, [entry(1, 1)]) == []  # echo: nothing to broadcast
    assert room.receive(A, [entry(1, 2, '{"c":1}')]) == [entry(1, 2, '{"c":1}')]
    assert room.receive(A, [entry(1, 1, '{"old":1}')]) == []
    assert room.entries() == [entry(1, 2, '{"c":1}')]


def test_first_state_at_clock_zero_is_ignored_like_y_protocols() -> None:
    room = RoomAwareness()
    assert room.receive(A, [entry(1, 0)]) == []
    assert room.owned_client_id(A) == 1


def test_a_connection_owns_the_client_of_its_first_single_entry_update() -> None:
    room = RoomAwareness()
    room.receive(A, [entry(1, 1)])
    room.receive(B, [entry(2, 1)])
    # B echoes A's state back and tries to set a state for client 1: both dropped.
    assert room.receive(B, [entry(1, 5, '{"evil":1}'), entry(2, 2)]) == [entry(2, 2)]
    assert room.owned_client_id(A) == 1 and room.owned_client_id(B) == 2


def test_removal_of_a_client_vouched_for_by_a_live_connection_is_ignored() -> None:
    room = RoomAwareness()
    room.receive(A, [entry(1, 1)])
    room.receive(B, [entry(2, 1)])
    assert room.receive(B, [entry(1, 1, None)]) == []
    assert len(room) == 2


def test_removal_of_an_orphan_client_is_accepted() -> None:
    room = RoomAwareness()
    room.receive(A, [entry(1, 1)])
    room.receive(A, [entry(9, 4), entry(1, 2)])  # multi-entry: 9 not owned, state dropped
    assert [e.client_id for e in room.entries()] == [1]


def test_leaving_removes_the_owned_state_at_its_last_clock() -> None:
    room = RoomAwareness()
    room.receive(A, [entry(1, 1)])
    room.receive(A, [entry(1, 4)])
    assert room.peer_left(A) == [entry(1, 4, None)]
    assert len(room) == 0
    assert room.peer_left(A) == []


def test_leaving_keeps_a_state_another_connection_of_the_same_client_owns() -> None:
    room = RoomAwareness()
    room.receive(A, [entry(1, 1)])
    room.receive(B, [entry(1, 2)])  # the same client reconnected over another transport
    assert room.peer_left(A) == []
    assert room.entries() == [entry(1, 2)]
    assert room.peer_left(B) == [entry(1, 2, None)]


def test_own_removal_is_broadcast() -> None:
    room = RoomAwareness()
    room.receive(A, [entry(1, 3)])
    assert room.receive(A, [entry(1, 3, None)]) == [entry(1, 3, None)]
    assert room.peer_left(A) == []


def test_remote_entries_follow_clock_rules_without_ownership() -> None:
    room = RoomAwareness()
    assert room.apply_remote([entry(5, 2)], now=0) == [entry(5, 2)]
    assert room.apply_remote([entry(5, 1, '{"old":1}')], now=0) == []
    assert room.local_entries() == []
    room.receive(A, [entry(1, 1)], now=0)
    assert room.local_entries() == [entry(1, 1)]


def test_unrenewed_remote_states_expire_but_local_ones_stay() -> None:
    room = RoomAwareness()
    room.receive(A, [entry(1, 1)], now=0)
    room.apply_remote([entry(5, 2)], now=0)
    room.apply_remote([entry(6, 2)], now=20)
    assert room.expire(now=31, timeout=30) == [entry(5, 2, None)]
    assert sorted(e.client_id for e in room.entries()) == [1, 6]
