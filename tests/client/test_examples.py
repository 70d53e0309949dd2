"""Each example bot, started with the command from its docstring, does its job live."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.client.helpers import EXAMPLES, run_command, start_background, stop_background
from tests.support import RawClient, RunningServer


def presence(client: RawClient, name: str) -> dict | None:
    for entry in client.awareness.values():
        state = json.loads(entry.state) if entry.state else {}
        if state.get("user", {}).get("name") == name:
            return state
    return None


async def test_echo_bot_answers_commands_once(server: RunningServer, http) -> None:
    raw = await RawClient(http, server.ws_url("ex/echo")).connect()
    text = raw.text()
    text.insert(0, "/echo before the bot\n")
    bot = await start_background(str(EXAMPLES / "echo_bot.py"), server.url, "ex/echo")
    try:
        await raw.wait_for(lambda: presence(raw, "echo-bot") is not None, timeout=15)
        await raw.wait_for(lambda: str(text) == "/echo before the bot\n↳ before the bot\n")
        text.insert(len(text), "/echo hé 😀\n/tim")  # the second line is still being typed
        await raw.wait_for(lambda: str(text).endswith("/echo hé 😀\n↳ hé 😀\n/tim"))
        text.insert(len(text), "e\nafter")
        await raw.wait_for(lambda: "/time\n↳ " in str(text))
        assert re.search(r"/time\n↳ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\nafter$", str(text))
    finally:
        errors = await stop_background(bot)
    await raw.wait_for(lambda: presence(raw, "echo-bot") is None)
    answered = str(text)

    bot = await start_background(str(EXAMPLES / "echo_bot.py"), server.url, "ex/echo")
    try:
        await raw.wait_for(lambda: presence(raw, "echo-bot") is not None, timeout=15)
        text.insert(len(text), "\n/echo again\n")
        await raw.wait_for(lambda: str(text).endswith("/echo again\n↳ again\n"))
        assert str(text) == answered + "\n/echo again\n↳ again\n", "answered twice"
    finally:
        errors += await stop_background(bot)
    assert "Traceback" not in errors, errors
    await raw.close()


async def test_word_count_bot_keeps_counts_live(server: RunningServer, http) -> None:
    raw = await RawClient(http, server.ws_url("ex/count")).connect()
    text, stats = raw.text(), raw.map("stats")
    text.insert(0, "one two three")
    bot = await start_background(str(EXAMPLES / "word_count_bot.py"), server.url, "ex/count")
    try:
        await raw.wait_for(lambda: stats.to_py() == {"words": 3.0, "chars": 13.0}, timeout=15)
        await raw.wait_for(
            lambda: (
                (presence(raw, "word-count-bot") or {}).get("stats") == {"words": 3, "chars": 13}
            )
        )
        text.insert(len(text), " four 😀")
        await raw.wait_for(lambda: stats.to_py() == {"words": 5.0, "chars": 20.0})
        await raw.wait_for(
            lambda: (
                (presence(raw, "word-count-bot") or {}).get("stats") == {"words": 5, "chars": 20}
            )
        )
    finally:
        errors = await stop_background(bot)
    assert "Traceback" not in errors, errors
    await raw.close()


async def test_importer_is_idempotent(server: RunningServer, http, tmp_path: Path) -> None:
    source = tmp_path / "notes.md"
    source.write_bytes("# Notes\r\n\r\n- héllo 😀\r\n".encode())
    command = (str(EXAMPLES / "importer.py"), server.url, "ex/import", str(source))
    assert await run_command(*command) == (0, "imported " + str(source) + " into ex/import\n", "")
    assert await run_command(*command) == (0, "ex/import is up to date\n", "")

    raw = await RawClient(http, server.ws_url("ex/import")).connect()
    await raw.wait_for(lambda: raw.synced.is_set())
    assert str(raw.text()) == "# Notes\n\n- héllo 😀\n"
    assert raw.map("meta").to_py() == {"source": "notes.md"}

    raw.text().insert(0, "typed by someone\n")
    source.write_text("# Notes\n\n- héllo 😀\n- more\n", encoding="utf-8")
    code, _, err = await run_command(*command)
    assert code == 0, err
    await raw.wait_for(lambda: str(raw.text()) == "# Notes\n\n- héllo 😀\n- more\n")
    await raw.close()
