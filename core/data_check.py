"""Checking a run's model and data in a short-lived child process, so the app never holds either.

Before a run starts, its model is built on the meta device to count its parameters, and its
splits are built once to refuse "batch larger than the data", "no such folder" and unreadable
files with their reason (core.run_launch.check_data). Done in the app, a model config of a million
layers or a large data set would take the app's memory (and the data would stay there); here both
are built in a child process that may use at most RunLimits.check_bytes of memory beyond its
imports and RunLimits.check_seconds seconds, and then exits.

    check_in_child(cfg, processes, limits)      ConfigError with the reason, or None
    python -m core.data_check MAX_BYTES PROCESSES MAX_PARAMETERS < config.json   the child: one JSON line
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.errors import ConfigError
from core.run_limits import RunLimits
from core.training.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20


def check_in_child(cfg: TrainConfig, processes: int, limits: RunLimits) -> None:
    """The model's size (at most limits.parameters) and run_launch.check_data(cfg, processes), in a child
    process bounded by limits.check_bytes and limits.check_seconds.

    ConfigError with the check's own message, or saying that the model or the data needs more memory
    or time than the bound (so it is too large to train on this server).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "core.data_check", str(int(limits.check_bytes)), str(int(processes)),
           str(int(limits.parameters))]
    try:
        proc = subprocess.run(cmd, input=json.dumps(cfg.to_dict()), capture_output=True, text=True,
                              timeout=limits.check_seconds, env=env, cwd=os.getcwd())
    except subprocess.TimeoutExpired:
        raise ConfigError(f"checking the model and the data took more than {limits.check_seconds:g} s; "
                          "make them smaller") from None
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {}
    if answer.get("ok"):
        return
    if "memory" in answer:
        what = {"model": "the model config", "data": "the data"}[answer["memory"]]
        raise ConfigError(f"{what} needs more than {limits.check_bytes / MIB:,.0f} MiB of memory to build; "
                          "make it smaller")
    if "error" in answer:
        raise ConfigError(answer["error"])
    last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    raise ConfigError(f"checking the model and the data failed: {last}")


def _child(max_bytes: int, processes: int, max_parameters: int) -> dict:
    """Count the model's parameters, then build the data, of the config on stdin under a memory limit."""
    import resource

    from core import run_launch
    from core.errors import StudioError
    from core.run_limits import check_model_size
    from core.training import config as train_config

    try:
        with open("/proc/self/statm") as f:  # the address space the imports took, in pages
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (used + max_bytes, used + max_bytes))
    except OSError:  # no procfs (macOS): the time limit still holds
        pass
    stage = "model"
    try:
        cfg = train_config.from_dict(json.loads(sys.stdin.read()))
        check_model_size(cfg, max_parameters)
        stage = "data"
        run_launch.check_data(cfg, processes)
    except StudioError as e:
        return {"error": str(e)}
    except (MemoryError, SystemError):  # under the address-space cap a C allocation can fail as a SystemError
        return {"memory": stage}
    except RuntimeError as e:  # torch's allocator says it this way
        if "alloc" in str(e):
            return {"memory": stage}
        raise
    return {"ok": True}


if __name__ == "__main__":
    print(json.dumps(_child(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))), flush=True)
