"""Give freed heap memory back to the operating system after documents are unloaded.

A loaded document's CRDT lives in many small native allocations (pycrdt/yrs). glibc keeps
the pages it freed inside its arenas, so after big documents are evicted the process RSS
stays at its peak until ``malloc_trim`` returns the free pages. Elsewhere (musl, macOS) this
is a no-op: their allocators return memory by themselves or expose no such call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def release_free_memory() -> bool:
    """Return free heap pages to the OS; True when the allocator supports it."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True
