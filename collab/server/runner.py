"""Running the server: one process, or a supervisor with N worker processes on one port.

Workers share the public port (SO_REUSEPORT: the kernel spreads new connections), the store
and a Redis bus. A long-poll session lives in one worker, so each worker also listens on a
private loopback port that it advertises on the bus; a worker that receives a request for
another worker's session passes it on.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import secrets
import signal
import sys

from aiohttp import web

from collab.server.app import create_app
from collab.server.keys import ROOMS
from collab.server.listener import CollabSite
from collab.server.settings import Settings

log = logging.getLogger("collab")

_RESTART_DELAY_SECONDS = 1.0


def tune_gc() -> None:
    """The objects made at startup (modules, the app) are frozen out of the cycle collector:
    full collections during a connect storm then walk only the connections' objects. The
    collection thresholds stay as they are: raising them cut the CPU of a connect further but
    let cyclic garbage pile up for minutes (the soak's RSS grew linearly with it)."""
    gc.collect()
    gc.freeze()


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully (1001 to peers, pending writes flushed)."""
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        access_log=None,  # "aiohttp.access" logs nothing at our level: no logger per request
    )
    await runner.setup()
    site = CollabSite(runner, settings.host, settings.port, reuse_port=settings.reuse_port)
    await site.start()
    tune_gc()
    host, port = runner.addresses[0][:2]
    advertise = settings.advertise_url
    if settings.reuse_port:  # a worker: its own address for long-poll routing
        private = CollabSite(runner, "127.0.0.1", 0)
        await private.start()
        advertise = advertise or f"http://127.0.0.1:{runner.addresses[-1][1]}"
    bus = app[ROOMS].bus
    if bus is not None and advertise:
        await bus.advertise(advertise)
    print(f"collab listening on http://{host}:{port}", flush=True)
    log.info("documents stored in %s", settings.database_path)
    try:
        await _wait_for_signal()
    finally:
        log.info("shutting down")
        await runner.cleanup()


async def supervise(settings: Settings, argv: list[str]) -> int:
    """Start ``settings.workers`` copies of ``collab serve`` and keep them running."""
    if not settings.redis_url:
        raise SystemExit("collab: --workers needs --redis-url (the workers share documents)")
    if settings.port == 0:
        raise SystemExit("collab: --workers needs a fixed --port (the workers share it)")
    prefix = settings.node_id or secrets.token_hex(3)
    node_ids = [f"{prefix}-w{index}" for index in range(settings.workers)]
    workers = {node_id: await _spawn(argv, node_id) for node_id in node_ids}
    print(
        f"collab listening on http://{settings.host}:{settings.port} ({settings.workers} workers)",
        flush=True,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)

    async def keep(node_id: str) -> None:
        while not stopping.is_set():
            code = await workers[node_id].wait()
            if stopping.is_set():
                return
            log.error("worker %s exited with %s; restarting", node_id, code)
            await asyncio.sleep(_RESTART_DELAY_SECONDS)
            workers[node_id] = await _spawn(argv, node_id)

    keepers = [asyncio.create_task(keep(node_id)) for node_id in node_ids]
    await stopping.wait()
    for proc in workers.values():
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(proc.wait() for proc in workers.values()))
    for keeper in keepers:
        keeper.cancel()
    return max((abs(code) for code in codes), default=0)


async def _spawn(argv: list[str], node_id: str) -> asyncio.subprocess.Process:
    """The same command line, as one worker (later flags win in argparse)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collab", *argv,
        "--workers", "1", "--node-id", node_id, "--reuse-port", "true",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await proc.stdout.readline()).decode()
    if not re.search(r"collab listening on", line):
        raise SystemExit(f"collab: worker {node_id} did not start")
    log.info("worker %s (pid %d) is up", node_id, proc.pid)
    return proc
