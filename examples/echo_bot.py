"""Echo bot: answers ``/time`` and ``/echo <text>`` lines typed into a document.

Run it next to a server (``make serve``):

    .venv/bin/python examples/echo_bot.py http://127.0.0.1:8000 notes/today

then type ``/echo hello`` and Enter in the document's text (Y.Text ``content``, the one the
editor page shows): the bot inserts ``↳ hello`` on the next line; ``/time`` gets the current UTC
time. A command counts once its line is complete (ends with a newline) and is answered unless
the next line already is an answer, so a restarted bot never answers twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
from datetime import UTC, datetime

from pycrdt import Text

from collab.client import connect, insert_text

ANSWER = "↳ "
COMMAND = re.compile(r"/(time|echo)(?: (.*))?")


def answer(command: str, argument: str | None) -> str:
    if command == "time":
        return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return argument or ""


def pending_answers(content: str) -> list[tuple[int, str]]:
    """(character position, answer line) for every complete command line not answered yet."""
    lines = content.split("\n")  # the last item is the line being typed: not complete
    pending = []
    position = 0
    for index, line in enumerate(lines[:-1]):
        position += len(line) + 1
        match = COMMAND.fullmatch(line.strip())
        if match and not lines[index + 1].startswith(ANSWER):
            pending.append((position, ANSWER + answer(*match.groups()) + "\n"))
    return pending


def answer_all(text: Text) -> int:
    """Insert the missing answers in one transaction; return how many."""
    pending = pending_answers(str(text))
    with text.doc.transaction():
        for position, line in reversed(pending):  # from the end: earlier positions stay valid
            insert_text(text, position, line)
    return len(pending)


async def run(url: str, doc_id: str, name: str, token: str | None) -> None:
    async with connect(url, doc_id, token=token, user={"name": "echo-bot"}) as session:
        text = session.text(name)
        changes = session.changes()  # subscribe before the first look: nothing slips through
        await session.synced()
        answer_all(text)
        async for _change in changes:  # remote edits only: our own answers do not come back
            answer_all(text)


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
