"""The SDK's sans-I/O parts: backoff, presence clock rules, YLP/1 up-stream buffer, text edits."""

from __future__ import annotations

import json

import pytest
from pycrdt import Doc, Text

from collab.client.backoff import Backoff
from collab.client.changes import clients_added, decode_state_vector
from collab.client.presence import OUTDATED_SECONDS, Presence
from collab.client.text import replace_text, utf8_offset
from collab.client.ylp import FrameTooLarge, Upstream, YlpError
from collab.protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)
from collab.protocol.wire import AwarenessMessage, decode_message


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets() -> None:
    low, high = Backoff(rand=lambda: 0.0), Backoff(rand=lambda: 0.999999)
    lows = [low.next_delay() for _ in range(10)]
    highs = [high.next_delay() for _ in range(10)]
    assert lows[:3] == pytest.approx([0.05, 0.1, 0.2])
    assert highs[:3] == pytest.approx([0.1, 0.2, 0.4], rel=1e-5)
    assert max(highs) == pytest.approx(5.0, rel=1e-5)
    assert min(lows[-3:]) == pytest.approx(2.5)
    low.reset()
    assert low.next_delay() == pytest.approx(0.05)


def awareness(*entries: tuple[int, int, dict | None]) -> bytes:
    return encode_awareness_update(
        AwarenessEntry(cid, clock, None if state is None else json.dumps(state))
        for cid, clock, state in entries
    )


def own_entry(message: bytes) -> AwarenessEntry:
    decoded = decode_message(message)
    assert isinstance(decoded, AwarenessMessage)
    (entry,) = decode_awareness_update(decoded.payload, 1 << 20)
    return entry


def test_presence_clock_starts_at_one_and_rises_with_every_message() -> None:
    presence = Presence(1, {"user": {"name": "bot"}})
    sent: list[bytes] = []
    presence.on_publish = sent.append
    first = presence.announce()
    assert first is not None and own_entry(first).clock == 1
    presence.set({"status": "busy"})
    assert own_entry(sent[-1]) == AwarenessEntry(
        1, 2, json.dumps({"user": {"name": "bot"}, "status": "busy"}, separators=(",", ":"))
    )
    presence.clear()
    assert own_entry(sent[-1]) == AwarenessEntry(1, 3, None)
    assert presence.announce() is None


def test_presence_applies_y_protocols_clock_rules() -> None:
    now = [100.0]
    presence = Presence(1, {"user": {"name": "bot"}}, clock=lambda: now[0])
    assert presence.receive(awareness((2, 3, {"n": "a"}))) == (True, None)
    assert presence.receive(awareness((2, 2, {"n": "old"}))) == (False, None)
    assert presence.receive(awareness((2, 3, {"n": "same clock"}))) == (False, None)
    assert presence.peers == {2: {"n": "a"}}
    assert presence.receive(awareness((2, 3, None))) == (True, None)  # removal at equal clock
    assert presence.peers == {}
    assert presence.receive(awareness((1, 5, {"n": "echo of us"}))) == (False, None)
    assert presence.peers == {}


def test_presence_reannounces_when_declared_gone_and_drops_silent_peers() -> None:
    now = [100.0]
    presence = Presence(1, {"user": {"name": "bot"}}, clock=lambda: now[0])
    assert presence.announce() is not None  # clock 1
    _, reannouncement = presence.receive(awareness((1, 1, None)))
    assert reannouncement is not None and own_entry(reannouncement).clock == 2
    presence.receive(awareness((2, 1, {"n": "a"})))
    now[0] += OUTDATED_SECONDS + 1
    assert presence.expire()
    assert presence.peers == {}


def test_upstream_batches_unacked_frames_and_follows_cumulative_acks() -> None:
    upstream = Upstream(max_post_bytes=100, max_frames=3)
    for index in range(5):
        upstream.push(bytes([index]) * 10)
    assert upstream.batch() == (1, [b"\x00" * 10, b"\x01" * 10, b"\x02" * 10])
    upstream.acked(2)
    assert upstream.batch() == (3, [b"\x02" * 10, b"\x03" * 10, b"\x04" * 10])
    upstream.acked(2)  # a retried answer: nothing new
    with pytest.raises(YlpError):
        upstream.acked(1)  # the server forgot what it acknowledged: the session is lost
    with pytest.raises(YlpError):
        upstream.acked(6)
    upstream.acked(5)
    assert len(upstream) == 0
    with pytest.raises(FrameTooLarge):
        upstream.push(b"x" * 90)


def test_upstream_splits_by_bytes() -> None:
    upstream = Upstream(max_post_bytes=80)
    for _ in range(3):
        upstream.push(b"y" * 30)
    assert upstream.batch() == (1, [b"y" * 30])  # 16 + 2 × 35 > 80


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("", "hé😀"),
        ("aé😀b", "aé😀Xb"),
        ("aé😀b", "ab"),
        ("héllo wörld", "héllo, 😀 wörld!"),
        ("same", "same"),
        ("😀😀", "😀"),
    ],
)
def test_replace_text_edits_by_characters(old: str, new: str) -> None:
    doc = Doc()
    text = doc.get("t", type=Text)
    text += old
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    assert replace_text(text, new) is (old != new)
    assert str(text) == new
    assert len(updates) == (1 if old != new else 0)  # one update, none when nothing changed


def test_utf8_offset_counts_bytes_like_pycrdt() -> None:
    assert utf8_offset("aé😀b", 3) == 7


def test_state_vectors_name_the_clients_that_advanced() -> None:
    before = bytes([2, 5, 3, 9, 1])  # client 5 at 3, client 9 at 1
    after = bytes([3, 5, 3, 9, 4, 7, 2])
    assert decode_state_vector(after) == {5: 3, 9: 4, 7: 2}
    assert clients_added(before, after) == {9, 7}
