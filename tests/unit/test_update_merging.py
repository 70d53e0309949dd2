"""Queued document updates for one peer collapse into one message with the same effect."""

from __future__ import annotations

from pycrdt import Doc, Text

from collab.protocol.wire import SyncUpdate, decode_message, encode_update
from collab.server.connection import is_update_message, merge_update_messages


def test_merged_messages_have_the_effect_of_all_of_them() -> None:
    source = Doc(client_id=7)
    updates: list[bytes] = []
    subscription = source.observe(lambda event: updates.append(event.update))
    text = source.get("content", type=Text)
    for word in ("alpha ", "beta ", "gamma"):
        text.insert(len(text), word)
    del text[0:6]
    source.unobserve(subscription)

    merged = merge_update_messages(tuple(encode_update(update) for update in updates))

    assert is_update_message(merged)
    message = decode_message(merged)
    assert isinstance(message, SyncUpdate)
    target = Doc()
    target.apply_update(message.update)
    assert str(target.get("content", type=Text)) == "beta gamma"


def test_only_sync_updates_count_as_mergeable() -> None:
    assert is_update_message(encode_update(b"\x00\x00"))
    assert not is_update_message(b"\x00\x00\x01\x00")  # step1
    assert not is_update_message(b"\x00\x01\x02\x00\x00")  # step2: a reply, never merged
    assert not is_update_message(b"\x01\x01\x00")  # awareness
