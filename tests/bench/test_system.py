"""The bench's readings of a server process."""

from __future__ import annotations

import os
import subprocess
import sys

from collab.bench.system import CpuMeter, cpu_seconds, tree_cpu_seconds

BUSY_CHILD = """
import time
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("done", flush=True)
time.sleep(30)
"""


def test_a_server_is_charged_for_the_cpu_of_its_worker_processes() -> None:
    """Collab folds large logs in a worker process: that CPU is the server's work too."""
    child = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"done\n"
        own = cpu_seconds(os.getpid())
        tree = tree_cpu_seconds(os.getpid())
        assert own is not None and tree is not None
        assert tree - own >= 0.25
    finally:
        child.kill()
        child.wait(timeout=10)


def test_a_window_shorter_than_the_kernel_can_resolve_reports_no_server_or_noise_figure() -> None:
    """/proc counts other processes' CPU in 10 ms ticks: a 50 ms join storm would read 0 % or
    40 % at random, so only the bench's own (exact) share is given."""
    share = CpuMeter(os.getpid()).percent()
    assert share.server is None and share.other is None
    assert share.bench >= 0
