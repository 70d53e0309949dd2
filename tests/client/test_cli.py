"""``collab cat | put | watch`` as a user runs them, against a live server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.client.helpers import run_command, start_background, stop_background
from tests.support import RawClient, RunningServer


async def test_put_then_cat(server: RunningServer, tmp_path: Path) -> None:
    source = tmp_path / "in.md"
    source.write_text("# Title\n\nhé 😀 done\n", encoding="utf-8")
    code, _, err = await run_command("-m", "collab", "put", server.url, "cli/doc", str(source))
    assert (code, err.strip()) == (0, "updated")
    code, out, err = await run_command("-m", "collab", "cat", server.url, "cli/doc")
    assert (code, out) == (0, "# Title\n\nhé 😀 done\n"), err

    code, _, err = await run_command("-m", "collab", "put", server.url, "cli/doc", str(source))
    assert (code, err.strip()) == (0, "unchanged")
    code, _, err = await run_command(
        "-m", "collab", "put", server.url, "cli/doc", "-", stdin=b"# Title\n\nnew\n"
    )
    assert (code, err.strip()) == (0, "updated")
    code, out, _ = await run_command(
        "-m", "collab", "cat", "--transport", "longpoll", server.url, "cli/doc"
    )
    assert out == "# Title\n\nnew\n"


async def test_cat_reports_a_refused_document(server: RunningServer) -> None:
    code, out, err = await run_command("-m", "collab", "cat", server.url, "no/../way")
    assert code == 1 and out == ""
    assert "4400" in err


async def test_cat_gives_up_when_no_server_answers() -> None:
    code, _, err = await run_command(
        "-m", "collab", "cat", "--timeout", "1", "http://127.0.0.1:9", "doc"
    )
    assert code == 1
    assert "no answer" in err


async def test_watch_prints_remote_changes(server: RunningServer, http) -> None:
    watch = await start_background("-m", "collab", "watch", server.url, "cli/watch")
    try:
        assert watch.stdout is not None

        async def record(event: str) -> dict:
            assert watch.stdout is not None
            while True:
                line = await asyncio.wait_for(watch.stdout.readline(), 15)
                assert line, "collab watch exited"
                parsed = json.loads(line)
                if parsed["event"] == event:
                    return parsed

        assert await record("synced") == {"event": "synced", "text": ""}
        raw = await RawClient(http, server.ws_url("cli/watch"), client_id=5).connect()
        await raw.set_awareness(1, json.dumps({"user": {"name": "ada"}}))
        assert (await record("peers"))["peers"] == {"5": {"user": {"name": "ada"}}}
        raw.text().insert(0, "hello")
        change = await record("change")
        assert change["clients"] == [5]
        assert change["names"] == ["ada"]
        insert = {"root": "content", "path": [], "delta": [{"insert": "hello"}]}
        assert change["changes"] == [insert]
        await raw.close()
    finally:
        await stop_background(watch)
