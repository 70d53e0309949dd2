"""``collab bench report``: run every scenario against a fresh local Collab, write Markdown.

Each scenario gets its own server process (``python -m collab serve --port 0`` with a
temporary data directory and default settings, or the flags a scenario needs), so memory
figures are not skewed by an earlier scenario's heap and the server's pid is known for RSS and
CPU readings. A scenario may run against several Collab variants (durable: ``--synchronous
NORMAL`` and ``FULL``). The same runs then go against the reference server
(collab.bench.reference), a fresh process each time: the tables have one column per server
and the ratios against the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from collab.bench import scenarios
from collab.bench.reference import NAME as REFERENCE_NAME
from collab.bench.reference import install, reference_server, versions
from collab.bench.results import (
    Metric,
    ScenarioResult,
    better,
    format_value,
    markdown_table,
    ratio,
    text_table,
)
from collab.bench.system import MachineInfo, machine_info, stop_process, wait_for_quiet
from collab.bench.traces import default_trace

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
        (500, 200.0, 10.0),  # where a server that sends every update to every reader saturates
        (10, 200.0, 10.0),
        (50, 50.0, 10.0),  # the WebSocket twin of the long-poll run
    )
    throughput_writers: int = 1
    throughput_readers: int = 100
    throughput_duration: float = 10.0
    throughput_window: int = 1000
    idle_connections: int = 5000
    idle_hold: float = 20.0  # longer than the 15 s keep-alive, so one is observed
    longpoll: tuple[int, float, float] = (50, 50.0, 10.0)  # readers, updates/s, seconds
    presence_clients: int = 200
    presence_duration: float = 10.0
    connect_clients: int = 1000
    manydocs_docs: int = 1000
    manydocs_duration: float = 10.0
    bigdoc_patches: int | None = None  # the whole trace
    bigdoc_fresh: int = 5
    bigdoc_joiners: int = 50
    durable_duration: float = 5.0
    quiet_wait: float = 60.0  # at most this long before each run for the machine to be idle

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            fanouts=((20, 100.0, 3.0), (5, 100.0, 3.0), (50, 50.0, 3.0)),
            throughput_duration=3.0,
            idle_connections=200,
            idle_hold=2.0,
            longpoll=(50, 50.0, 3.0),
            presence_clients=50,
            presence_duration=3.0,
            connect_clients=200,
            manydocs_docs=100,
            manydocs_duration=3.0,
            bigdoc_patches=20_000,
            bigdoc_fresh=3,
            durable_duration=2.0,
            quiet_wait=5.0,
        )


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
async def local_server(data_dir: Path, flags: Sequence[str] = ()) -> AsyncIterator[LocalServer]:
    """Start Collab as a child process on a free loopback port; stop it with SIGTERM."""
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collab", "serve", "--host", "127.0.0.1", "--port", "0",
            "--data-dir", str(data_dir / "data"), *flags,
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
async def _server(
    data_dir: Path, script: Path | None, flags: Sequence[str]
) -> AsyncIterator[LocalServer]:
    """Collab with ``flags``, or (with ``script``) the reference server."""
    if script is None:
        async with local_server(data_dir, flags) as server:
            yield server
        return
    log_path = data_dir / "reference.log"
    async with reference_server(script, log_path) as (url, pid):
        yield LocalServer(url, pid, log_path, 0, every_line=True)


async def _run_one(
    name: str,
    column: str,
    body: Body,
    plan: Plan,
    script: Path | None,
    flags: Sequence[str] = (),
) -> ScenarioResult:
    busy = await wait_for_quiet(_QUIET_PERCENT, max_wait=plan.quiet_wait)
    if busy is not None and busy > _QUIET_PERCENT:
        print(
            f"collab bench: the machine stayed busy ({busy:.0f}% of a core) "
            f"for {plan.quiet_wait:g} s",
            file=sys.stderr,
        )
    print(f"collab bench: running {name} against a fresh {column} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="collab-bench-") as tmp:
        async with _server(Path(tmp), script, flags) as server:
            result = await body(scenarios.Target(server.url, server.pid))
            await asyncio.sleep(0.2)  # let the server log closes that our peers caused
            warnings = server.log_problems()
    result.add("server_log_warnings", "server log warnings/errors", len(warnings))
    for line in warnings[:3]:
        result.problem(f"server log: {line[:200]}")
    print(text_table(result), file=sys.stderr, flush=True)
    return result


@dataclass(frozen=True, slots=True)
class Run:
    """One table of the report: the scenario against each Collab variant, then the reference."""

    name: str
    body: Body
    reference: bool = True
    variants: tuple[tuple[str, tuple[str, ...]], ...] = ((SERVER_NAME, ()),)  # column, flags


# Thousands of bench clients connect within a minute from one address (the default limit,
# meant for one abusive client, is 1,200 a minute).
MANY_CLIENTS_FLAGS = ("--connect-attempts-per-minute", "100000")
IDLE_CLIENTS_PER_DOC = 10  # as the idle scenario spreads them
# Documents unload 5 s after their last client left (not 30 s) so the run sees it.
MANYDOCS_FLAGS = ("--idle-evict-seconds", "5", *MANY_CLIENTS_FLAGS)
MANYDOCS_EVICT_WAIT = 20.0
DURABLE_VARIANTS = tuple(
    (f"{SERVER_NAME} synchronous={mode}", ("--synchronous", mode)) for mode in ("NORMAL", "FULL")
)


def _runs(plan: Plan, trace: Path | None) -> list[Run]:
    """Every scenario of the plan, in report order (bigdoc only with a trace file)."""
    runs = [
        Run(
            f"fanout ({readers} readers)",
            lambda t, r=readers, u=rate, d=duration: scenarios.fanout(t, r, u, d),
        )
        for readers, rate, duration in plan.fanouts
    ]
    readers, rate, duration = plan.longpoll
    runs += [
        Run(
            f"fanout over long-poll ({readers} readers)",
            lambda t: scenarios.fanout(t, readers, rate, duration, longpoll=True),
            reference=False,
        ),
        Run(
            "throughput",
            lambda t: scenarios.throughput(
                t,
                plan.throughput_writers,
                plan.throughput_readers,
                plan.throughput_duration,
                plan.throughput_window,
            ),
        ),
        Run(
            "presence",
            lambda t: scenarios.presence(t, plan.presence_clients, plan.presence_duration),
        ),
        Run("connect (one document)", lambda t: scenarios.connect(t, plan.connect_clients)),
        Run(
            "connect (a document each)",
            lambda t: scenarios.connect(t, plan.connect_clients, docs=plan.connect_clients),
        ),
        Run(  # the idle storm's size, with the clients in worker processes: the accept rate
            "connect (the idle storm's size)",
            lambda t: scenarios.connect(
                t, plan.idle_connections, docs=plan.idle_connections // IDLE_CLIENTS_PER_DOC
            ),
            variants=((SERVER_NAME, MANY_CLIENTS_FLAGS),),
        ),
        Run(
            "idle",
            lambda t: scenarios.idle(t, plan.idle_connections, hold=plan.idle_hold),
            variants=((SERVER_NAME, MANY_CLIENTS_FLAGS),),
        ),
        Run(
            "manydocs",
            lambda t: scenarios.manydocs(
                t,
                plan.manydocs_docs,
                duration=plan.manydocs_duration,
                evict_wait=MANYDOCS_EVICT_WAIT,
            ),
            variants=((SERVER_NAME, MANYDOCS_FLAGS),),
        ),
    ]
    if trace is not None:
        runs.append(
            Run(
                "bigdoc",
                lambda t: scenarios.bigdoc(
                    t, trace, plan.bigdoc_patches, plan.bigdoc_fresh, plan.bigdoc_joiners
                ),
            )
        )
    runs.append(
        Run(
            "durable",
            lambda t: scenarios.durable(t, duration=plan.durable_duration),
            variants=DURABLE_VARIANTS,
        )
    )
    return runs


async def run_report(plan: Plan, script: Path | None) -> list[list[Column]]:
    """Every scenario against Collab, then (with ``script``) against the reference server."""
    trace = default_trace()
    if trace is None:
        print("collab bench: no editing trace found, bigdoc is left out", file=sys.stderr)
    tables = []
    for run in _runs(plan, trace):
        columns = [
            (column, await _run_one(run.name, column, run.body, plan, None, flags))
            for column, flags in run.variants
        ]
        if run.reference and script is not None:
            columns.append(
                (REFERENCE_NAME, await _run_one(run.name, REFERENCE_NAME, run.body, plan, script))
            )
        tables.append(columns)
    return tables


_ABOUT = {
    "fanout": (
        "One writer inserts a short marked string into a Y.Text at a fixed rate; every reader "
        "is connected to the same document. Latency is the time from the writer's send call to "
        "a reader's receipt of the `00 02` frame that carries that update (the bench finds the "
        "writer's marker inside the forwarded update, so order is checked, not assumed). "
        "The readers live in worker processes apart from the writer (*reader_processes*: one "
        "per core, at most four) and note arrivals on CLOCK_MONOTONIC, the clock the writer's "
        "send times are read on too. Within a worker the readers of an update are still served "
        "one after another, and every frame is parsed in Python: with hundreds of readers the "
        "bench client's CPU (shown in the table), not only the server, sets the latency; "
        "compare the run with fewer readers."
    ),
    "throughput": (
        "One writer on one document sends as fast as the slowest of 100 readers keeps up: at "
        "most *window* updates are sent but not yet received by every reader (flow control "
        "through the readers, since the protocol has no acknowledgement). Every accepted update "
        "is applied, stored in SQLite and forwarded to every reader. *Delivered updates* counts "
        "the writer's markers found in what the readers receive, so a server that packs several "
        "updates into one message is credited for each; messages and bytes are counted apart. "
        "The readers do not decode the updates (they recognise an update frame by its first two "
        "bytes and count markers with a byte search) and run in separate worker processes "
        "(*reader_processes*: one on a 2-core machine, up to four where there are more cores), "
        "so neither their parsing nor the writer's event loop is the limit; their CPU is "
        "counted as the bench client's. Writers append to the end of the text, like typing, "
        "so the document grows during the run and applying an update gets dearer, which is "
        "why the last second can be slower than the first."
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
        "A connect storm: clients open a WebSocket and complete the sync handshake, a bounded "
        "number at a time, either all to one document (which holds 20 updates) or each to a "
        "new document of its own (so the server also creates a document per connection). Sync "
        "time is from the connect call to the server's step2. The clients are spread over "
        "worker processes (*client_processes*, like the fanout readers), which start on one "
        "signal; connections/s is the synced clients over the time from the first attempt to "
        "the last answer. The clients stay connected until the server's memory has been read: "
        "server memory is the VmRSS difference across the storm, per connection."
    ),
    "idle": (
        "Connections that sync and then stay silent, ten per document. Server memory is "
        "VmRSS of the server process after a warm-up connection, then with every connection "
        "open; the difference is divided by the number of connections (it includes the loaded "
        "documents). Collab runs with `--connect-attempts-per-minute 100000`: every connection "
        "comes from one address within a minute. The server also needs one "
        "file descriptor per connection, so the bench raises its open-files limit to the hard "
        "limit before starting the server, which inherits it."
    ),
    "manydocs": (
        "Many small documents in use at once: two clients per document, each sending one "
        "marked insert a second (spread evenly), every update delivered to the other client. "
        "Memory per document is the server's VmRSS difference (before the clients connected, "
        "after the updates) divided by the number of documents, two connections each "
        "included; Collab's target is under 30 KiB per document at 1,000 documents. Then "
        "every client leaves: for Collab the bench "
        "polls `collab_rooms_loaded` on `/metrics` until no document is loaded (this run starts "
        "Collab with `--idle-evict-seconds 5` instead of the default 30 s, and with "
        "`--connect-attempts-per-minute 100000` since 2,000 clients connect from one address "
        "within a minute); the reference server exposes no such count and drops a document "
        "when its last client leaves, so its RSS is read 5 s after leaving. A Python (or Node) "
        "process rarely returns freed memory to the system, so RSS after leaving shows reuse "
        "headroom rather than a leak."
    ),
    "bigdoc": (
        "A document with a real editing history: the trace is replayed locally into a pycrdt "
        "Y.Text (one transaction per trace transaction, not timed), then one client sends the "
        "whole state as a single update and a step1 behind it; the load is done when that step1 "
        "is answered. Fresh clients then join one at a time: the time from sending step1 to "
        "the step2 applied to a pycrdt document (p50 and max), and the step2's size. Then 50 "
        "clients join at the same moment (connect to step2, not applied); failed joins and "
        "joiners the server closes (a real client would reconnect) must be 0. A fresh client "
        "finally checks the text's SHA-256 against the replayed trace."
    ),
    "durable": (
        "Durable writes: one client sends an update and then a sync step1, and waits for the "
        "step2 before sending the next update. Collab answers that step1 only once the "
        "connection's earlier updates are committed to SQLite (what the Python SDK's `flush()` "
        "waits for), so this is the rate of acknowledged, stored edits. It runs against Collab "
        "with `--synchronous NORMAL` (the default: a commit survives a crash of the process) "
        "and `--synchronous FULL` (it also survives a power loss: an fsync per commit). The "
        "reference server answers step1 at once and stores nothing, so its figure is the "
        "round-trip without any durability."
    ),
}


_CONDITIONS = (
    "**The bench client and the server share these {cpus} cores**. The server is one asyncio "
    "process; the bench client too, except that the fanout and throughput readers and the "
    "connect storm's clients run in worker processes of their own (on uvloop when it is "
    "installed), whose CPU is counted as the client's. The client's CPU use is shown next to "
    "the server's in "
    "every table: when the client is near 100 % of a core, the figures measure the client as "
    "much as the server; the row *other processes' CPU* shows what the rest of the machine "
    "took meanwhile (a run above 20 % of a core is flagged; before each scenario the bench "
    "waits, at most a minute, for the machine to be nearly idle). Latencies include the client's "
    "own scheduling: the readers of one update that share a worker process are served one "
    "after another by its event loop, so p99 grows with the number of readers even on an "
    "ideal server. Everything runs over loopback (127.0.0.1). Each "
    "scenario runs against a fresh server (`python -m collab serve --port 0`, SQLite in a "
    "temporary directory, default settings: WAL, `synchronous=NORMAL`, except where a "
    "scenario's description says otherwise)."
)

_HEADLINES = {
    "fanout": ("latency_p50_ms", "latency_p99_ms", "delivered_per_s"),
    "fanout_longpoll": ("latency_p50_ms", "latency_p99_ms", "delivered_per_s"),
    "presence": ("latency_p50_ms", "latency_p99_ms", "server_cpu_percent"),
    "connect": ("connect_rate", "sync_p50_ms", "sync_p99_ms", "rss_per_conn_kib"),
    "throughput": (
        "accepted_per_s",
        "delivered_updates_per_s",
        "delivered_per_s",
        "delivered_bytes_per_s",
    ),
    "idle": ("rss_per_conn_kib",),
    "manydocs": ("rss_per_doc_kib", "evicted_after_s"),
    "bigdoc": (
        "load_ms",
        "fresh_step2_p50_ms",
        "fresh_sync_p50_ms",
        "join_rate",
        "join_p50_ms",
        "join_p99_ms",
    ),
    "durable": ("durable_per_s", "barrier_p50_ms", "barrier_p99_ms"),
}


def _short_name(result: ScenarioResult) -> str:
    params = result.params
    if result.scenario == "fanout":
        return f"fanout, {params['readers']} readers x {params['rate']:g}/s"
    if result.scenario == "fanout_longpoll":
        return f"long-poll fanout, {params['readers']} readers x {params['rate']:g}/s"
    if result.scenario == "connect":
        docs = "one document" if params["docs"] == 1 else f"{params['docs']} documents"
        return f"connect, {params['clients']} clients to {docs}"
    if result.scenario == "throughput":
        return f"throughput, {params['writers']} writer x {params['readers']} readers"
    if result.scenario == "manydocs":
        return f"manydocs, {params['docs']} documents x 2 clients"
    if result.scenario == "bigdoc":
        return f"bigdoc, {params['trace']} ({params['patches']:,} patches)"
    return result.scenario


def _metric(result: ScenarioResult, key: str) -> Metric | None:
    return next((m for m in result.metrics if m.key == key), None)


def _summary(tables: list[list[Column]], reference: bool) -> str:
    """Headline figures: a row per Collab column, next to the reference's when it ran."""
    names = [SERVER_NAME, *([REFERENCE_NAME, "Collab / reference", "better"] if reference else [])]
    lines = ["| | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    skewed = False

    def cell(result: ScenarioResult, metric: Metric | None) -> str:
        nonlocal skewed
        if metric is None:
            return ""
        skewed = skewed or bool(result.warnings)
        return format_value(metric.value, metric.unit) + (" *" if result.warnings else "")

    for columns in tables:
        theirs = columns[-1][1] if columns[-1][0] == REFERENCE_NAME else None
        ours = [(name, result) for name, result in columns if result is not theirs]
        for key in _HEADLINES.get(ours[0][1].scenario, ()):
            for name, result in ours:
                metric = _metric(result, key)
                if metric is None:
                    continue
                cells = [cell(result, metric)]
                if reference and theirs is None:
                    cells += ["(Collab only)", "", better(metric)]
                elif theirs is not None:
                    other = _metric(theirs, key)
                    cells += [cell(theirs, other), ratio(metric, other), better(metric)]
                variant = f", {name}" if name != SERVER_NAME else ""
                label = f"{_short_name(result)}{variant}: {metric.label}"
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
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
        f"| servers' data directories | {machine.temp_fs} |",
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
        f"collab bench connect --url ws://127.0.0.1:8000/ws --clients {plan.connect_clients} "
        f"--docs {plan.connect_clients}",
        f"collab bench connect --url ws://127.0.0.1:8000/ws --clients {plan.idle_connections} "
        f"--docs {plan.idle_connections // IDLE_CLIENTS_PER_DOC}",
        f"collab bench idle --url ws://127.0.0.1:8000/ws --connections "
        f"{plan.idle_connections} --server-pid <pid of the server>",
        f"collab bench manydocs --url ws://127.0.0.1:8000/ws --docs {plan.manydocs_docs} "
        f"--duration {plan.manydocs_duration:g} --evict-wait {MANYDOCS_EVICT_WAIT:g} "
        "--server-pid <pid>",
        "collab bench bigdoc --url ws://127.0.0.1:8000/ws "
        "--trace tests/data/automerge-paper.json.gz"
        + (f" --patches {plan.bigdoc_patches}" if plan.bigdoc_patches else "")
        + f" --fresh {plan.bigdoc_fresh} --joiners {plan.bigdoc_joiners}",
        f"collab bench durable --url ws://127.0.0.1:8000/ws --duration {plan.durable_duration:g}",
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
