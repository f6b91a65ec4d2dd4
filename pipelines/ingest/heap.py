"""Giving freed memory back to the operating system between a recording's steps (``release_memory``).

numpy frees a step's arrays as soon as the step ends, but glibc's allocator keeps the pages: after
the first large array is freed it serves arrays up to that size from its heap (the mmap threshold
rises), and the freed heap is only returned from its top. A long recording's steps (reading the IMU
table, decoding the video, the log-mel of the audio) each leave tens of MB resident that the next
step does not reuse, so the lag estimate at the end ran on top of all of them.
``release_memory`` calls ``malloc_trim(0)``, which returns every free page of every arena
(``benchmarks/memory.py`` measures the effect). On a C library without it (musl, macOS, Windows)
it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def release_memory() -> bool:
    """Return the allocator's free pages to the OS (glibc ``malloc_trim(0)``; a few ms). True when
    the C library has it."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True
