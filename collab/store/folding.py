"""Fold a snapshot and log rows into one snapshot without losing pending structs.

pycrdt's ``Doc.get_update()`` omits structs whose dependencies are missing (they stay pending
inside the Doc), so a naive snapshot-then-delete would drop them. Updates that still carry
unintegrated structs are merged back into the snapshot verbatim.
"""

from __future__ import annotations

from pycrdt import Doc, get_update, merge_updates


def fold_updates(parts: list[bytes]) -> bytes:
    doc = Doc()
    for part in parts:
        doc.apply_update(part)
    state = doc.get_state()
    pending = [part for part in parts if has_unintegrated_structs(part, state)]
    folded = doc.get_update()
    return merge_updates(folded, *pending) if pending else folded


def has_unintegrated_structs(update: bytes, state_vector: bytes) -> bool:
    """True when ``update`` holds structs beyond ``state_vector`` (first byte: client count)."""
    return get_update(update, state_vector)[0] != 0
