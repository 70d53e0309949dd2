"""Fold a snapshot and log rows into one snapshot without losing pending structs.

pycrdt's ``Doc.get_update()`` omits structs whose dependencies are missing (they stay pending
inside the Doc), so a naive snapshot-then-delete would drop them. Updates that still carry
unintegrated structs are merged back into the snapshot verbatim.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from pycrdt import Doc, get_update, merge_updates

log = logging.getLogger(__name__)

INLINE_FOLD_BYTES = 64 * 1024  # below this, folding is quicker than a trip to the worker
_pool: ProcessPoolExecutor | None = None


async def fold_off_loop(parts: list[bytes]) -> bytes:
    """fold_updates without blocking the event loop: pycrdt holds the GIL while it applies
    updates (threads do not help), so large folds run in a worker process."""
    if sum(len(part) for part in parts) < INLINE_FOLD_BYTES:
        return fold_updates(parts)
    global _pool
    if _pool is None:
        # forkserver: forking this process (with its store threads) could inherit held locks
        _pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"))
    try:
        return await asyncio.get_running_loop().run_in_executor(_pool, fold_updates, parts)
    except BrokenProcessPool as exc:  # the worker died or could not start: fold here
        log.warning("compaction worker unavailable (%s); folding in the server process", exc)
        _pool = None
        return fold_updates(parts)


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
