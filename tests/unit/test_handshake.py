"""The opening handshake of ``GET /ws/{doc}`` (RFC 6455 §4.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab.protocol.handshake import (
    HandshakeError,
    accept_key,
    deflate_offered,
    error_response,
    head_end,
    parse_upgrade,
    switching_protocols,
    wants_websocket,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's own example


def request(target: str = "/ws/notes/today?token=abc", *extra: str, **replaced: str) -> bytes:
    headers = {
        "Host": "example.com",
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    headers.update({name.replace("_", "-"): value for name, value in replaced.items()})
    lines = [f"GET {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_the_rfc_example_key_gets_the_rfc_example_accept() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_browser_upgrade_is_parsed() -> None:
    upgrade = parse_upgrade(request("/ws/notes/today?token=abc", "Origin: https://example.com"))
    assert upgrade.doc_id == "notes/today"
    assert upgrade.query == {"token": "abc"}
    assert upgrade.host == "example.com"
    assert upgrade.headers["origin"] == "https://example.com"


def test_percent_encoded_doc_ids_are_decoded() -> None:
    assert parse_upgrade(request("/ws/a%2Db")).doc_id == "a-b"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (request(Upgrade="h2c"), 426),
        (request(Sec_WebSocket_Version="8"), 426),
        (request(Connection="keep-alive"), 400),
        (request(Sec_WebSocket_Key="short"), 400),
        (request("/ws/a b"), 400),
        (request("/ws/%ff"), 400),
        (request("", "Bad Header Line"), 400),
        (request("/ws/x", "X-Evil: a\x00b"), 400),
        (b"GET /ws/x HTTP/1.0\r\n\r\n", 400),
        (request("/ws/x", *(f"X-{i}: y" for i in range(100))), 431),
    ],
    ids=[
        "not-websocket",
        "old-version",
        "no-connection-upgrade",
        "bad-key",
        "space-in-target",
        "bad-utf8",
        "no-colon",
        "control-char",
        "http-1.0",
        "too-many-headers",
    ],
)
def test_malformed_upgrades_get_an_http_error(head: bytes, status: int) -> None:
    with pytest.raises(HandshakeError) as refused:
        parse_upgrade(head)
    assert refused.value.status == status


@given(st.binary(max_size=300))
def test_any_bytes_either_parse_or_are_refused_with_a_status(noise: bytes) -> None:
    head = b"GET /ws/" + noise + b"\r\n\r\n"
    try:
        parse_upgrade(head[: head_end(head)])
    except HandshakeError as refused:
        assert 400 <= refused.status < 500


def test_the_first_bytes_tell_websocket_upgrades_from_other_requests() -> None:
    assert wants_websocket(b"GET /ws/doc HTTP/1.1\r\n") is True
    assert wants_websocket(b"GET /w") is None  # could still be either
    assert wants_websocket(b"GET /api/v1/docs") is False
    assert wants_websocket(b"POST /ws/doc") is False


def test_the_head_ends_at_the_blank_line() -> None:
    assert head_end(b"GET /ws/a HTTP/1.1\r\nHost: x\r\n") == -1
    assert head_end(b"GET /ws/a HTTP/1.1\r\n\r\nframes") == len(b"GET /ws/a HTTP/1.1\r\n\r\n")


def test_deflate_is_agreed_on_the_client_offer() -> None:
    offer = {"sec-websocket-extensions": "permessage-deflate; client_max_window_bits"}
    assert deflate_offered(offer) == 15
    limited = {"sec-websocket-extensions": "permessage-deflate; server_max_window_bits=10"}
    assert deflate_offered(limited) == 10
    assert deflate_offered({"sec-websocket-extensions": "x-webkit-deflate-frame"}) is None
    assert deflate_offered({}) is None


def test_the_101_answer_carries_the_accept_key_and_agreed_extension() -> None:
    answer = switching_protocols(KEY, 10).decode()
    assert answer.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer
    assert "client_no_context_takeover; server_max_window_bits=10" in answer
    assert answer.endswith("\r\n\r\n")
    assert "Sec-WebSocket-Extensions" not in switching_protocols(KEY, None).decode()


def test_error_responses_are_complete_json_answers() -> None:
    answer = error_response(429, "too many connection attempts")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"Connection: close" in head and f"Content-Length: {len(body)}".encode() in head
    assert body == b'{"error": "too many connection attempts"}'
