"""Editing traces (josephg/editing-traces format) replayed into a pycrdt document.

A trace is ``{"endContent": ..., "txns": [{"patches": [[pos, del, ins], ...]}, ...]}`` with
positions in characters; one pycrdt transaction per trace transaction, so the document has
the history a real editor would have produced. pycrdt counts UTF-8 bytes, so positions are
converted while the text holds non-ASCII characters (the traces are mostly ASCII).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pycrdt import Doc, Text

from collab.bench.peer import TEXT_NAME

_ROOT = Path(__file__).resolve().parents[2]
# the vendored copy first, so a fresh clone works; then the shared corpus next to the repo
_CANDIDATES = (
    _ROOT / "tests" / "data" / "automerge-paper.json.gz",
    _ROOT.parent / "shared" / "traces" / "sequential" / "automerge-paper.json.gz",
)


def default_trace() -> Path | None:
    """The automerge-paper trace, where a checkout has it (None: pass a path)."""
    return next((path for path in _CANDIDATES if path.is_file()), None)


@dataclass(frozen=True, slots=True)
class TraceDoc:
    name: str
    patches: int  # replayed
    complete: bool  # every patch of the trace
    update: bytes  # the whole document as one Yjs update
    chars: int
    sha256: str  # of the UTF-8 text


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=2)  # the report replays the same trace for each server
def replay(path: Path, limit: int | None = None) -> TraceDoc:
    """Replay the first ``limit`` patches (all by default) of a sequential trace.

    Raises ValueError for a concurrent trace, and when a complete replay does not end with
    the trace's ``endContent`` (the trace or the replay is wrong, not the server under test).
    """
    trace = json.loads(gzip.decompress(path.read_bytes()))
    if trace.get("kind") == "concurrent":
        raise ValueError("a concurrent trace: use its linearized (sequential) version")
    doc = Doc()
    text = doc.get(TEXT_NAME, type=Text)
    wide = 0  # non-ASCII characters in the text: while any, positions need converting
    done = 0
    for patches in _transactions(trace["txns"], limit):
        with doc.transaction():
            for position, deleted, inserted in patches:
                start, size = position, deleted
                if wide:
                    current = str(text)
                    removed = current[position : position + deleted]
                    start = len(current[:position].encode())
                    size = len(removed.encode())
                    wide -= sum(not c.isascii() for c in removed)
                if size:
                    del text[start : start + size]
                if inserted:
                    text.insert(start, inserted)
                    if not inserted.isascii():
                        wide += sum(not c.isascii() for c in inserted)
                done += 1
    content = str(text)
    complete = done == sum(len(txn["patches"]) for txn in trace["txns"])
    if complete and content != trace["endContent"]:
        raise ValueError(f"replaying {path} did not give its endContent")
    return TraceDoc(
        path.name.removesuffix(".gz").removesuffix(".json"),
        done,
        complete,
        doc.get_update(),
        len(content),
        text_sha256(content),
    )


def _transactions(txns: list[dict], limit: int | None) -> Iterator[list[list]]:
    """The patch lists of the transactions, cut after ``limit`` patches."""
    left = limit
    for txn in txns:
        patches = txn["patches"]
        if left is not None:
            if left <= 0:
                return
            patches = patches[:left]
            left -= len(patches)
        yield patches
