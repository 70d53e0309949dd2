"""The reference server for side-by-side runs: ``@y/websocket-server`` on Node, from npm.

It is installed on demand into a bench-only folder (``bench-ref/``, gitignored) with a pinned
``package.json``: 0.1.1 with ``yjs`` 13.6 (0.1.5 targets the Yjs 14 prereleases and does not
install). It serves ``ws://HOST:PORT/<room>`` and keeps documents in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from collab.bench.system import stop_process

PACKAGE = "@y/websocket-server"
VERSION = "0.1.1"
YJS_RANGE = "~13.6.0"
NAME = f"y-websocket-server {VERSION}"
_INSTALL_TIMEOUT = 300.0
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


def _manifest() -> str:
    dependencies = {PACKAGE: VERSION, "yjs": YJS_RANGE}
    return json.dumps({"private": True, "dependencies": dependencies}, indent=2) + "\n"


def _installed_version(directory: Path, package: str) -> str | None:
    try:
        text = (directory / "node_modules" / package / "package.json").read_text()
    except OSError:
        return None
    return json.loads(text).get("version")


def install(directory: Path) -> Path:
    """Install the pinned reference server unless present; return its entry script."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("the reference server needs Node.js and npm on PATH")
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "package.json"
    if not manifest.exists() or manifest.read_text() != _manifest():
        manifest.write_text(_manifest())
    if _installed_version(directory, PACKAGE) != VERSION or not _installed_version(
        directory, "yjs"
    ):
        try:
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=directory, check=True, capture_output=True, text=True,
                timeout=_INSTALL_TIMEOUT,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            raise RuntimeError(
                f"npm install of {PACKAGE}@{VERSION} failed: {exc} {detail}"
            ) from exc
    return directory / "node_modules" / PACKAGE / "src" / "server.js"


def versions(directory: Path) -> str:
    """``@y/websocket-server x / yjs y / Node z`` as installed."""
    try:
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        node = "unknown"
    server = _installed_version(directory, PACKAGE)
    yjs = _installed_version(directory, "yjs")
    return f"{PACKAGE} {server} / yjs {yjs} / Node {node}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def reference_server(script: Path, log_path: Path) -> AsyncIterator[tuple[str, int]]:
    """Run the reference server on a free loopback port; yield (WebSocket base URL, pid)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "YPERSISTENCE"}  # memory only
    env.update(HOST="127.0.0.1", PORT=str(port))
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            "node", str(script), env=env, stdout=asyncio.subprocess.PIPE, stderr=log_file,
            stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(_START_TIMEOUT):
            line = (await process.stdout.readline()).decode(errors="replace")
        if "running at" not in line:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the reference server did not start ({line.strip()!r}): {tail}")
        yield f"ws://127.0.0.1:{port}", process.pid
    finally:
        await stop_process(process, _STOP_TIMEOUT)
