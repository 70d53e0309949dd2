"""Importer: loads a markdown or text file into a document, idempotently.

    .venv/bin/python examples/importer.py http://127.0.0.1:8000 notes/readme README.md

Afterwards the document's Y.Text ``content`` reads exactly the file (line endings normalised to
``\\n``) and the Y.Map ``meta`` names the source. A second run finds nothing to change and sends
nothing; after an edit of the file only the changed part is replaced, so concurrent editors
keep their cursors. It exits once the server has stored the import. (Two first imports running
at the same moment into an empty document would both insert: run one importer per document.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from collab.client import Session, apply, replace_text


async def run(url: str, doc_id: str, path: Path, name: str, token: str | None) -> bool:
    """Import ``path``; True if the document changed."""
    content = path.read_text(encoding="utf-8").replace("\r\n", "\n")

    def load(session: Session) -> bool:
        changed = replace_text(session.text(name), content)
        meta = session.map("meta")
        if meta.get("source") != path.name:
            meta["source"] = path.name
            changed = True
        return changed

    return await apply(url, doc_id, load, token=token, user={"name": "importer"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("doc", help="document id")
    parser.add_argument("file", type=Path, help="markdown or text file")
    parser.add_argument("--text", default="content", help="name of the Y.Text (content)")
    parser.add_argument("--token", default=os.environ.get("COLLAB_TOKEN"), help="access token")
    args = parser.parse_args()
    changed = asyncio.run(run(args.url, args.doc, args.file, args.text, args.token))
    print(f"imported {args.file} into {args.doc}" if changed else f"{args.doc} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
