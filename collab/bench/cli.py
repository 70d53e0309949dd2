"""``collab bench``: argument parsing and output (scenarios live in collab.bench.scenarios).

``collab bench SCENARIO --url ws://HOST:PORT/ws`` measures any y-websocket compatible server
(the document id is appended to the URL after a slash, as y-websocket does); ``collab bench
report`` starts Collab and the reference server itself and writes docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable
from pathlib import Path

from collab.bench import scenarios
from collab.bench.results import ScenarioResult, text_table
from collab.bench.scenarios.reader_pool import default_processes
from collab.bench.scenarios.throughput import KEPT_CORES as THROUGHPUT_KEPT_CORES
from collab.bench.system import raise_open_files_limit
from collab.bench.traces import default_trace

DEFAULT_URL = "ws://127.0.0.1:8000/ws"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=DEFAULT_URL, help=f"WebSocket base URL (default {DEFAULT_URL})"
    )
    common.add_argument(
        "--server-pid", type=int, default=None, help="server pid on this machine: RSS and CPU"
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument(
        "--connect-concurrency", type=_positive_int, default=50,
        help="connections opened at once (default 50)",
    )  # fmt: skip
    common.add_argument(
        "--timeout", type=_positive_float, default=10.0,
        help="seconds allowed for each connect, sync and drain (default 10)",
    )  # fmt: skip
    common.add_argument(
        "--doc-prefix", default="bench", help="prefix of the generated document ids"
    )
    return common


def _processes_option(parser: argparse.ArgumentParser, name: str, kept_cores: int = 0) -> None:
    """``--NAME-processes``: how many worker processes hold the scenario's reading clients."""
    per_core = f"one per core beyond {kept_cores}" if kept_cores else "one per core"
    parser.add_argument(
        f"--{name}-processes", type=_positive_int, default=None,
        help=f"worker processes holding the {name}s (default {per_core}, 1 to 4: "
        f"{default_processes(kept_cores)} here)",
    )  # fmt: skip


def add_bench(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure a y-websocket compatible server")
    kinds = parser.add_subparsers(required=True, metavar="SCENARIO")
    common = _common()

    fanout = kinds.add_parser(
        "fanout", parents=[common], help="1 writer, N readers: delivery latency"
    )
    fanout.add_argument("--readers", type=_positive_int, default=100)
    fanout.add_argument("--rate", type=_positive_float, default=200.0, help="updates per second")
    fanout.add_argument("--duration", type=_positive_float, default=10.0, help="seconds")
    fanout.add_argument(
        "--longpoll", action="store_true", help="readers over Collab's YLP/1 long-poll transport"
    )
    _processes_option(fanout, "reader")
    fanout.set_defaults(
        body=lambda t, a: scenarios.fanout(
            t, a.readers, a.rate, a.duration, a.longpoll, a.reader_processes
        ),
        peers=lambda a: a.readers,
    )

    throughput = kinds.add_parser(
        "throughput", parents=[common], help="W writers as fast as N readers keep up"
    )
    throughput.add_argument("--writers", type=_positive_int, default=1)
    throughput.add_argument("--readers", type=_positive_int, default=100)
    throughput.add_argument("--duration", type=_positive_float, default=10.0, help="seconds")
    throughput.add_argument(
        "--window", type=_positive_int, default=1000, help="updates in flight at most"
    )
    _processes_option(throughput, "reader", THROUGHPUT_KEPT_CORES)
    throughput.set_defaults(
        body=lambda t, a: scenarios.throughput(
            t, a.writers, a.readers, a.duration, a.window, a.reader_processes
        ),
        peers=lambda a: a.writers + a.readers,
    )

    idle = kinds.add_parser("idle", parents=[common], help="C idle connections: server memory")
    idle.add_argument("--connections", type=_positive_int, default=1000)
    idle.add_argument("--docs", type=_positive_int, default=None, help="default connections/10")
    idle.add_argument("--hold", type=_positive_float, default=5.0, help="seconds kept open")
    idle.set_defaults(
        body=lambda t, a: scenarios.idle(t, a.connections, a.docs, a.hold),
        peers=lambda a: a.connections,
    )

    presence = kinds.add_parser(
        "presence", parents=[common], help="N clients moving cursors: awareness latency, CPU"
    )
    presence.add_argument("--clients", type=_positive_int, default=200)
    presence.add_argument("--duration", type=_positive_float, default=10.0, help="seconds")
    presence.add_argument("--rate", type=_positive_float, default=1.0, help="updates/s each")
    presence.set_defaults(
        body=lambda t, a: scenarios.presence(t, a.clients, a.duration, a.rate),
        peers=lambda a: a.clients,
    )

    connect = kinds.add_parser(
        "connect", parents=[common], help="connect storm: connections/s, sync time, memory"
    )
    connect.add_argument("--clients", type=_positive_int, default=1000)
    connect.add_argument(
        "--docs", type=_positive_int, default=1,
        help="documents the clients spread over: 1 (default) or up to one each",
    )  # fmt: skip
    _processes_option(connect, "client")
    connect.set_defaults(
        body=lambda t, a: scenarios.connect(t, a.clients, a.docs, a.client_processes),
        peers=lambda a: a.clients,
    )

    manydocs = kinds.add_parser(
        "manydocs", parents=[common], help="K documents x 2 editing clients: memory, eviction"
    )
    manydocs.add_argument("--docs", type=_positive_int, default=1000)
    manydocs.add_argument("--rate", type=_positive_float, default=1.0, help="updates/s each")
    manydocs.add_argument("--duration", type=_positive_float, default=10.0, help="seconds")
    manydocs.add_argument(
        "--evict-wait", type=_positive_float, default=40.0,
        help="seconds to wait for the documents to be unloaded after everyone left",
    )  # fmt: skip
    manydocs.set_defaults(
        body=lambda t, a: scenarios.manydocs(t, a.docs, a.rate, a.duration, a.evict_wait),
        peers=lambda a: 2 * a.docs,
    )

    bigdoc = kinds.add_parser(
        "bigdoc", parents=[common], help="a document from an editing trace: sync, join storm"
    )
    bigdoc.add_argument(
        "--trace", type=Path, default=default_trace(),
        help=f"editing trace (.json.gz, josephg/editing-traces format; default {default_trace()})",
    )  # fmt: skip
    bigdoc.add_argument(
        "--patches", type=_positive_int, default=None, help="replay only the first N patches"
    )
    bigdoc.add_argument("--fresh", type=_positive_int, default=5, help="fresh clients, one by one")
    bigdoc.add_argument("--joiners", type=_positive_int, default=50, help="joining at once")
    bigdoc.set_defaults(body=_bigdoc, peers=lambda a: a.joiners + 2)

    durable = kinds.add_parser(
        "durable", parents=[common], help="updates/s with a durability barrier after each"
    )
    durable.add_argument("--writers", type=_positive_int, default=1, help="one document each")
    durable.add_argument("--duration", type=_positive_float, default=5.0, help="seconds")
    durable.set_defaults(
        body=lambda t, a: scenarios.durable(t, a.writers, a.duration), peers=lambda a: a.writers
    )

    for scenario in (fanout, throughput, idle, presence, connect, manydocs, bigdoc, durable):
        scenario.set_defaults(run=_run_scenario)

    report = kinds.add_parser(
        "report", help="start Collab, run every scenario, write a Markdown report"
    )
    report.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
    report.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    report.add_argument(
        "--no-reference", action="store_true", help="do not install and run the reference server"
    )
    report.set_defaults(run=_run_report)


def _target(args: argparse.Namespace) -> scenarios.Target:
    return scenarios.Target(
        url=args.url,
        server_pid=args.server_pid,
        connect_concurrency=args.connect_concurrency,
        timeout=args.timeout,
        doc_prefix=args.doc_prefix,
    )


def _bigdoc(target: scenarios.Target, args: argparse.Namespace) -> Awaitable[ScenarioResult]:
    if args.trace is None:
        raise SystemExit("collab bench: no editing trace found here; pass --trace PATH")
    if not args.trace.is_file():
        raise SystemExit(f"collab bench: no such trace file: {args.trace}")
    return scenarios.bigdoc(target, args.trace, args.patches, args.fresh, args.joiners)


def _check_open_files(needed: int) -> None:
    soft, _ = raise_open_files_limit()
    if soft < needed:
        print(
            f"collab bench: warning: open-files limit {soft} is below the ~{needed} needed",
            file=sys.stderr,
        )


def _run_scenario(args: argparse.Namespace) -> int:
    _check_open_files(args.peers(args) + 64)
    result = asyncio.run(args.body(_target(args), args))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(text_table(result))
    return 0 if result.ok else 1


def _run_report(args: argparse.Namespace) -> int:
    from collab.bench.report import Plan, write_report

    plan = Plan.quick() if args.quick else Plan()
    # the server inherits the limit; manydocs has the most connections open at once
    _check_open_files(max(plan.idle_connections, 2 * plan.manydocs_docs) + 128)
    try:
        results = asyncio.run(
            write_report(args.output, plan, args.quick, with_reference=not args.no_reference)
        )
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"collab bench: report not written: {exc}", file=sys.stderr)
        return 2
    print(f"collab bench: wrote {args.output}")
    problems = [f"{r.scenario}: {p}" for r in results for p in r.problems]
    for text in problems:
        print(f"collab bench: PROBLEM {text}", file=sys.stderr)
    for text in (f"{r.scenario}: {w}" for r in results for w in r.warnings):
        print(f"collab bench: WARNING {text}", file=sys.stderr)
    return 0 if not problems else 1
