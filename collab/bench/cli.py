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
from pathlib import Path

from collab.bench import scenarios
from collab.bench.results import ScenarioResult, text_table
from collab.bench.system import raise_open_files_limit

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
    fanout.set_defaults(run=_run_scenario, scenario="fanout")

    throughput = kinds.add_parser(
        "throughput", parents=[common], help="W writers as fast as N readers keep up"
    )
    throughput.add_argument("--writers", type=_positive_int, default=4)
    throughput.add_argument("--readers", type=_positive_int, default=20)
    throughput.add_argument("--duration", type=_positive_float, default=10.0, help="seconds")
    throughput.add_argument(
        "--window", type=_positive_int, default=1000, help="updates in flight at most"
    )
    throughput.set_defaults(run=_run_scenario, scenario="throughput")

    idle = kinds.add_parser("idle", parents=[common], help="C idle connections: server memory")
    idle.add_argument("--connections", type=_positive_int, default=1000)
    idle.add_argument("--docs", type=_positive_int, default=None, help="default connections/10")
    idle.add_argument("--hold", type=_positive_float, default=5.0, help="seconds kept open")
    idle.set_defaults(run=_run_scenario, scenario="idle")

    presence = kinds.add_parser(
        "presence", parents=[common], help="N clients moving cursors: awareness latency, CPU"
    )
    presence.add_argument("--clients", type=_positive_int, default=200)
    presence.add_argument("--duration", type=_positive_float, default=10.0, help="seconds")
    presence.add_argument("--rate", type=_positive_float, default=1.0, help="updates/s each")
    presence.set_defaults(run=_run_scenario, scenario="presence")

    connect = kinds.add_parser(
        "connect", parents=[common], help="connect storm on one document: connections/s"
    )
    connect.add_argument("--clients", type=_positive_int, default=1000)
    connect.set_defaults(run=_run_scenario, scenario="connect")

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


async def _scenario(args: argparse.Namespace) -> ScenarioResult:
    target = _target(args)
    if args.scenario == "fanout":
        return await scenarios.fanout(target, args.readers, args.rate, args.duration, args.longpoll)
    if args.scenario == "throughput":
        return await scenarios.throughput(
            target, args.writers, args.readers, args.duration, args.window
        )
    if args.scenario == "presence":
        return await scenarios.presence(target, args.clients, args.duration, args.rate)
    if args.scenario == "connect":
        return await scenarios.connect(target, args.clients)
    return await scenarios.idle(target, args.connections, args.docs, args.hold)


def _check_open_files(needed: int) -> None:
    soft, _ = raise_open_files_limit()
    if soft < needed:
        print(
            f"collab bench: warning: open-files limit {soft} is below the ~{needed} needed",
            file=sys.stderr,
        )


def _run_scenario(args: argparse.Namespace) -> int:
    peers = sum(getattr(args, name, 0) for name in ("connections", "readers", "clients"))
    _check_open_files(peers + getattr(args, "writers", 1) + 64)
    result = asyncio.run(_scenario(args))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(text_table(result))
    return 0 if result.ok else 1


def _run_report(args: argparse.Namespace) -> int:
    from collab.bench.report import Plan, write_report

    plan = Plan.quick() if args.quick else Plan()
    _check_open_files(plan.idle_connections + 128)  # the server inherits the limit
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
