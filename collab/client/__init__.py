"""Python SDK for bots and scripts: join a document like a person does.

```python
from collab.client import connect

async with connect("http://127.0.0.1:8000", "notes/today", user={"name": "summary-bot"}) as s:
    await s.synced()                       # initial sync done
    text = s.text("content")               # typed roots: text(), map(), array(), xml()
    text += "\\nhello from a bot"
    await s.flush()                        # returns once the server has stored it
    s.presence.set({"status": "thinking"}) # the bot's awareness state
    async for change in s.changes():       # remote changes, with who made them
        print(change.names, change.events)
```

Over WebSocket, or YLP/1 long-polling where WebSockets do not pass (``transport="auto"``
falls back by itself). Disconnections are retried with backoff and resynced; a close with
4400-4499 raises ``PermanentCloseError``.
"""

from collab.client.changes import Change, ChangeStream, RootEvent
from collab.client.errors import (
    CollabClientError,
    PermanentCloseError,
    PermissionDeniedError,
    SessionClosedError,
)
from collab.client.oneshot import apply, fetch_text
from collab.client.presence import Presence
from collab.client.session import Session, connect
from collab.client.text import insert_text, replace_text, utf8_offset

__all__ = [
    "Change",
    "ChangeStream",
    "CollabClientError",
    "PermanentCloseError",
    "PermissionDeniedError",
    "Presence",
    "RootEvent",
    "Session",
    "SessionClosedError",
    "apply",
    "connect",
    "fetch_text",
    "insert_text",
    "replace_text",
    "utf8_offset",
]
