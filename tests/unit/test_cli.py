"""`collab serve` settings: flags win over COLLAB_* variables, which win over defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from collab.cli import settings_from
from collab.server.settings import Settings


def serve_args(**flags) -> argparse.Namespace:
    return argparse.Namespace(**flags)


def test_defaults_match_make_serve() -> None:
    settings = settings_from(serve_args(), {})
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 8000, Path("data"))


def test_environment_variables_configure_every_flag() -> None:
    env = {
        "COLLAB_HOST": "0.0.0.0",
        "COLLAB_PORT": "9001",
        "COLLAB_DATA_DIR": "/srv/collab",
        "COLLAB_SYNCHRONOUS": "FULL",
        "COLLAB_IDLE_EVICT_SECONDS": "2.5",
        "COLLAB_WS_COMPRESS": "true",
    }
    settings = settings_from(serve_args(), env)
    assert settings == Settings(
        host="0.0.0.0",
        port=9001,
        data_dir=Path("/srv/collab"),
        synchronous="FULL",
        idle_evict_seconds=2.5,
        ws_compress=True,
    )


def test_a_flag_wins_over_its_variable() -> None:
    settings = settings_from(serve_args(port=7000), {"COLLAB_PORT": "9001"})
    assert settings.port == 7000


@pytest.mark.parametrize(
    "env", [{"COLLAB_PORT": "eighty"}, {"COLLAB_LOG_FORMAT": "xml"}, {"COLLAB_SYNCHRONOUS": "OFF"}]
)
def test_bad_values_stop_with_a_clear_message(env: dict[str, str]) -> None:
    with pytest.raises(SystemExit, match="collab:"):
        settings_from(serve_args(), env)


def test_every_setting_has_a_flag_and_a_variable() -> None:
    from dataclasses import fields

    from collab.cli import _SERVE_OPTIONS

    flagged = {name for name, _, _ in _SERVE_OPTIONS.values()}
    special = {"ws_compress", "reuse_port", "auth_keys", "admin_key", "allowed_origins"}
    assert {f.name for f in fields(Settings)} == flagged | special
