"""Folding a log into a snapshot, inline or in the worker process."""

from __future__ import annotations

from pycrdt import Doc, Text

from collab.store.folding import INLINE_FOLD_BYTES, fold_off_loop, fold_updates


def typed(count: int, size: int) -> list[bytes]:
    doc = Doc(client_id=3)
    text = doc.get("content", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for index in range(count):
        text.insert(len(text), str(index % 10) * size)
    return updates


def read(update: bytes) -> str:
    doc = Doc()
    doc.apply_update(update)
    return str(doc.get("content", type=Text))


async def test_large_folds_run_in_the_worker_and_equal_inline_ones() -> None:
    updates = typed(200, 1000)
    assert sum(map(len, updates)) > INLINE_FOLD_BYTES
    folded = await fold_off_loop(updates)
    assert read(folded) == read(fold_updates(updates))


async def test_pending_structs_survive_folding() -> None:
    u1, u2, u3 = typed(3, 40_000)
    folded = await fold_off_loop([u1, u3])  # u3 waits for u2
    doc = Doc()
    doc.apply_update(folded)
    doc.apply_update(u2)
    assert str(doc.get("content", type=Text)) == "0" * 40_000 + "1" * 40_000 + "2" * 40_000
