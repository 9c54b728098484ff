"""Launching a training run's process, and knowing whether it is still alive.

A run is the command a user would type, started in its own session (so it outlives the app):

    python -m core.train --config runs/NAME/job_config.json --run-dir runs/NAME --no-progress
    torchrun --standalone --nproc_per_node=N -m core.train ...         (processes > 1)

with stdout and stderr appended to `runs/NAME/train.log`, and the attempt recorded in `job.json`.

    check_launch(device, processes)   the device exists and takes that many processes; ConfigError otherwise
    check_data(cfg, processes)        the data splits build and the training split holds a batch per process
                                      (it builds them: the app runs it in a bounded child, core.data_check)
    max_processes(device)             one per GPU, or one per CPU core
    spawn(run_dir, cli_args, device, processes) -> Popen
    pid_alive(pid, marker)            a live, not recycled, process
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from core import atomic
from core.data import build_split
from core.devices import pick_device
from core.errors import ConfigError, StudioError
from core.run_files import JOB, LOG
from core.training.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


def max_processes(device: str | None) -> int:
    """How many training processes `device` can take: one per GPU, or one per CPU core."""
    kind = pick_device(device).type
    if kind == "cuda":
        return torch.cuda.device_count()
    if kind == "mps":
        return 1
    return os.cpu_count() or 1


def check_launch(device: str | None, processes: int) -> None:
    """`device` is a name this machine has and `processes` fits it; ConfigError says why not."""
    if device is not None and not isinstance(device, str):
        raise ConfigError(f"device must be a name such as 'cpu' or 'cuda', got {device!r}")
    limit = max_processes(device)  # ConfigError for an unknown or missing device
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= limit:
        raise ConfigError(f"processes must be an integer from 1 to {limit} on this device, got {processes!r}")
    if processes > 1 and device and device.startswith("cuda:"):
        raise ConfigError(f"with {processes} processes choose device 'cuda' (one GPU per process), not {device!r}")


def check_data(cfg: TrainConfig, processes: int) -> None:
    """The splits can be built and the training split holds one batch per process (what Trainer checks)."""
    model_config = cfg.model_config()
    try:
        train = build_split(cfg.data, "train", model_config)
        build_split(cfg.data, "valid", model_config)
    except ConfigError:
        raise
    except StudioError as e:  # e.g. an unreadable file in a data folder
        raise ConfigError(f"data: {e}") from e
    batch = cfg.train.batch_size
    if len(train) < batch * processes:
        raise ConfigError(f"train.batch_size={batch} x {processes} process(es) is larger than the {len(train)} "
                          "training windows; lower the batch size or add data")


def spawn(run_dir: Path, cli_args: list[str], device: str | None, processes: int) -> subprocess.Popen:
    """Start the training CLI for `run_dir` in a new session, its output appended to train.log; write job.json."""
    if device and not (processes > 1 and device == "cuda"):  # several CUDA ranks: each takes cuda:LOCAL_RANK
        cli_args = [*cli_args, "--device", device]
    if processes > 1:
        torchrun = Path(sys.executable).with_name("torchrun")
        launcher = [str(torchrun)] if torchrun.is_file() else [sys.executable, "-m", "torch.distributed.run"]
        cmd = [*launcher, "--standalone", f"--nproc_per_node={processes}", "-m", "core.train", *cli_args]
    else:
        cmd = [sys.executable, "-m", "core.train", *cli_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.time()  # before the process exists: every status.json it writes is newer
    with open(run_dir / LOG, "ab") as log:
        offset = log.tell()
        log.write(f"\n$ {shlex.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, cwd=os.getcwd(), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    atomic.write_json(run_dir / JOB, {"pid": proc.pid, "command": shlex.join(cmd), "argv": cmd, "started": started,
                                      "device": device, "processes": processes, "log_offset": offset})
    return proc


def pid_alive(pid: int, marker: bytes) -> bool:
    """Whether `pid` is a live (not zombie) process whose command line holds `marker`; a recycled pid is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no procfs (macOS): existence is all we can know
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state != "Z" and marker in cmdline
