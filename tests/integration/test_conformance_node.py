"""Conformance with the real npm client: the stock y-websocket 3.1 ``WebsocketProvider`` (Node,
``ws`` as WebSocket) against our server, one scenario of ``tests/js/conformance.mjs`` per test.

Needs Node.js and ``tests/js/node_modules`` (``make test`` installs it with ``npm ci``). When they
are missing the tests fail with instructions instead of skipping: a conformance suite that skips
itself silently proves nothing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import RunningServer, ServerProcess

JS_DIR = Path(__file__).resolve().parent.parent / "js"
SCRIPT = JS_DIR / "conformance.mjs"
REPO_ROOT = JS_DIR.parent.parent
NODE_TIMEOUT = 45.0  # each scenario also bounds itself (20-45 s) and reports which step hung

pytestmark = [pytest.mark.node, pytest.mark.timeout(60)]


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: the npm conformance tests need `node` on PATH")
    if not (JS_DIR / "node_modules" / "y-websocket").is_dir():
        pytest.fail(
            "tests/js/node_modules is missing: run `make test` "
            "(or `cd tests/js && npm ci`) to install the npm client for the conformance tests"
        )
    return node


def _ws_base(http_url: str) -> str:
    """The y-websocket ``serverUrl`` (the room name, i.e. the doc id, is appended to it)."""
    return http_url.replace("http://", "ws://", 1) + "/ws"


def _result(scenario: str, returncode: int | None, stdout: str, stderr: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if returncode != 0 or not isinstance(result, dict) or result.get("ok") is not True:
        pytest.fail(
            f"node conformance scenario {scenario!r} failed (exit {returncode})\n"
            f"--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            pytrace=False,
        )
    return result


async def run_scenario(scenario: str, server_url: str, *args: str) -> dict[str, Any]:
    """Run one scenario without blocking the event loop (the in-process server lives on it)."""
    proc = await asyncio.create_subprocess_exec(
        _node(),
        str(SCRIPT),
        scenario,
        _ws_base(server_url),
        *args,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT)
    except TimeoutError:
        proc.kill()
        stdout, stderr = await proc.communicate()
        pytest.fail(
            f"node conformance scenario {scenario!r} did not finish within {NODE_TIMEOUT} s\n"
            f"--- stdout ---\n{stdout.decode(errors='replace')}\n"
            f"--- stderr ---\n{stderr.decode(errors='replace')}",
            pytrace=False,
        )
    return _result(
        scenario, proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")
    )


def run_scenario_blocking(scenario: str, server_url: str, *args: str) -> dict[str, Any]:
    """For servers in a child process (nothing runs on this thread's event loop)."""
    try:
        done = subprocess.run(
            [_node(), str(SCRIPT), scenario, _ws_base(server_url), *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"node conformance scenario {scenario!r} did not finish within {NODE_TIMEOUT} s\n"
            f"--- stdout ---\n{exc.stdout!r}\n--- stderr ---\n{exc.stderr!r}",
            pytrace=False,
        )
    return _result(scenario, done.returncode, done.stdout, done.stderr)


async def test_three_clients_converge(server: RunningServer) -> None:
    result = await run_scenario("converge", server.url)
    assert result["clients"] == 3
    assert result["textLength"] > 0


async def test_awareness_arrives_and_is_removed_on_leave(server: RunningServer) -> None:
    result = await run_scenario("awareness", server.url)
    # far below y-protocols' 30 s outdated timeout: the server sent the removal
    assert result["cleanRemovalMs"] < 5000
    assert result["abruptRemovalMs"] < 5000


async def test_late_joiner_gets_full_text(server: RunningServer) -> None:
    result = await run_scenario("late-joiner", server.url)
    assert result["textLength"] > 0


@pytest.mark.parametrize(
    "doc_id",
    [
        pytest.param("a//b", id="empty-segment"),
        pytest.param("bad!id", id="bad-character"),
        pytest.param("trailing/", id="empty-last-segment"),
        pytest.param("x" * 256, id="too-long"),
    ],
)
async def test_permanent_close_stops_retries(server: RunningServer, doc_id: str) -> None:
    # 4400 today; the same scenario takes 4401/4403 once auth exists (any 4400-4499 code)
    result = await run_scenario("forbidden-stops-retry", server.url, doc_id, "4400", "2000")
    assert result["code"] == 4400
    assert result["attempts"] == 1
    assert result["reason"]  # the server says why


def test_converge_against_cli_server(tmp_path: Path) -> None:
    """The same client against ``collab serve`` in its own process (the shipped entry point)."""
    _node()
    server = ServerProcess(tmp_path / "data").start()
    try:
        run_scenario_blocking("converge", server.url)
    finally:
        exit_code = server.stop()
    assert exit_code == 0, f"collab serve exited with {exit_code} on SIGTERM"


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_text_survives_restart(tmp_path: Path, stop: str) -> None:
    """Written and acknowledged (step2 answered) before the stop, read back after it.

    With SIGKILL this checks the durability promise: a step2 reply is a commit barrier.
    """
    _node()
    data_dir = tmp_path / "data"
    doc_id = f"conformance-persist-{uuid.uuid4()}"
    text = "Persisted across a restart: Zoë 😀, ünïcödé — and line two.\nThe end."
    first = ServerProcess(data_dir).start()
    try:
        run_scenario_blocking("persist-write", first.url, doc_id, text)
    finally:
        if stop == "sigkill":
            first.kill()
        else:
            exit_code = first.stop()
    if stop == "sigterm":
        assert exit_code == 0, f"collab serve exited with {exit_code} on SIGTERM"
    second = ServerProcess(data_dir).start()
    try:
        result = run_scenario_blocking("persist-read", second.url, doc_id, text)
        assert result["textLength"] == len(text.encode("utf-16-le")) // 2
    finally:
        second.stop()
