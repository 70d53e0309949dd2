"""What the session needs from a transport: ordered frames both ways and a close code.

Both transports (WebSocket and YLP/1 long-polling) carry the same y-websocket frames, so the
session logic above them is identical; they differ only in how a connection opens and ends.
"""

from __future__ import annotations

from typing import Protocol

from yarl import URL

ABNORMAL_CLOSURE = 1006  # no close frame: the connection dropped


class TransportClosed(Exception):
    """The connection ended; ``code`` follows WebSocket close codes (1006: it dropped)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class OpenFailed(Exception):
    """A connection could not be opened. ``code`` is set when the server refused it with a
    close code (e.g. 4401 from ``/lp/open``), None when it was unreachable."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason if code is None else f"{code} {reason}")
        self.reason = reason
        self.code = code


class Transport(Protocol):
    name: str

    async def send(self, frame: bytes) -> None:
        """Queue or send one frame, in order."""
        ...

    async def receive(self) -> bytes:
        """The next frame from the server; raises TransportClosed when the connection ends."""
        ...

    async def close(self) -> None:
        """Close (after a short attempt to deliver what was sent); never raises."""
        ...


def base_url(url: str) -> URL:
    """The server's HTTP base (``http://host:port[/prefix]``); ws:// and wss:// also accepted."""
    parsed = URL(url.rstrip("/"))
    scheme = {"ws": "http", "wss": "https"}.get(parsed.scheme, parsed.scheme)
    if scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an http(s) server URL: {url!r}")
    return parsed.with_scheme(scheme).with_query(None).with_fragment(None)
