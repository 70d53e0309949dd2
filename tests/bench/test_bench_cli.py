"""Smoke tests of the bench scenarios at tiny sizes against an in-process Collab: the runs
complete, nothing is lost and a fresh client converges. No timing assertions."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from collab.bench import scenarios
from collab.bench.results import ScenarioResult, markdown_table
from collab.bench.traces import default_trace, replay
from collab.server.settings import Settings
from tests.support import RunningServer, running_server


def _target(server: RunningServer) -> scenarios.Target:
    return scenarios.Target(server.url.replace("http://", "ws://") + "/ws", timeout=5.0)


def _metric(result: ScenarioResult, key: str) -> object:
    return next(m.value for m in result.metrics if m.key == key)


def _children() -> set[int]:
    """Processes this test process started and that still exist (worker processes)."""
    tasks = Path(f"/proc/{os.getpid()}/task")
    found: set[int] = set()
    for task in tasks.iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


async def test_fanout(server: RunningServer) -> None:
    result = await scenarios.fanout(_target(server), readers=3, rate=50.0, duration=0.4)
    assert result.ok, result.problems
    assert _metric(result, "delivered") == 3 * 20
    assert _metric(result, "missing") == 0
    assert _metric(result, "converged") is True


async def test_fanout_readers_in_two_processes(server: RunningServer) -> None:
    before = _children()
    result = await scenarios.fanout(
        _target(server), readers=5, rate=50.0, duration=0.4, reader_processes=2
    )
    assert result.ok, result.problems
    assert result.params["reader_processes"] == 2
    assert _metric(result, "readers_connected") == 5
    assert _metric(result, "delivered") == 5 * 20
    assert _metric(result, "missing") == _metric(result, "reordered") == 0
    assert _metric(result, "converged") is True
    assert _children() == before


async def test_fanout_longpoll(server: RunningServer) -> None:
    result = await scenarios.fanout(
        _target(server), readers=3, rate=50.0, duration=0.4, longpoll=True
    )
    assert result.ok, result.problems
    assert result.scenario == "fanout_longpoll"
    assert _metric(result, "delivered") == 3 * 20
    assert _metric(result, "converged") is True


async def test_throughput_readers_in_worker_processes(server: RunningServer) -> None:
    result = await scenarios.throughput(
        _target(server), writers=1, readers=3, duration=0.5, reader_processes=2
    )
    assert result.ok, result.problems
    assert _metric(result, "readers_connected") == 3
    sent = _metric(result, "updates_sent")
    assert isinstance(sent, int) and sent > 0
    assert _metric(result, "updates_delivered") == 3 * sent
    assert _metric(result, "converged") is True


async def test_presence(server: RunningServer) -> None:
    result = await scenarios.presence(_target(server), clients=4, duration=1.0, rate=2.0)
    assert result.ok, result.problems
    assert _metric(result, "delivered") == 4 * 3 * 2
    assert _metric(result, "missing") == 0


async def test_connect(server: RunningServer) -> None:
    result = await scenarios.connect(_target(server), clients=10)
    assert result.ok, result.problems
    assert _metric(result, "connected") == 10


async def test_connect_clients_in_two_processes(server: RunningServer) -> None:
    before = _children()
    result = await scenarios.connect(_target(server), clients=9, docs=3, client_processes=2)
    assert result.ok, result.problems
    assert result.params["client_processes"] == 2
    assert _metric(result, "connected") == 9
    assert _children() == before


async def test_worker_processes_end_when_nothing_answers() -> None:
    before = _children()
    target = scenarios.Target("ws://127.0.0.1:1/ws", timeout=2.0)  # nothing listens on port 1
    result = await scenarios.connect(target, clients=4, docs=4, client_processes=2)
    assert not result.ok
    assert _children() == before


async def test_connect_a_document_each(server: RunningServer) -> None:
    result = await scenarios.connect(_target(server), clients=6, docs=6)
    assert result.ok, result.problems
    assert result.params["docs"] == 6
    assert _metric(result, "connected") == 6


async def test_idle(server: RunningServer) -> None:
    result = await scenarios.idle(_target(server), connections=6, docs=2, hold=0.2)
    assert result.ok, result.problems
    assert _metric(result, "alive_after_hold") == 6


async def test_manydocs_sees_the_documents_unloaded(settings: Settings) -> None:
    async with running_server(replace(settings, idle_evict_seconds=0.2)) as server:
        result = await scenarios.manydocs(
            _target(server), docs=3, rate=2.0, duration=1.0, evict_wait=10.0
        )
    assert result.ok, result.problems
    assert _metric(result, "clients_connected") == 6
    assert _metric(result, "updates_delivered") == _metric(result, "updates_sent") == 12
    assert _metric(result, "rooms_loaded") == 3
    assert _metric(result, "rooms_after_leave") == 0
    assert _metric(result, "evicted_after_s") is not None
    assert _metric(result, "converged") is True


async def test_bigdoc(server: RunningServer) -> None:
    trace = default_trace()
    assert trace is not None
    result = await scenarios.bigdoc(_target(server), trace, patches=2000, fresh=2, joiners=5)
    assert result.ok, result.problems
    assert _metric(result, "join_synced") == 5
    assert _metric(result, "join_failed") == _metric(result, "join_reconnects") == 0
    assert _metric(result, "converged") is True


def test_trace_replay_matches_the_published_checkpoint() -> None:
    trace = default_trace()
    assert trace is not None
    built = replay(trace, 20_000)  # tests/data/README.md and the trace corpus give this hash
    assert (built.patches, built.chars, built.complete) == (20_000, 14_302, False)
    assert built.sha256 == "9d4114b210b2cca71082e7f6f5ce65a195a95e82b63756cb2f227a667fe37270"


async def test_durable(server: RunningServer) -> None:
    result = await scenarios.durable(_target(server), writers=2, duration=0.3)
    assert result.ok, result.problems
    assert _metric(result, "writers_connected") == 2
    stored = _metric(result, "updates_stored")
    assert isinstance(stored, int) and stored > 0
    assert _metric(result, "barriers_failed") == 0
    assert _metric(result, "converged") is True


async def test_cli_prints_json(server: RunningServer) -> None:
    url = _target(server).url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collab", "bench", "durable", "--url", url, "--duration", "0.3",
        "--json", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    output = json.loads(stdout)
    assert output["scenario"] == "durable"
    assert output["ok"] is True
    assert output["metrics"]["converged"] is True


def test_markdown_table_has_ratio_column() -> None:
    ours = ScenarioResult("fanout", "t", {})
    ours.add("latency_p50_ms", "delivery latency p50", 2.0, "ms")
    theirs = ScenarioResult("fanout", "t", {})
    theirs.add("latency_p50_ms", "delivery latency p50", 4.0, "ms")
    table = markdown_table([("Collab", ours), ("reference", theirs)])
    assert "| delivery latency p50 | 2.00 ms | 4.00 ms | 0.50× | lower |" in table


def test_markdown_table_compares_every_variant_with_the_last_column() -> None:
    columns = []
    for name, rate in (("NORMAL", 900.0), ("FULL", 300.0), ("reference", 1200.0)):
        result = ScenarioResult("durable", "t", {})
        result.add("durable_per_s", "acknowledged updates/s", rate, "updates/s")
        columns.append((name, result))
    table = markdown_table(columns)
    assert "| metric | NORMAL | FULL | reference | NORMAL / reference | FULL / reference |" in table
    assert "| 0.75× | 0.25× | higher |" in table
