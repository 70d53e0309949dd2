"""Freed heap pages go back to the OS after documents are unloaded (glibc's malloc_trim)."""

from __future__ import annotations

import platform

import pytest

from collab.server.memory import release_free_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is a glibc call")
def test_free_memory_is_released_on_glibc() -> None:
    assert release_free_memory() is True
