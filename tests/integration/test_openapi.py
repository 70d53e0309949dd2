"""The OpenAPI description matches the server: schemathesis fuzzes every operation."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest
from pycrdt import Doc, Text

from tests.support import ServerProcess

ADMIN = "admin-" + "a" * 30
KEY = "k1:" + "s" * 40


def _seed() -> bytes:
    doc = Doc()
    doc.get("content", type=Text).insert(0, "seed")
    return doc.get_update()


@pytest.mark.slow
async def test_schemathesis_finds_no_server_errors(http, tmp_path: Path) -> None:
    runner = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert runner, "schemathesis is a dev dependency: run `make install`"
    server = await asyncio.to_thread(
        ServerProcess(tmp_path, "--admin-key", ADMIN, "--auth-key", KEY).start
    )
    try:
        async with http.post(
            f"{server.url}/api/v1/docs/seed/update",
            data=_seed(),
            headers={"Authorization": f"Bearer {ADMIN}"},
        ) as resp:
            assert resp.status == 200
        proc = await asyncio.create_subprocess_exec(
            runner, "run", f"{server.url}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {ADMIN}",
            "--checks", "not_a_server_error,status_code_conformance",
            "--max-examples", "25", "--seed", "1",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(proc.communicate(), 240)
        report = output.decode(errors="replace")
        assert proc.returncode == 0, report[-4000:]
        assert " passed" in report
    finally:
        await asyncio.to_thread(server.stop)
