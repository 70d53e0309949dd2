"""``collab cat | put | watch``: read, replace and follow a document's text from a shell.

URL is the server's http base (``http://127.0.0.1:8000``). ``--token`` defaults to the
``COLLAB_TOKEN`` environment variable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from collab.client.changes import Change
from collab.client.errors import CollabClientError
from collab.client.oneshot import apply, fetch_text
from collab.client.session import Session, connect
from collab.client.text import replace_text


def add_client_commands(subparsers: argparse._SubParsersAction) -> None:
    cat = subparsers.add_parser("cat", help="print the text of a document")
    _add_common(cat)
    cat.set_defaults(run=_run_cat)
    put = subparsers.add_parser("put", help="replace (or create) the text of a document")
    _add_common(put)
    put.add_argument("file", help="file to upload, - for standard input")
    put.set_defaults(run=_run_put)
    watch = subparsers.add_parser("watch", help="print remote changes as JSON lines")
    _add_common(watch)
    watch.add_argument(
        "--map", action="append", default=[], metavar="NAME", help="also report this Y.Map"
    )
    watch.set_defaults(run=_run_watch)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("doc", help="document id, e.g. notes/today")
    parser.add_argument("--text", default="content", metavar="NAME", help="Y.Text (content)")
    parser.add_argument("--token", default=os.environ.get("COLLAB_TOKEN"), help="access token")
    parser.add_argument("--transport", choices=("auto", "websocket", "longpoll"), default="auto")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the server (30)"
    )


def _run(args: argparse.Namespace, main: Any) -> int:
    try:
        asyncio.run(main)
    except CollabClientError as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"collab: no answer from {args.url} within {args.timeout:g} s", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _run_cat(args: argparse.Namespace) -> int:
    async def main() -> None:
        async with asyncio.timeout(args.timeout):
            text = await fetch_text(
                args.url, args.doc, args.text, token=args.token, transport=args.transport
            )
        sys.stdout.write(text)

    return _run(args, main())


def _run_put(args: argparse.Namespace) -> int:
    if args.file == "-":
        content = sys.stdin.read()
    else:
        try:
            content = Path(args.file).read_text(encoding="utf-8")
        except OSError as exc:
            print(f"collab: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 1

    async def main() -> None:
        async with asyncio.timeout(args.timeout):
            changed = await apply(
                args.url,
                args.doc,
                lambda session: replace_text(session.text(args.text), content),
                token=args.token,
                transport=args.transport,
            )
        print("updated" if changed else "unchanged", file=sys.stderr)

    return _run(args, main())


def _run_watch(args: argparse.Namespace) -> int:
    async def main() -> None:
        async with connect(args.url, args.doc, token=args.token, transport=args.transport) as s:
            text = s.text(args.text)
            for name in args.map:
                s.map(name)
            changes = s.changes()
            async with asyncio.timeout(args.timeout):
                await s.synced()
            _emit({"event": "synced", "text": str(text)})
            peers = asyncio.create_task(_report_peers(s))
            try:
                async for change in changes:
                    _emit(_describe(change))
            finally:
                peers.cancel()

    return _run(args, main())


async def _report_peers(session: Session) -> None:
    seen: dict[int, Any] = {}
    while True:
        await session.wait_for(lambda seen=seen: session.peers != seen)
        seen = session.peers
        _emit({"event": "peers", "peers": {str(cid): state for cid, state in seen.items()}})


def _describe(change: Change) -> dict[str, Any]:
    return {
        "event": "change",
        "initial": change.initial,
        "clients": sorted(change.clients),
        "names": change.names,
        "changes": [
            {
                "root": event.root,
                "path": list(event.path),
                **({"delta": event.delta} if event.delta is not None else {}),
                **({"keys": event.keys} if event.keys is not None else {}),
            }
            for event in change.events
        ],
    }


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, ensure_ascii=False, default=repr), flush=True)
