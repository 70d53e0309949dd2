"""The WebSocket opening handshake of ``GET /ws/{doc}`` (RFC 6455 §4.2), sans-I/O.

The server answers these upgrades itself instead of through aiohttp's request machinery,
which keeps the parsed request, two tasks and a reader queue alive for the whole life of
a WebSocket: about 15 KB per idle connection. Parsing is deliberately strict and bounded:
one GET request head of at most ``MAX_HEAD_BYTES``, no body, no folded or malformed lines.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

WEBSOCKET_PATH_PREFIX = b"GET /ws/"
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 header names
_VISIBLE = re.compile(r"[\x21-\x7e]+")  # a request target: no spaces, no controls
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # never in a header value


class HandshakeError(ValueError):
    """A request the server answers with an HTTP error ``status`` and closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    doc_id: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    key: str

    @property
    def host(self) -> str:
        return self.headers.get("host", "")


def wants_websocket(received: bytes) -> bool | None:
    """True when the connection's first bytes start a ``GET /ws/`` request, False when they
    cannot, None while too few bytes have arrived to tell."""
    if received.startswith(WEBSOCKET_PATH_PREFIX):
        return True
    if WEBSOCKET_PATH_PREFIX.startswith(received):
        return None
    return False


def head_end(received: bytes) -> int:
    """The length of the request head in ``received`` (through the blank line), or -1."""
    end = received.find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4


def parse_upgrade(head: bytes) -> UpgradeRequest:
    """The upgrade request in ``head`` (one request head, blank line included)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise HandshakeError(400, "undecodable request") from exc
    lines = text[:-4].split("\r\n")
    method, target, version = _request_line(lines[0])
    if method != "GET" or version != "HTTP/1.1":
        raise HandshakeError(400, "a WebSocket upgrade is GET with HTTP/1.1")
    if len(lines) - 1 > MAX_HEADERS:
        raise HandshakeError(431, "too many headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, value = _header(line)
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    path, _, query = target.partition("?")
    try:
        doc_id = unquote(path.removeprefix("/ws/"), errors="strict")
        params = dict(parse_qsl(query, max_num_fields=32, errors="strict"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HandshakeError(400, "malformed request target") from exc
    return upgrade_request(doc_id, params, headers)


def upgrade_request(doc_id: str, query: dict[str, str], headers: dict[str, str]) -> UpgradeRequest:
    """The upgrade of an already parsed request (``headers`` with lower-case names)."""
    return UpgradeRequest(doc_id, query, headers, _websocket_key(headers))


def _request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not parts[1].startswith("/ws/"):
        raise HandshakeError(400, "malformed request line")
    if not _VISIBLE.fullmatch(parts[1]):
        raise HandshakeError(400, "malformed request target")
    return parts[0], parts[1], parts[2]


def _header(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    if not colon or not _TOKEN.fullmatch(name):
        raise HandshakeError(400, "malformed header line")
    value = value.strip(" \t")
    if _CONTROL.search(value):
        raise HandshakeError(400, "control character in a header value")
    return name.lower(), value


def _websocket_key(headers: dict[str, str]) -> str:
    if "websocket" not in _tokens(headers.get("upgrade", "")):
        raise HandshakeError(426, "this endpoint only speaks WebSocket (Upgrade: websocket)")
    if "upgrade" not in _tokens(headers.get("connection", "")):
        raise HandshakeError(400, "missing 'Connection: Upgrade'")
    if headers.get("sec-websocket-version") != "13":
        raise HandshakeError(426, "unsupported WebSocket version (13 is supported)")
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError(key)
    except ValueError as exc:
        raise HandshakeError(400, "invalid Sec-WebSocket-Key") from exc
    return key


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def deflate_offered(headers: dict[str, str]) -> int | None:
    """The window bits to compress with when the client offers permessage-deflate (RFC 7692),
    else None. Messages are compressed without context takeover on both sides, so one
    compressed broadcast frame serves every peer and no peer keeps a zlib state."""
    for offer in headers.get("sec-websocket-extensions", "").split(","):
        name, *params = (part.strip().lower() for part in offer.split(";"))
        if name != "permessage-deflate":
            continue
        bits = 15
        for param in params:
            key, _, value = param.partition("=")
            if key == "server_max_window_bits" and value.strip('"').isdigit():
                bits = int(value.strip('"'))
            elif key not in ("client_max_window_bits", "server_no_context_takeover",
                             "client_no_context_takeover"):  # fmt: skip
                break
        else:
            if 9 <= bits <= 15:
                return bits
    return None


def switching_protocols(key: str, deflate_bits: int | None) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if deflate_bits is not None:
        extension = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        if deflate_bits != 15:
            extension += f"; server_max_window_bits={deflate_bits}"
        lines.append(f"Sec-WebSocket-Extensions: {extension}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def error_response(status: int, reason: str) -> bytes:
    """A complete HTTP/1.1 error response with a JSON body; the connection closes after it."""
    body = json.dumps({"error": reason}).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
