"""``collab bench report``: run every scenario against a fresh local Collab, write Markdown.

Each scenario gets its own server process (``python -m collab serve --port 0`` with a
temporary data directory and default settings), so memory figures are not skewed by an
earlier scenario's heap and the server's pid is known for RSS and CPU readings. The same runs
then go against the reference server (collab.bench.reference), a fresh process each time: the
tables have one column per server and the ratio Collab / reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from collab.bench import scenarios
from collab.bench.reference import NAME as REFERENCE_NAME
from collab.bench.reference import install, reference_server, versions
from collab.bench.results import (
    ScenarioResult,
    better,
    format_value,
    markdown_table,
    ratio,
    text_table,
)
from collab.bench.system import MachineInfo, machine_info, stop_process, wait_for_quiet

_LISTENING = re.compile(r"listening on http://(\S+)")
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 20.0
SERVER_NAME = "Collab"
REFERENCE_DIR = Path("bench-ref")  # gitignored; the reference server is installed here
Column = tuple[str, ScenarioResult]
Body = Callable[[scenarios.Target], Awaitable[ScenarioResult]]
_QUIET_PERCENT = 15.0  # each scenario waits for the machine to be this idle ...


@dataclass(frozen=True, slots=True)
class Plan:
    """Scenario sizes; ``quick`` shrinks them for a smoke run (figures not comparable).

    Fanout runs twice: with 100 readers (the headline load) and with 10, where the bench
    client is far from saturated, so the second run shows the server's own per-hop latency.
    """

    fanouts: tuple[tuple[int, float, float], ...] = (
        (100, 200.0, 10.0),
        (10, 200.0, 10.0),
        (50, 50.0, 10.0),  # the WebSocket twin of the long-poll run
    )
    throughput_writers: int = 4
    throughput_readers: int = 20
    throughput_duration: float = 10.0
    throughput_window: int = 1000
    idle_connections: int = 1000
    idle_hold: float = 20.0  # longer than the 15 s keep-alive, so one is observed
    longpoll: tuple[int, float, float] = (50, 50.0, 10.0)  # readers, updates/s, seconds
    presence_clients: int = 200
    presence_duration: float = 10.0
    connect_clients: int = 1000
    quiet_wait: float = 60.0  # at most this long before each run for the machine to be idle

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            ((20, 100.0, 3.0), (5, 100.0, 3.0), (50, 50.0, 3.0)),
            2, 5, 3.0, 1000, 200, 2.0, (50, 50.0, 3.0), 50, 3.0, 200, 5.0,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class LocalServer:
    url: str
    pid: int
    log_path: Path
    log_start: int  # startup warnings (e.g. "no --auth-key") are not the bench's business
    every_line: bool = False  # Node prints to stderr only on errors

    def log_problems(self) -> list[str]:
        """Warning and error lines logged during the run (send-queue overflows, store errors)."""
        try:
            with self.log_path.open("rb") as log_file:
                log_file.seek(self.log_start)
                lines = log_file.read().decode(errors="replace").splitlines()
        except OSError:
            return []
        if self.every_line:
            return [line for line in lines if line.strip()]
        return [line for line in lines if " WARNING " in line or " ERROR " in line]


@contextlib.asynccontextmanager
async def local_server(data_dir: Path) -> AsyncIterator[LocalServer]:
    """Start Collab as a child process on a free loopback port; stop it with SIGTERM."""
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collab", "serve", "--host", "127.0.0.1", "--port", "0",
            "--data-dir", str(data_dir / "data"),
            stdout=asyncio.subprocess.PIPE, stderr=log_file, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(_START_TIMEOUT):
            line = (await process.stdout.readline()).decode(errors="replace")
        found = _LISTENING.search(line)
        if not found:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(
                f"the server did not start (stdout: {line.strip()!r}); its log ends with:\n"
                + "\n".join(tail)
            )
        await asyncio.sleep(0.1)  # lines logged right after "listening" belong to startup
        yield LocalServer(
            f"ws://{found.group(1)}/ws", process.pid, log_path, log_path.stat().st_size
        )
    finally:
        await stop_process(process, _STOP_TIMEOUT)


@contextlib.asynccontextmanager
async def _server(kind: str, data_dir: Path, script: Path | None) -> AsyncIterator[LocalServer]:
    if kind == SERVER_NAME:
        async with local_server(data_dir) as server:
            yield server
        return
    assert script is not None
    log_path = data_dir / "reference.log"
    async with reference_server(script, log_path) as (url, pid):
        yield LocalServer(url, pid, log_path, 0, every_line=True)


async def _run_one(
    name: str,
    kind: str,
    body: Body,
    plan: Plan,
    script: Path | None,
) -> ScenarioResult:
    busy = await wait_for_quiet(_QUIET_PERCENT, max_wait=plan.quiet_wait)
    if busy is not None and busy > _QUIET_PERCENT:
        print(
            f"collab bench: the machine stayed busy ({busy:.0f}% of a core) "
            f"for {plan.quiet_wait:g} s",
            file=sys.stderr,
        )
    print(f"collab bench: running {name} against a fresh {kind} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="collab-bench-") as tmp:
        async with _server(kind, Path(tmp), script) as server:
            result = await body(scenarios.Target(server.url, server.pid))
            await asyncio.sleep(0.2)  # let the server log closes that our peers caused
            warnings = server.log_problems()
    result.add("server_log_warnings", "server log warnings/errors", len(warnings))
    for line in warnings[:3]:
        result.problem(f"server log: {line[:200]}")
    print(text_table(result), file=sys.stderr, flush=True)
    return result


def _runs(plan: Plan) -> list[tuple[str, bool, Body]]:
    """(name, reference too?, body) for every scenario of the plan, in report order."""
    runs: list[tuple[str, bool, Body]] = [
        (
            f"fanout ({readers} readers)",
            True,
            lambda t, r=readers, u=rate, d=duration: scenarios.fanout(t, r, u, d),
        )
        for readers, rate, duration in plan.fanouts
    ]
    readers, rate, duration = plan.longpoll
    runs.append(
        (
            f"fanout over long-poll ({readers} readers)",
            False,
            lambda t: scenarios.fanout(t, readers, rate, duration, longpoll=True),
        )
    )
    runs.append(
        (
            "throughput",
            True,
            lambda t: scenarios.throughput(
                t,
                plan.throughput_writers,
                plan.throughput_readers,
                plan.throughput_duration,
                plan.throughput_window,
            ),
        )
    )
    runs.append(
        (
            "presence",
            True,
            lambda t: scenarios.presence(t, plan.presence_clients, plan.presence_duration),
        )
    )
    runs.append(("connect", True, lambda t: scenarios.connect(t, plan.connect_clients)))
    runs.append(
        ("idle", True, lambda t: scenarios.idle(t, plan.idle_connections, hold=plan.idle_hold))
    )
    return runs


async def run_report(plan: Plan, script: Path | None) -> list[list[Column]]:
    """Every scenario against Collab, then (with ``script``) against the reference server."""
    tables = []
    for name, with_reference, body in _runs(plan):
        columns = [(SERVER_NAME, await _run_one(name, SERVER_NAME, body, plan, None))]
        if with_reference and script is not None:
            columns.append(
                (REFERENCE_NAME, await _run_one(name, REFERENCE_NAME, body, plan, script))
            )
        tables.append(columns)
    return tables


_ABOUT = {
    "fanout": (
        "One writer inserts a short marked string into a Y.Text at a fixed rate; every reader "
        "is connected to the same document. Latency is the time from the writer's send call to "
        "a reader's receipt of the `00 02` frame that carries that update (the bench finds the "
        "writer's marker inside the forwarded update, so order is checked, not assumed). "
        "All readers live in the one bench process, so with many readers the bench client's "
        "CPU, not only the server, sets the latency; compare the run with fewer readers."
    ),
    "throughput": (
        "Several writers on one document send as fast as the slowest reader keeps up: at most "
        "*window* updates are sent but not yet received by every reader (flow control through "
        "the readers, since the protocol has no acknowledgement). Every accepted update is "
        "applied, stored in SQLite and forwarded to the readers and to the other writers. "
        "Writers append to the end of the text, like typing, so the document grows during "
        "the run; pycrdt's cost of applying such an update grows with the length of the "
        "appended run of text, which is why the last second is slower than the first."
    ),
    "fanout_longpoll": (
        "The same fanout, but the readers use Collab's long-poll transport (YLP/1: one HTTP "
        "GET held open per reader, acknowledged frames, kept-alive HTTP connections); the "
        "writer stays on the WebSocket. The reference server has no long-poll transport; "
        "compare with the WebSocket fanout at the same size and rate above."
    ),
    "presence": (
        "Every client on one document sends its cursor (an awareness update) once a second, "
        "spread evenly over the second; every other client must receive it. Latency is from "
        "the send call to the receipt of the awareness message carrying that state (found by "
        "a marker in the state JSON, so merged messages count)."
    ),
    "connect": (
        "A connect storm: clients open a WebSocket to one document (which holds 20 updates) "
        "and complete the sync handshake, a bounded number at a time. Sync time is from the "
        "connect call to the server's step2; the clients stay connected until the end."
    ),
    "idle": (
        "Connections that sync and then stay silent, ten per document. Server memory is "
        "VmRSS of the server process after a warm-up connection, then with every connection "
        "open; the difference is divided by the number of connections (it includes the loaded "
        "documents and the per-connection writer task and queue). The server also needs one "
        "file descriptor per connection, so the bench raises its open-files limit to the hard "
        "limit before starting the server, which inherits it."
    ),
}


_CONDITIONS = (
    "**The bench client and the server share these {cpus} cores**, and both are "
    "single-threaded asyncio processes. The client's CPU use is shown next to the server's in "
    "every table: when the client is near 100 % of a core, the figures measure the client as "
    "much as the server; the row *other processes' CPU* shows what the rest of the machine "
    "took meanwhile (a run above 20 % of a core is flagged; before each scenario the bench "
    "waits, at most a minute, for the machine to be nearly idle). Latencies include the client's "
    "own scheduling: the readers of one update are served one after another by one event "
    "loop, so p99 grows with the number of readers even on an ideal server. Everything runs "
    "over loopback (127.0.0.1). Each scenario runs against a fresh server (`python -m collab "
    "serve --port 0`, SQLite in a temporary directory, default settings: WAL, "
    "`synchronous=NORMAL`)."
)

_HEADLINES = {
    "fanout": ("latency_p50_ms", "latency_p99_ms", "delivered_per_s"),
    "fanout_longpoll": ("latency_p50_ms", "latency_p99_ms", "delivered_per_s"),
    "presence": ("latency_p50_ms", "latency_p99_ms", "server_cpu_percent"),
    "connect": ("connect_rate", "sync_p50_ms", "sync_p99_ms"),
    "throughput": ("accepted_per_s", "delivered_per_s"),
    "idle": ("rss_per_conn_kib",),
}


def _short_name(result: ScenarioResult) -> str:
    if result.scenario == "fanout":
        return f"fanout, {result.params['readers']} readers x {result.params['rate']:g}/s"
    if result.scenario == "fanout_longpoll":
        return f"long-poll fanout, {result.params['readers']} readers x {result.params['rate']:g}/s"
    return result.scenario


def _summary(tables: list[list[Column]], reference: bool) -> str:
    names = [SERVER_NAME, *([REFERENCE_NAME, "Collab / reference", "better"] if reference else [])]
    lines = ["| | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    skewed = False
    for columns in tables:
        first = columns[0][1]
        for key in _HEADLINES.get(first.scenario, ()):
            found = [next((m for m in r.metrics if m.key == key), None) for _, r in columns]
            if found[0] is None:
                continue
            cells = []
            for (_, result), metric in zip(columns, found, strict=True):
                mark = " *" if result.warnings else ""
                skewed = skewed or bool(mark)
                cells.append(format_value(metric.value, metric.unit) + mark if metric else "")
            if reference and len(columns) == 1:
                cells += ["(Collab only)", "", better(found[0])]
            elif reference:
                cells += [ratio(found[0], found[1]), better(found[0])]
            lines.append(f"| {_short_name(first)}: {found[0].label} | " + " | ".join(cells) + " |")
    if skewed:
        lines += ["", "\\* measured while other processes took CPU (see the scenario's warnings)."]
    return "\n".join(lines)


_FAIRNESS = (
    "**Fairness.** The reference server ({reference}) keeps documents in memory only: it has no "
    "persistence unless started with `YPERSISTENCE`, which the bench does not set. Collab "
    "commits every update to SQLite before acknowledging it (WAL, `synchronous=NORMAL`), so "
    "each Collab figure includes a durable write the reference server does not do. Ratios are "
    "Collab / reference; the *better* column says whether a higher or a lower value is better "
    "for that metric, so a ratio above 1 is a win only where higher is better."
)


def render(
    tables: list[list[Column]], machine: MachineInfo, plan: Plan, quick: bool, reference: str
) -> str:
    command = "collab bench report --output docs/benchmarks.md" + (" --quick" if quick else "")
    parts = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` (`make bench`) on {machine.date}. One run on the machine "
        "below; rerun it to compare revisions on the same machine, not across machines.",
    ]
    if quick:
        parts += ["", "**Quick run: reduced sizes, figures are a smoke test only.**"]
    parts += [
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        f"| CPU | {machine.cpus} × {machine.cpu_model} |",
        f"| memory | {machine.memory} |",
        f"| OS | {machine.kernel} |",
        f"| Python / pycrdt / aiohttp | {machine.python} / {machine.pycrdt} / {machine.aiohttp} |",
        f"| Collab revision | {machine.git} |",
        f"| reference server | {reference or 'not run'} |",
        f"| open-files limit (bench and server) | {machine.open_files} |",
        f"| load average before the run (1 / 5 / 15 min) | {machine.load} |",
        "",
        _CONDITIONS.format(cpus=machine.cpus),
        "",
    ]
    if reference:
        parts += [_FAIRNESS.format(reference=reference), ""]
    parts += ["## Summary", "", _summary(tables, bool(reference))]
    for columns in tables:
        result = columns[0][1]
        params = ", ".join(f"{k}={v}" for k, v in result.params.items())
        parts += ["", f"## {result.title}", "", _ABOUT.get(result.scenario, ""), ""]
        parts += [f"Parameters: `{params}`.", "", markdown_table(columns)]
        for name, run in columns:
            if run.problems:
                parts += ["", f"Problems seen in this run ({name}):", ""]
                parts += [f"- {text}" for text in run.problems]
            if run.warnings:
                parts += ["", f"Warnings ({name}):", ""]
                parts += [f"- {text}" for text in run.warnings]
    parts += [
        "",
        "## Reproduce",
        "",
        "```sh",
        f".venv/bin/{command}",
        "# or one scenario against any y-websocket compatible server:",
        "collab bench fanout --url ws://127.0.0.1:8000/ws --readers {} --rate {:g} "
        "--duration {:g}".format(*plan.fanouts[0]),
        "collab bench fanout --longpoll --url ws://127.0.0.1:8000/ws --readers {} --rate {:g} "
        "--duration {:g}".format(*plan.longpoll),
        f"collab bench throughput --url ws://127.0.0.1:8000/ws --writers "
        f"{plan.throughput_writers} --readers {plan.throughput_readers} "
        f"--duration {plan.throughput_duration:g} --window {plan.throughput_window}",
        f"collab bench presence --url ws://127.0.0.1:8000/ws --clients {plan.presence_clients}",
        f"collab bench connect --url ws://127.0.0.1:8000/ws --clients {plan.connect_clients}",
        f"collab bench idle --url ws://127.0.0.1:8000/ws --connections "
        f"{plan.idle_connections} --server-pid <pid of the server>",
        "# the reference server (its rooms are ws://HOST:PORT/<room>, no /ws prefix):",
        "HOST=127.0.0.1 PORT=1234 node bench-ref/node_modules/@y/websocket-server/src/server.js",
        "collab bench fanout --url ws://127.0.0.1:1234",
        "```",
        "",
        "`--server-pid` enables the memory and CPU readings (from `/proc`, same machine only); "
        "`--json` prints machine-readable results.",
        "",
    ]
    return "\n".join(parts)


async def write_report(
    output: Path, plan: Plan, quick: bool, with_reference: bool = True
) -> list[ScenarioResult]:
    machine = machine_info()  # before the run: the load average must not include ours
    script = install(REFERENCE_DIR) if with_reference else None
    tables = await run_report(plan, script)
    output.parent.mkdir(parents=True, exist_ok=True)
    reference = versions(REFERENCE_DIR) if script else ""
    text = render(tables, machine, plan, quick, reference)
    temporary = output.with_name(output.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, output)
    return [result for columns in tables for _, result in columns]
