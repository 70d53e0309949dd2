"""``collab`` command line: ``serve`` and ``bench``.

Every ``serve`` flag can also be given as an environment variable ``COLLAB_<FLAG>`` (for
example ``--data-dir`` as ``COLLAB_DATA_DIR``); a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from collab.protocol.tokens import mint, parse_key
from collab.server.settings import Settings

log = logging.getLogger("collab")

_DEFAULTS = Settings()

# flag -> (Settings field, parser, help)
_SERVE_OPTIONS: dict[str, tuple[str, type, str]] = {
    "--host": ("host", str, "interface to listen on"),
    "--port": ("port", int, "TCP port (0 picks a free one)"),
    "--data-dir": ("data_dir", Path, "directory of the SQLite database"),
    "--synchronous": ("synchronous", str, "SQLite synchronous mode: NORMAL or FULL"),
    "--max-store-backlog": ("max_store_backlog", int, "uncommitted updates before pausing"),
    "--busy-timeout-ms": ("busy_timeout_ms", int, "wait for another writer's lock"),
    "--max-message-bytes": ("max_message_bytes", int, "largest accepted frame (close 4413)"),
    "--max-awareness-state-bytes": ("max_awareness_state_bytes", int, "largest presence state"),
    "--max-document-bytes": ("max_document_bytes", int, "stored size limit per document"),
    "--max-connections-per-document": ("max_connections_per_document", int, "close 4503"),
    "--max-connections": ("max_connections", int, "per process, close 4503"),
    "--connect-attempts-per-minute": ("connect_attempts_per_minute", int, "per address, 429"),
    "--messages-per-second": ("messages_per_second", float, "per connection, close 4529"),
    "--bytes-per-second": ("bytes_per_second", float, "per connection, close 4529"),
    "--send-queue-messages": ("send_queue_messages", int, "per-connection queue (close 1013)"),
    "--send-queue-bytes": ("send_queue_bytes", int, "per-connection queued bytes (close 1013)"),
    "--keepalive-seconds": ("keepalive_seconds", float, "silence before a keep-alive frame"),
    "--ws-heartbeat-seconds": ("ws_heartbeat_seconds", float, "WebSocket ping interval, 0: off"),
    "--idle-evict-seconds": ("idle_evict_seconds", float, "unload a document this long idle"),
    "--max-rooms": ("max_rooms", int, "documents kept in memory at most"),
    "--compact-after-rows": ("compact_after_rows", int, "fold the log after this many rows"),
    "--compact-after-bytes": ("compact_after_bytes", int, "fold the log after this many bytes"),
    "--lp-poll-timeout-seconds": ("lp_poll_timeout_seconds", float, "long-poll GET held at most"),
    "--lp-session-ttl-seconds": ("lp_session_ttl_seconds", float, "unpolled session lifetime"),
    "--lp-max-sessions": ("lp_max_sessions", int, "long-poll sessions at most (429)"),
    "--lp-retained-bytes": ("lp_retained_bytes", int, "unacked bytes per session (1013)"),
    "--lp-retained-frames": ("lp_retained_frames", int, "unacked frames per session (1013)"),
    "--lp-response-bytes": ("lp_response_bytes", int, "bytes of frames per poll answer"),
    "--lp-max-frames-per-post": ("lp_max_frames_per_post", int, "frames per send (400)"),
    "--lp-max-post-bytes": ("lp_max_post_bytes", int, "send body size (413)"),
    "--shutdown-timeout-seconds": ("shutdown_timeout_seconds", float, "grace period on stop"),
    "--postgres-url": ("postgres_url", str, "PostgreSQL store, e.g. postgresql://host/db"),
    "--postgres-schema": ("postgres_schema", str, "PostgreSQL schema for the tables"),
    "--redis-url": ("redis_url", str, "Redis for several nodes, e.g. redis://127.0.0.1:6379"),
    "--redis-prefix": ("redis_prefix", str, "prefix of the Redis channel names"),
    "--presence-timeout-seconds": ("presence_timeout_seconds", float, "remote presence TTL"),
    "--workers": ("workers", int, "processes serving on this port (needs --redis-url)"),
    "--advertise-url": ("advertise_url", str, "this node's own URL, for long-poll routing"),
    "--node-id": ("node_id", str, "this node's id (random when not given)"),
    "--log-format": ("log_format", str, "text or json"),
    "--event-loop": ("event_loop", str, "auto, uvloop or asyncio"),
}


def _env_name(flag: str) -> str:
    return "COLLAB_" + flag.lstrip("-").replace("-", "_").upper()


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the collaboration server")
    for flag, (name, kind, help_text) in _SERVE_OPTIONS.items():
        default = getattr(_DEFAULTS, name)
        parser.add_argument(
            flag, dest=name, type=kind, default=None, help=f"{help_text} (default {default})"
        )
    parser.add_argument(
        "--auth-key",
        dest="auth_keys",
        action="append",
        default=None,
        metavar="KEY",
        help="HS256 token secret, 'kid:secret' for rotation; repeatable (env COLLAB_AUTH_KEY)",
    )
    parser.add_argument(
        "--auth-key-file",
        dest="auth_key_file",
        type=Path,
        default=None,
        help="file with one auth key per line (env COLLAB_AUTH_KEY_FILE)",
    )
    parser.add_argument(
        "--allowed-origins",
        dest="allowed_origins",
        default=None,
        metavar="LIST",
        help="comma-separated web origins that may connect, or '*' (default: own origin only; "
        "env COLLAB_ALLOWED_ORIGINS)",
    )
    parser.add_argument(
        "--admin-key",
        dest="admin_key",
        default=None,
        help="Bearer key for the HTTP API and /admin (env COLLAB_ADMIN_KEY)",
    )
    parser.add_argument(
        "--reuse-port",
        dest="reuse_port",
        type=_parse_bool,
        default=None,
        help="share the port with other processes (set by --workers)",
    )
    parser.add_argument(
        "--ws-compress",
        dest="ws_compress",
        type=_parse_bool,
        default=None,
        help="permessage-deflate on WebSockets (default false)",
    )
    parser.set_defaults(run=_run_serve)


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """Flags first, then COLLAB_* variables, then the defaults."""
    values = {}
    kinds = {name: kind for name, kind, _ in _SERVE_OPTIONS.values()}
    kinds["ws_compress"] = kinds["reuse_port"] = _parse_bool
    flags = {name: flag for flag, (name, _, _) in _SERVE_OPTIONS.items()}
    flags["ws_compress"] = "--ws-compress"
    flags["reuse_port"] = "--reuse-port"
    values["auth_keys"] = tuple(_auth_keys(args, environ))
    origins = getattr(args, "allowed_origins", None) or environ.get("COLLAB_ALLOWED_ORIGINS")
    if origins:
        values["allowed_origins"] = tuple(o.strip() for o in origins.split(",") if o.strip())
    admin_key = getattr(args, "admin_key", None) or environ.get("COLLAB_ADMIN_KEY")
    if admin_key:
        values["admin_key"] = admin_key
    for field in fields(Settings):
        if field.name in ("auth_keys", "admin_key", "allowed_origins"):
            continue
        value = getattr(args, field.name, None)
        if value is None:
            env = environ.get(_env_name(flags[field.name]))
            if env is None:
                continue
            try:
                value = kinds[field.name](env)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                raise SystemExit(f"collab: bad {_env_name(flags[field.name])}: {exc}") from exc
        values[field.name] = value
    settings = Settings(**values)
    if settings.log_format not in ("text", "json"):
        raise SystemExit("collab: --log-format must be text or json")
    if settings.event_loop not in ("auto", "uvloop", "asyncio"):
        raise SystemExit("collab: --event-loop must be auto, uvloop or asyncio")
    if settings.synchronous.upper() not in ("NORMAL", "FULL"):
        raise SystemExit("collab: --synchronous must be NORMAL or FULL")
    return settings


def _auth_keys(args: argparse.Namespace, environ: dict[str, str]) -> list[str]:
    keys = list(getattr(args, "auth_keys", None) or [])
    if not keys and environ.get("COLLAB_AUTH_KEY"):
        keys.append(environ["COLLAB_AUTH_KEY"])
    key_file = getattr(args, "auth_key_file", None) or environ.get("COLLAB_AUTH_KEY_FILE")
    if key_file:
        try:
            lines = Path(key_file).read_text().splitlines()
        except OSError as exc:
            raise SystemExit(f"collab: cannot read auth key file: {exc}") from exc
        keys.extend(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    for key in keys:
        try:
            parse_key(key)
        except ValueError as exc:
            raise SystemExit(f"collab: {exc}") from exc
    return keys


def _add_token(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("token", help="mint an access token for a document")
    parser.add_argument("--doc", required=True, help="document id, or a prefix ending in /*")
    parser.add_argument("--perm", choices=("r", "w"), default="w")
    parser.add_argument("--ttl", type=float, default=3600, help="lifetime in seconds")
    parser.add_argument("--sub", default=None, help="user id to record in the token")
    parser.add_argument("--auth-key", dest="auth_keys", action="append", default=None)
    parser.add_argument("--auth-key-file", dest="auth_key_file", type=Path, default=None)
    parser.set_defaults(run=_run_token)


def _run_token(args: argparse.Namespace) -> int:
    keys = _auth_keys(args, dict(os.environ))
    if not keys:
        raise SystemExit("collab: give --auth-key (or COLLAB_AUTH_KEY) to sign the token")
    print(mint(parse_key(keys[0]), args.doc, args.perm, args.ttl, subject=args.sub))
    return 0


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = os.environ.get("COLLAB_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _run_serve(args: argparse.Namespace) -> int:
    settings = settings_from(args, dict(os.environ))
    _configure_logging(settings.log_format)
    from collab.server.runner import serve, supervise

    if settings.workers > 1:
        return asyncio.run(supervise(settings, sys.argv[1:]))
    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        runner.run(serve(settings))
    return 0


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop (libuv) costs a sixth less CPU per connection than asyncio's."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("collab: --event-loop uvloop: uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="collab", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_serve(subparsers)
    _add_token(subparsers)
    from collab.bench.cli import add_bench

    add_bench(subparsers)
    from collab.client.cli import add_client_commands

    add_client_commands(subparsers)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
