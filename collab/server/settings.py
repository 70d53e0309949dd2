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
    busy_timeout_ms: int = 5000  # how long a commit waits for another process's write lock
    max_message_bytes: int = 32 * MiB  # larger frames: close 4413
    max_awareness_state_bytes: int = 64 * 1024
    send_queue_messages: int = 10_000  # per connection; overflow: close 1013
    send_queue_bytes: int = 64 * MiB
    keepalive_seconds: float = 15.0  # y-websocket closes after 30 s of silence
    ws_heartbeat_seconds: float = 30.0  # protocol pings detect dead TCP peers
    ws_compress: bool = False  # permessage-deflate costs CPU on every small update
    idle_evict_seconds: float = 30.0
    max_rooms: int = 10_000
    compact_after_rows: int = 500
    compact_after_bytes: int = 512 * 1024
    shutdown_timeout_seconds: float = 10.0
    log_format: str = "text"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "collab.sqlite3"
