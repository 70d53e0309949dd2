"""Soak: mixed load for a while (edits, presence, joins and leaves, evictions) while the
server's RSS, open files, tasks and rooms are sampled; none of them may keep growing.

``make soak`` runs it for 10 minutes and writes docs/reliability.md; ``make test`` for 60 s.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from pycrdt import Text

from tests.support import ROOT, LongPollPeer, RawClient, ServerProcess

SECONDS = float(os.environ.get("COLLAB_SOAK_SECONDS", "60"))
REPORT = os.environ.get("COLLAB_SOAK_REPORT")  # a path: write the markdown report there
DOCS = 20
CLIENTS = 40


@dataclass
class Sample:
    at: float
    rss_mib: float
    fds: int
    tasks: int
    rooms: int
    connections: int


async def sample(http: aiohttp.ClientSession, server: ServerProcess, started: float) -> Sample:
    assert server.proc is not None
    pid = server.proc.pid
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    async with http.get(f"{server.url}/metrics") as resp:
        metrics = {
            name: float(value)
            for name, _, value in (line.rpartition(" ") for line in (await resp.text()).split("\n"))
            if name and not name.startswith("#")
        }
    connections = sum(v for k, v in metrics.items() if k.startswith("collab_connections{"))
    return Sample(
        at=time.monotonic() - started,
        rss_mib=rss / 1024,
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        tasks=int(metrics["collab_asyncio_tasks"]),
        rooms=int(metrics["collab_rooms_loaded"]),
        connections=int(connections),
    )


async def client_life(http: aiohttp.ClientSession, server: ServerProcess, rng: random.Random,
                      deadline: float, counters: dict[str, int]) -> None:  # fmt: skip
    """Join a random document, edit and move a cursor for a while, leave; again."""
    while time.monotonic() < deadline:
        doc_id = f"soak/{rng.randrange(DOCS)}"
        if rng.random() < 0.2:
            peer = await LongPollPeer(http, server.url).open(doc_id)
        else:
            peer = await RawClient(http, server.ws_url(doc_id)).connect()
            await asyncio.wait_for(peer.synced.wait(), 15)
        for clock in range(1, rng.randint(6, 41)):
            text = peer.doc.get("content", type=Text)
            if len(text) > 2000:
                del text[0:500]
            text.insert(rng.randint(0, len(text)), rng.choice(["a", "lorem ", "\n", "ipsum "]))
            await peer.set_awareness(clock, f'{{"cursor":{rng.randint(0, 100)}}}')
            counters["edits"] += 1
            await asyncio.sleep(rng.random() * 0.2)
        await peer.close()
        counters["sessions"] += 1
        await asyncio.sleep(rng.random() * 0.5)


def grows(values: list[float], tolerance: float) -> bool:
    """True when the last third is clearly above the middle third (after warm-up)."""
    third = len(values) // 3
    middle, last = values[third : 2 * third], values[2 * third :]
    return statistics.mean(last) > statistics.mean(middle) * (1 + tolerance) + 1


@pytest.mark.slow
async def test_nothing_grows_without_bound_under_mixed_load(tmp_path: Path) -> None:
    server = await asyncio.to_thread(
        ServerProcess(tmp_path, "--idle-evict-seconds", "2", "--keepalive-seconds", "5").start
    )
    rng = random.Random(11)
    counters = {"edits": 0, "sessions": 0}
    samples: list[Sample] = []
    try:
        async with aiohttp.ClientSession() as http:
            started = time.monotonic()
            deadline = started + SECONDS
            load = [
                asyncio.create_task(
                    client_life(http, server, random.Random(rng.random()), deadline, counters)
                )
                for _ in range(CLIENTS)
            ]
            interval = max(1.0, SECONDS / 60)
            while not all(task.done() for task in load):
                samples.append(await sample(http, server, started))
                await asyncio.sleep(interval)
            await asyncio.gather(*load)
            await asyncio.sleep(4)  # idle documents are evicted after 2 s
            after = await sample(http, server, started)
    finally:
        await asyncio.to_thread(server.stop)

    assert counters["edits"] > CLIENTS * 10
    assert len(samples) >= 6
    for name, tolerance in (("rss_mib", 0.25), ("fds", 0.25), ("tasks", 0.25)):
        series = [float(getattr(s, name)) for s in samples]
        assert not grows(series, tolerance), f"{name} keeps growing: {series}"
    assert after.rooms == 0 and after.connections == 0  # everything was released
    assert after.tasks <= min(s.tasks for s in samples)
    if REPORT:
        write_report(Path(REPORT), samples, after, counters)


def write_report(path: Path, samples: list[Sample], after: Sample, counters: dict) -> None:
    rows = "\n".join(
        f"| {s.at:.0f} | {s.rss_mib:.1f} | {s.fds} | {s.tasks} | {s.rooms} | {s.connections} |"
        for s in samples
    )
    path.write_text(
        f"""# Reliability

Generated by `make soak` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({os.cpu_count()} cores,
{platform.python_implementation()} {platform.python_version()}), revision
`{os.popen(f"git -C {ROOT} rev-parse --short HEAD").read().strip()}`.

## Soak: {SECONDS:.0f} s of mixed load

{CLIENTS} clients (80 % WebSocket, 20 % long-poll) join one of {DOCS} documents at random, type
and move their cursor for a while, leave and join again; documents idle for 2 s are evicted.
In total {counters["edits"]:,} edits with presence updates in {counters["sessions"]:,}
sessions. The server ran as its own process; RSS and open files come from `/proc`, tasks and
rooms from `/metrics`.

| time (s) | RSS (MiB) | open files | tasks | rooms | connections |
| ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

After the load stopped and the idle documents were evicted: RSS {after.rss_mib:.1f} MiB,
{after.fds} open files, {after.tasks} tasks, {after.rooms} rooms, {after.connections}
connections. The test fails if RSS, open files or tasks in the last third of the run are
more than 25 % above the middle third, or if anything is left over after the load.

## The other fault tests (run by `make test`)

- `tests/integration/test_crash_safety.py`: WebSocket, long-poll and SDK writers through five
  SIGKILLs; every edit present exactly once on every client and on disk.
- `tests/integration/test_faults.py`: a full disk (`RLIMIT_FSIZE`) closes with 1011 and loses
  nothing acknowledged, the file passes `PRAGMA integrity_check`; a consumer that never reads
  cannot grow server memory past its queue cap; half-open connections are found by heartbeats.
- `tests/integration/test_fuzz.py` and the long-poll and API fuzz tests: hostile frames, bodies
  and document ids (`make fuzz`: 100,000 inputs); the server never crashes or answers 500.
"""
    )
