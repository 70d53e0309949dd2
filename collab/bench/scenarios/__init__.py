"""Load scenarios against any y-websocket server, one module each.

Every scenario is bounded: a fixed number of peers, a fixed sending time, and a timeout on
every wait (connecting, syncing, draining). Peers connect with limited concurrency so the
bench measures the server, not a connection storm (except where a storm is the point). Each
run uses fresh document ids, so runs against a long-lived server do not disturb each other.
"""

from collab.bench.scenarios.bigdoc import bigdoc
from collab.bench.scenarios.common import Target
from collab.bench.scenarios.connect import connect
from collab.bench.scenarios.durable import durable
from collab.bench.scenarios.fanout import fanout
from collab.bench.scenarios.idle import idle
from collab.bench.scenarios.manydocs import manydocs
from collab.bench.scenarios.presence import presence
from collab.bench.scenarios.throughput import throughput

__all__ = [
    "Target",
    "bigdoc",
    "connect",
    "durable",
    "fanout",
    "idle",
    "manydocs",
    "presence",
    "throughput",
]
