"""Checking a run's data in a short-lived child process, so the app never holds the data itself.

Before a run starts, its splits are built once to refuse "batch larger than the data", "no such
folder" and unreadable files with their reason (core.run_launch.check_data). Built in the app,
a large data set would stay in the app's memory; here it is built in a child process that may use
at most `max_bytes` of memory beyond its imports and `timeout_s` seconds, and then exits.

    check_data_bounded(cfg, processes, max_bytes, timeout_s)   ConfigError with the reason, or None
    python -m core.data_check MAX_BYTES PROCESSES < config.json   the child: prints one JSON line
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.errors import ConfigError
from core.training.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20


def check_data_bounded(cfg: TrainConfig, processes: int, max_bytes: int, timeout_s: float) -> None:
    """run_launch.check_data(cfg, processes) in a child process bounded by `max_bytes` and `timeout_s`.

    ConfigError with the check's own message, or saying that the data needs more memory or time
    than the bound (so it is too large to train on this server).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "core.data_check", str(int(max_bytes)), str(int(processes))]
    try:
        proc = subprocess.run(cmd, input=json.dumps(cfg.to_dict()), capture_output=True, text=True,
                              timeout=timeout_s, env=env, cwd=os.getcwd())
    except subprocess.TimeoutExpired:
        raise ConfigError(f"checking the data took more than {timeout_s:g} s; make the data smaller") from None
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {}
    if answer.get("ok"):
        return
    if answer.get("memory"):
        raise ConfigError(f"the data needs more than {max_bytes / MIB:,.0f} MiB of memory to build; "
                          "make it smaller (fewer or shorter clips or files)")
    if "error" in answer:
        raise ConfigError(answer["error"])
    last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    raise ConfigError(f"checking the data failed: {last}")


def _child(max_bytes: int, processes: int) -> dict:
    """Build the data of the config on stdin under a memory limit; the answer as a dict."""
    import resource

    from core import run_launch
    from core.errors import StudioError
    from core.training import config as train_config

    try:
        with open("/proc/self/statm") as f:  # the address space the imports took, in pages
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (used + max_bytes, used + max_bytes))
    except OSError:  # no procfs (macOS): the time limit still holds
        pass
    try:
        run_launch.check_data(train_config.from_dict(json.loads(sys.stdin.read())), processes)
    except StudioError as e:
        return {"error": str(e)}
    except MemoryError:
        return {"memory": True}
    except RuntimeError as e:  # torch's allocator says it this way
        if "alloc" in str(e):
            return {"memory": True}
        raise
    return {"ok": True}


if __name__ == "__main__":
    print(json.dumps(_child(int(sys.argv[1]), int(sys.argv[2]))), flush=True)
