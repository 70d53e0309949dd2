"""Word count bot: a live word and character count of a document, for everyone to see.

Run it next to a server (``make serve``):

    .venv/bin/python examples/word_count_bot.py http://127.0.0.1:8000 notes/today

It keeps ``{"words": n, "chars": n}`` for the Y.Text ``content`` in the Y.Map ``stats`` (other
clients read it from the document; numbers arrive as floats, as all Yjs numbers do) and in its
presence, next to its name, so it shows up in everyone's list of who is here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

from pycrdt import Map, Text

from collab.client import Session, connect


def count(content: str) -> dict[str, int]:
    return {"words": len(content.split()), "chars": len(content)}


def publish(session: Session, text: Text, stats: Map) -> dict[str, int]:
    """Write the counts where they changed (an unchanged count costs no update)."""
    counts = count(str(text))
    if {key: stats.get(key) for key in counts} != counts:
        with session.transaction():
            stats.update(counts)
    if (session.presence.state or {}).get("stats") != counts:
        session.presence.set({"stats": counts})
    return counts


async def run(url: str, doc_id: str, name: str, token: str | None) -> None:
    async with connect(url, doc_id, token=token, user={"name": "word-count-bot"}) as session:
        text, stats = session.text(name), session.map("stats")
        changes = session.changes()
        await session.synced()
        publish(session, text, stats)
        async for _change in changes:
            publish(session, text, stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("doc", help="document id")
    parser.add_argument("--text", default="content", help="name of the Y.Text (content)")
    parser.add_argument("--token", default=os.environ.get("COLLAB_TOKEN"), help="access token")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.url, args.doc, args.text, args.token))


if __name__ == "__main__":
    main()
