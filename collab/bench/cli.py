"""``collab bench`` argument parsing (scenarios live in collab.bench.scenarios)."""

from __future__ import annotations

import argparse


def add_bench(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure a y-websocket compatible server")
    parser.set_defaults(run=lambda args: 0)
