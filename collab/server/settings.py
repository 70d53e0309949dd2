"""Server settings: one frozen object built by the CLI from flags and COLLAB_* variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    synchronous: str = "NORMAL"  # SQLite: NORMAL survives process crashes, FULL also power loss
    max_store_backlog: int = 20_000  # uncommitted updates before readers pause (backpressure)
    busy_timeout_ms: int = 5000  # how long a commit waits for another process's write lock
    max_message_bytes: int = 32 * MiB  # larger frames: close 4413
    max_awareness_state_bytes: int = 64 * 1024  # larger presence states: close 4413
    max_document_bytes: int = 256 * MiB  # stored size beyond which updates are refused (4413)
    max_connections_per_document: int = 5_000  # beyond: close 4503
    max_connections: int = 50_000  # per server process; beyond: close 4503
    connect_attempts_per_minute: int = 1_200  # per client address; beyond: HTTP 429
    messages_per_second: float = 10_000.0  # per connection, token bucket (burst 2x); 4529
    bytes_per_second: float = 64.0 * MiB
    send_queue_messages: int = 10_000  # per connection; overflow: close 1013
    send_queue_bytes: int = 64 * MiB
    keepalive_seconds: float = 15.0  # y-websocket closes after 30 s of silence
    ws_heartbeat_seconds: float = 30.0  # protocol pings detect dead TCP peers
    ws_compress: bool = False  # permessage-deflate costs CPU on every small update
    idle_evict_seconds: float = 30.0
    max_rooms: int = 10_000
    compact_after_rows: int = 500
    compact_after_bytes: int = 512 * 1024
    lp_poll_timeout_seconds: float = 25.0  # below common 30/60 s proxy idle timeouts
    lp_session_ttl_seconds: float = 45.0  # a session nobody polls for this long is closed
    lp_max_sessions: int = 10_000
    lp_retained_bytes: int = 4 * MiB  # unacknowledged frames beyond this: close 1013
    lp_retained_frames: int = 10_000
    lp_response_bytes: int = 256 * 1024  # frames per poll answer (at least one)
    lp_max_frames_per_post: int = 256
    lp_max_post_bytes: int = 32 * MiB + 64 * 1024  # one frame of max_message_bytes must fit
    shutdown_timeout_seconds: float = 10.0
    log_format: str = "text"
    event_loop: str = "auto"  # uvloop when installed (the "fast" extra), else asyncio's own
    postgres_url: str | None = None  # store in PostgreSQL instead of SQLite (several hosts)
    postgres_schema: str = "collab"
    redis_url: str | None = None  # several nodes share documents through Redis pub/sub
    redis_prefix: str = "ycollab"
    presence_timeout_seconds: float = 30.0  # presence from another node not renewed: removed
    workers: int = 1  # >1: a supervisor runs that many processes on one port (needs Redis)
    reuse_port: bool = False  # set for workers: share the public port with SO_REUSEPORT
    advertise_url: str | None = None  # where this node answers directly (long-poll routing)
    node_id: str | None = None  # this process in the cluster and in long-poll sids; random
    allowed_origins: tuple[str, ...] = ()  # web sites that may connect; "*": any; (): own only
    auth_keys: tuple[str, ...] = ()  # HS256 secrets ("kid:secret" or bare); empty: auth off
    admin_key: str | None = None  # Bearer key for the HTTP API and /admin

    @property
    def database_path(self) -> Path:
        return self.data_dir / "collab.sqlite3"
