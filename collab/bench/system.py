"""What the bench reads from the operating system: a server's memory and CPU, the machine.

Linux only (``/proc``); every reader returns None instead of failing, so the load scenarios
still run against a remote server or on another OS, just without those figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import resource
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` (VmRSS), the figure that idle connections drive up."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid``: tells whether the server or the bench was the limit."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may contain spaces
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of ``pid`` and of every process under it, the ones it already reaped
    included: Collab folds large logs in a worker process, whose work is the server's too."""
    total = None
    for member in [pid, *_descendants(pid)]:
        try:
            text = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        ticks = sum(int(field) for field in fields[11:15])  # utime, stime, cutime, cstime
        total = (total or 0.0) + ticks / os.sysconf("SC_CLK_TCK")
    return total


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for thread in threads:
            try:
                children = Path(f"/proc/{parent}/task/{thread}/children").read_text().split()
            except OSError:
                continue
            found.extend(int(child) for child in children)
            pending.extend(int(child) for child in children)
    return found


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine spent busy (all cores, /proc/stat), None if unknown."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    busy = sum(int(value) for index, value in enumerate(fields[1:9]) if index not in (3, 4))
    return busy / os.sysconf("SC_CLK_TCK")


async def wait_for_quiet(
    busy_percent: float = 20.0, window: float = 2.0, max_wait: float = 60.0
) -> float | None:
    """Wait (bounded) until the machine is nearly idle; return the last busy % of one core.

    On a shared development machine a test run elsewhere can take a whole core; starting a
    measurement in a quiet moment makes the figures comparable between runs.
    """
    deadline = time.monotonic() + max_wait
    busy = None
    while True:
        before = machine_busy_seconds()
        await asyncio.sleep(window)
        after = machine_busy_seconds()
        if before is None or after is None:
            return None
        busy = 100 * (after - before) / window
        if busy <= busy_percent or time.monotonic() >= deadline:
            return busy


@dataclass(frozen=True, slots=True)
class CpuShare:
    """Percent of one core over an interval; ``other`` is everything else on the machine."""

    server: float | None
    bench: float
    other: float | None


MIN_TICK_WINDOW = 1.0  # seconds


class CpuMeter:
    """CPU used by the server (if its pid is known, with its worker processes), by the bench
    and by everything else.

    The bench and the server share the machine; ``other`` shows when a third party (a test
    run, a build) took CPU during the measurement, which skews every figure.
    """

    def __init__(self, server_pid: int | None, helper_pids: Sequence[int] = ()) -> None:
        self._pid = server_pid
        self._helpers = helper_pids  # the bench's worker processes: counted as the bench
        self._wall = time.perf_counter()
        self._own = self._bench_seconds()
        self._server = tree_cpu_seconds(server_pid) if server_pid else None
        self._machine = machine_busy_seconds()

    def _bench_seconds(self) -> float:
        helpers = (cpu_seconds(pid) for pid in self._helpers)
        return time.process_time() + sum(seconds or 0.0 for seconds in helpers)

    def percent(self) -> CpuShare:
        """Over less than ``MIN_TICK_WINDOW`` seconds only the bench's own share is given:
        /proc counts other processes' CPU in 10 ms ticks, so a 50 ms window reads 0 % or 40 %
        at random."""
        wall = max(time.perf_counter() - self._wall, 1e-9)
        own = 100 * (self._bench_seconds() - self._own) / wall
        if wall < MIN_TICK_WINDOW:
            return CpuShare(None, own, None)
        server = None
        if self._pid and self._server is not None:
            now = tree_cpu_seconds(self._pid)
            if now is not None:
                server = 100 * (now - self._server) / wall
        other = None
        machine = machine_busy_seconds()
        if machine is not None and self._machine is not None:
            other = max(0.0, 100 * (machine - self._machine) / wall - own - (server or 0.0))
        return CpuShare(server, own, other)


def raise_open_files_limit(wanted: int | None = None) -> tuple[int, int]:
    """Lift the soft RLIMIT_NOFILE towards the hard limit (one fd per connection, both ends).

    Child processes (the server started by ``bench report``) inherit the raised limit.
    Returns the (soft, hard) limits in force afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None else wanted
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if soft != resource.RLIM_INFINITY and target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@dataclass(frozen=True, slots=True)
class MachineInfo:
    date: str
    cpus: int
    cpu_model: str
    memory: str
    kernel: str
    python: str
    pycrdt: str
    aiohttp: str
    git: str
    open_files: str
    temp_fs: str  # where the servers' data directories go: tmpfs would make fsync free
    load: str  # other work on the machine skews every figure: recorded, not hidden


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            # the bench itself and its report do not change what is measured
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!collab/bench",
                ":!docs",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + (" with uncommitted server changes" if dirty else "")


def machine_info() -> MachineInfo:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MachineInfo(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        cpus=os.cpu_count() or 0,
        cpu_model=_cpu_model(),
        memory=_memory(),
        kernel=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        pycrdt=_version("pycrdt"),
        aiohttp=_version("aiohttp"),
        git=_git_revision(),
        open_files=f"{soft} (hard {hard})",
        temp_fs=_filesystem(Path(tempfile.gettempdir())),
        load=_load_average(),
    )


def _filesystem(path: Path) -> str:
    """``/tmp (ext4)``: the type of the mount that holds ``path`` (/proc/mounts)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return f"{path} (unknown)"
    resolved = path.resolve()
    best, kind = "", "unknown"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        if resolved.is_relative_to(point) and len(point) >= len(best):
            best, kind = point, fields[2]
    return f"{path} ({kind})"


def _load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


async def stop_process(process: asyncio.subprocess.Process, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(timeout):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
