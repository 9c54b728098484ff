"""Keep a long-running server's native heap from creeping up while it serves many threads.

glibc gives each thread that allocates concurrently an arena of its own (up to 8 per core) and keeps
freed pages in them; a Gradio app serving dozens of users through a pool of worker threads therefore
grows its resident set for a long while after its code has stopped allocating anything new. Two
remedies, both no-ops where the C library is not glibc:

    limit_malloc_arenas(n)        at most n arenas for the threads created from now on
    start_heap_trimmer(seconds)   a daemon thread that hands free pages back (malloc_trim) periodically
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

M_ARENA_MAX = -8  # mallopt's parameter number for the arena limit (glibc's malloc.h)


def glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (the only one these settings exist in), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(n: int = 2) -> bool:
    """Allow at most n malloc arenas (threads share them); True if the C library took the setting."""
    libc = glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, int(n)))


def trim_heap() -> bool:
    """Return the heap's free pages to the system now; True if any were returned."""
    libc = glibc()
    return bool(libc is not None and libc.malloc_trim(0))


def start_heap_trimmer(seconds: float = 20.0) -> threading.Thread | None:
    """A daemon thread that calls trim_heap every `seconds`; None where the C library is not glibc."""
    if glibc() is None:
        return None

    def run() -> None:
        while True:
            time.sleep(seconds)
            trim_heap()

    thread = threading.Thread(target=run, name="heap-trimmer", daemon=True)
    thread.start()
    return thread
