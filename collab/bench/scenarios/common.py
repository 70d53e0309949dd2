"""What every scenario shares: the target, bounded waits, opening peers, reporting trouble."""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import aiohttp

from collab.bench.peer import BasePeer, LongPollReader, Peer, fetch_text
from collab.bench.results import ScenarioResult
from collab.bench.system import CpuShare

KiB = 1024
MS = 1000.0
POLL_SECONDS = 0.01
NOISY_PERCENT = 20.0  # CPU taken by third parties above which figures are flagged

P = TypeVar("P", bound=BasePeer)


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect and what may be measured there."""

    url: str  # e.g. ws://127.0.0.1:8000/ws; the document id is appended after a slash
    server_pid: int | None = None  # only for a server on this machine (/proc)
    connect_concurrency: int = 50
    timeout: float = 10.0
    doc_prefix: str = "bench"

    def new_doc(self, scenario: str) -> str:
        return f"{self.doc_prefix}-{scenario}-{secrets.token_hex(4)}"

    def http_url(self, path: str) -> str:
        """``path`` on the same host over http(s), without the ``/ws`` suffix (Collab's layout)."""
        base = self.url.rstrip("/").removesuffix("/ws")
        return base.replace("ws", "http", 1) + path

    def longpoll_open_url(self, doc_id: str) -> str:
        """Collab's YLP/1 session URL."""
        return self.http_url("/lp/open?doc=" + doc_id)


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() >= deadline:
            return False
        await asyncio.sleep(POLL_SECONDS)
    return True


async def open_synced(
    session: aiohttp.ClientSession,
    target: Target,
    url: str,
    label: str,
    factory: type[Peer] | type[LongPollReader] = Peer,
    **kwargs: int,
) -> BasePeer:
    async with asyncio.timeout(target.timeout):
        peer = await factory.open(session, url, label, **kwargs)
    try:
        await peer.sync(target.timeout)
    except BaseException:
        await peer.close()
        raise
    return peer


@dataclass(slots=True)
class Joins:
    """Connections opened together: how long each that synced took, why the others failed.

    It travels as JSON from the bench's worker processes, which open their shares of a storm
    at once; ``merge`` makes one storm of them again (perf_counter is CLOCK_MONOTONIC on
    Linux, the same clock in every process).
    """

    seconds: list[float] = field(default_factory=list)  # connect + sync of each, sorted
    errors: Counter[str] = field(default_factory=Counter)
    started_at: float = 0.0  # perf_counter of the first attempt
    finished_at: float = 0.0  # and of the last answer

    @property
    def synced(self) -> int:
        return len(self.seconds)

    @property
    def elapsed(self) -> float:
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, object]:
        return {
            "seconds": self.seconds,
            "errors": dict(self.errors),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_json(cls, data: dict) -> Joins:
        return cls(
            data["seconds"], Counter(data["errors"]), data["started_at"], data["finished_at"]
        )

    @classmethod
    def merge(cls, parts: Sequence[Joins]) -> Joins:
        return cls(
            sorted(seconds for part in parts for seconds in part.seconds),
            sum((part.errors for part in parts), Counter()),
            min((part.started_at for part in parts), default=0.0),
            max((part.finished_at for part in parts), default=0.0),
        )


@dataclass(slots=True)
class Opened(Joins, Generic[P]):
    """Peers opened together and still open: those that synced, how long each took, the errors."""

    peers: list[P] = field(default_factory=list)  # in the order they synced


async def open_many(
    count: int, open_one: Callable[[int], Awaitable[P]], concurrency: int
) -> Opened[P]:
    """Run ``open_one(0 .. count-1)``, at most ``concurrency`` at a time, timing each."""
    gate = asyncio.Semaphore(concurrency)
    opened: Opened[P] = Opened()

    async def one(index: int) -> None:
        async with gate:
            started = time.perf_counter()
            try:
                peer = await open_one(index)
            except Exception as exc:
                opened.errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                return
            opened.seconds.append(time.perf_counter() - started)
            opened.peers.append(peer)

    opened.started_at = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    opened.finished_at = time.perf_counter()
    opened.seconds.sort()
    return opened


async def connect_many(
    session: aiohttp.ClientSession,
    target: Target,
    urls: Sequence[str],
    label: str,
    factory: type[Peer] | type[LongPollReader] = Peer,
    concurrency: int | None = None,
) -> Opened[BasePeer]:
    """Open and sync one peer per url, at most ``concurrency`` (default: the target's
    ``connect_concurrency``) at a time; the peers stay open."""

    def one(index: int) -> Awaitable[BasePeer]:
        return open_synced(session, target, urls[index], f"{label}-{index}", factory)

    return await open_many(len(urls), one, concurrency or target.connect_concurrency)


async def close_all(peers: Sequence[BasePeer], timeout: float) -> None:
    if not peers:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout + 5):
            await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)


def report_connect_errors(result: ScenarioResult, errors: Counter[str], wanted: int) -> None:
    failed = sum(errors.values())
    if failed:
        worst = ", ".join(f"{text} (x{n})" for text, n in errors.most_common(3))
        hint = ""
        if any("429" in text for text in errors):
            hint = " (429: the server limits connection attempts per client address)"
        result.problem(f"{failed} of {wanted} connections failed: {worst}{hint}")


def closed_by_server(peers: Sequence[BasePeer]) -> Counter[int | None]:
    """Close codes of the connections the server ended (None: dropped without a close frame)."""
    return Counter(p.stats.close_code for p in peers if p.stats.closed_by_server)


def report_peer_trouble(result: ScenarioResult, peers: Sequence[BasePeer]) -> None:
    """Connections the server ended and frames it got wrong."""
    codes = closed_by_server(peers)
    closed = sum(codes.values())
    if closed:
        detail = ", ".join(f"code {code} x{n}" for code, n in codes.most_common())
        result.problem(f"the server closed {closed} connections during the run ({detail})")
    bad = sum(p.stats.bad_frames for p in peers)
    if bad:
        result.problem(f"{bad} frames received were not valid y-websocket messages")


def cpu_metrics(result: ScenarioResult, cpu: CpuShare) -> None:
    result.add("server_cpu_percent", "server CPU (100% = one core)", cpu.server, "%")
    result.add("bench_cpu_percent", "bench client CPU (100% = one core)", cpu.bench, "%")
    result.add("other_cpu_percent", "other processes' CPU (noise)", cpu.other, "%")
    warn_if_noisy(result, cpu)


def warn_if_noisy(result: ScenarioResult, cpu: CpuShare) -> None:
    if cpu.other is not None and cpu.other > NOISY_PERCENT:
        result.warn(
            f"other processes used {cpu.other:.0f}% of a core during the measurement: "
            "the figures are skewed, rerun on a quiet machine"
        )


async def check_convergence(
    session: aiohttp.ClientSession,
    result: ScenarioResult,
    target: Target,
    url: str,
    check: Callable[[str], str],
) -> None:
    """Sync a fresh client; ``check`` returns "" or why the text is wrong."""
    text, error = await fetch_text(session, url, target.timeout)
    why = error or check(text or "")
    result.add("converged", "fresh client converged", not why)
    if why:
        result.problem(why)


def marked_text_check(expected_chars: int, expected_updates: int) -> Callable[[str], str]:
    """Writers append marked inserts concurrently: the order is free, the totals are not."""

    def check(text: str) -> str:
        seen = text.count("[#")
        if len(text) == expected_chars and seen == expected_updates:
            return ""
        return (
            f"fresh client sees {len(text)} characters and {seen} updates, "
            f"the writers wrote {expected_chars} characters in {expected_updates} updates"
        )

    return check


def mib(value: int | None) -> float | None:
    return None if value is None else value / (1024 * 1024)


def per_item(after: int | None, before: int | None, count: int, unit: int) -> float | None:
    """``(after - before) / count`` in ``unit``s; None when either reading is missing."""
    if after is None or before is None:
        return None
    return (after - before) / max(count, 1) / unit
