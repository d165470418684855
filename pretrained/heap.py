"""Giving freed memory back to the system.

glibc's allocator serves mid-sized blocks (up to its mmap threshold, which grows to 32 MiB after
the first large free) from its heap and keeps freed heap pages mapped. Work that makes and frees
many weight- or picture-sized temporaries, interleaved with what it keeps (quantizing while
loading, repacking quantized weights), then leaves hundreds of MiB resident that nothing uses.
``malloc_trim(0)`` hands them back. Elsewhere than glibc this is a no-op.

    >>> from pretrained.heap import release_freed_heap
    >>> release_freed_heap()
"""

from __future__ import annotations

import ctypes
import ctypes.util

_TRIM = None


def release_freed_heap() -> None:
    """Return the allocator's free heap pages to the system (glibc ``malloc_trim(0)``)."""
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


__all__ = ["release_freed_heap"]
