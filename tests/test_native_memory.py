"""core.native_memory: freed native memory goes back to the system, and the arena limit is taken (glibc)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.native_memory import glibc, limit_malloc_arenas, start_heap_trimmer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(glibc() is None, reason="glibc's malloc only (this platform's C library is not)")

# 16 threads each allocate 8 MB in 64 kB blocks at the same time and free all but every 50th: the freed
# pages stay in the process (in each thread's arena) until trimmed.
FRAGMENT = textwrap.dedent("""
    import json, re, sys, threading
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from core import native_memory

    def rss():
        return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024

    kept, together = [], threading.Barrier(16)
    def work():
        blocks = [bytearray(64 * 1024) for _ in range(128)]
        together.wait()  # all 16 hold their blocks at once: each allocates from an arena of its own
        kept.extend(blocks[::50])
    if {limit}:
        native_memory.limit_malloc_arenas(2)
    threads = [threading.Thread(target=work) for _ in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    before = rss()
    native_memory.trim_heap()
    print(json.dumps({{"before": before, "after": rss()}}))
""")


def _run(limit: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", FRAGMENT.format(root=str(ROOT), limit=limit)], capture_output=True,
                         text=True, check=True, timeout=60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_trimming_gives_freed_pages_back_to_the_system() -> None:
    rss = _run(limit=False)
    assert rss["before"] - rss["after"] > 40, rss  # most of 16 x 8 MB freed: at least 40 MB handed back


def test_the_arena_limit_is_taken() -> None:
    assert limit_malloc_arenas(8) is True


def test_the_trimmer_runs_as_a_daemon_thread() -> None:
    thread = start_heap_trimmer(seconds=0.01)
    assert thread is not None and thread.daemon and thread.is_alive()
