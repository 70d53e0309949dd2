"""One process of the multi-process sequence test. It opens the store (racing the others
through the migration), prints "ready", waits for a line on stdin so that all processes start
together, appends its author's updates in small waves so the processes' commits interleave,
and prints the sequence numbers it got as JSON.

Usage: python -m tests.store.append_worker SCHEMA DOC COUNT CLIENT_ID
"""

from __future__ import annotations

import asyncio
import json
import sys

from collab.store.postgres import PostgresStore
from tests.store.helpers import POSTGRES_URL, text_updates

WAVE = 10


async def main(schema: str, doc_id: str, count: int, client_id: int) -> None:
    updates, _ = text_updates(count, client_id=client_id)
    store = PostgresStore(POSTGRES_URL, schema=schema, compact_after_rows=10**9)
    await store.open()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    seqs: list[int] = []
    for start in range(0, count, WAVE):
        wave = updates[start : start + WAVE]
        seqs += await asyncio.gather(*(store.append(doc_id, u) for u in wave))
    await store.close()
    print(json.dumps(seqs), flush=True)


if __name__ == "__main__":
    schema, doc_id, count, client_id = sys.argv[1:]
    asyncio.run(main(schema, doc_id, int(count), int(client_id)))
