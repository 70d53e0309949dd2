"""Smoke tests of the bench scenarios at tiny sizes against an in-process Collab: the runs
complete, nothing is lost and a fresh client converges. No timing assertions."""

from __future__ import annotations

from collab.bench import scenarios
from collab.bench.results import ScenarioResult, markdown_table
from tests.support import RunningServer


def _target(server: RunningServer) -> scenarios.Target:
    return scenarios.Target(server.url.replace("http://", "ws://") + "/ws", timeout=5.0)


def _metric(result: ScenarioResult, key: str) -> object:
    return next(m.value for m in result.metrics if m.key == key)


async def test_fanout(server: RunningServer) -> None:
    result = await scenarios.fanout(_target(server), readers=3, rate=50.0, duration=0.4)
    assert result.ok, result.problems
    assert _metric(result, "delivered") == 3 * 20
    assert _metric(result, "missing") == 0
    assert _metric(result, "converged") is True


async def test_fanout_longpoll(server: RunningServer) -> None:
    result = await scenarios.fanout(
        _target(server), readers=3, rate=50.0, duration=0.4, longpoll=True
    )
    assert result.ok, result.problems
    assert result.scenario == "fanout_longpoll"
    assert _metric(result, "delivered") == 3 * 20
    assert _metric(result, "converged") is True


async def test_throughput(server: RunningServer) -> None:
    result = await scenarios.throughput(_target(server), writers=2, readers=2, duration=0.5)
    assert result.ok, result.problems
    assert _metric(result, "updates_sent") > 0
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


async def test_idle(server: RunningServer) -> None:
    result = await scenarios.idle(_target(server), connections=6, docs=2, hold=0.2)
    assert result.ok, result.problems
    assert _metric(result, "alive_after_hold") == 6


def test_markdown_table_has_ratio_column() -> None:
    ours = ScenarioResult("fanout", "t", {})
    ours.add("latency_p50_ms", "delivery latency p50", 2.0, "ms")
    theirs = ScenarioResult("fanout", "t", {})
    theirs.add("latency_p50_ms", "delivery latency p50", 4.0, "ms")
    table = markdown_table([("Collab", ours), ("reference", theirs)])
    assert "| delivery latency p50 | 2.00 ms | 4.00 ms | 0.50× | lower |" in table
