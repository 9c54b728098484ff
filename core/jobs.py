"""Background training runs driven by the UI: subprocesses of the training CLI, watched through their run folders.

    jobs = JobManager(Path("runs"), max_concurrent=1)
    name = jobs.start(config, name="tones-a", device="cpu", processes=1)   # config: dict or TrainConfig
    jobs.status(name)           {"state", "step", "max_steps", "eta_s", "metrics", "log", "error", ...}
    jobs.stop(name)             SIGTERM to the run's process group: the step finishes and a checkpoint is written
    jobs.resume(name, max_steps=2000)
    jobs.delete(name)           only when it is not running

A run is the command a user would type, started in its own session (so it outlives the app):

    python -m core.train --config runs/NAME/job_config.json --run-dir runs/NAME --no-progress
    torchrun --standalone --nproc_per_node=N -m core.train ...         (processes > 1)

with stdout and stderr appended to `runs/NAME/train.log`. Besides what the CLI writes
(config.json, metrics.jsonl, status.json, checkpoints/, latest; see core.train), the manager
writes `job_config.json` (the config asked for) and `job.json` (pid, command, started, ...
of the latest attempt). Everything it knows is in those files, so a new manager (after an app
restart, or in another browser tab's request) re-attaches to runs that are still going: a run
is live while its process is. A run whose status.json says "running" but whose process is
gone died (kill -9, out of memory...): it is shown as failed, and its last checkpoint still
loads and resumes.

Every config is validated before a process starts (TrainConfig, the device, the process
count, and the data: the training split must hold one batch per process), so a bad value is
refused with its reason (ConfigError) instead of crashing a run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from core import atomic, train_config
from core.checkpoints import latest_checkpoint
from core.data import build_split
from core.devices import pick_device
from core.errors import ConfigError, StudioError
from core.train_config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB, JOB_CONFIG, LOG = "job.json", "job_config.json", "train.log"
LIVE = ("starting", "running", "stopping")  # states with a process behind them
DONE = ("stopped", "finished", "failed")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
DIED = "the training process died (killed?)"
LOG_TAIL_BYTES = 64 * 1024


class JobManager:
    """Starts, watches, stops, resumes and deletes training runs in `runs_root`; at most `max_concurrent` at once.

    Thread-safe: one manager serves every user of an app. Only runs this manager family started
    (those with a job.json) count towards `max_concurrent`; runs started from the command line in
    the same folder are listed and can be watched and stopped too.
    """

    def __init__(self, runs_root: str | os.PathLike, max_concurrent: int = 1):
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an integer >= 1, got {max_concurrent!r}")
        self.runs_root = Path(runs_root).resolve()
        self.max_concurrent = max_concurrent
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen] = {}  # runs this manager started: reaped by poll()

    # -- validation -------------------------------------------------------------------------

    def check(self, config: dict | TrainConfig, *, device: str | None = None, processes: int = 1) -> TrainConfig:
        """The validated TrainConfig for a new run on `device` with `processes` processes; ConfigError says why not.

        Builds the data splits here (cheap for synthetic data) so that "batch larger than the data" and
        "no such data folder" are refused before any process starts.
        """
        cfg = config if isinstance(config, TrainConfig) else train_config.from_dict(config)
        _check_launch(device, processes)
        _check_data(cfg, processes)
        return cfg

    # -- the runs ---------------------------------------------------------------------------

    def start(self, config: dict | TrainConfig, *, name: str | None = None, device: str | None = None,
              processes: int = 1) -> str:
        """Validate `config` and start it as run `name` (default: family-data-time); returns the run's name."""
        self._check_capacity()
        cfg = self.check(config, device=device, processes=processes)
        cfg = train_config.from_dict(cfg.to_dict())  # a copy: the data root is made absolute below
        if cfg.data.root:
            cfg.data.root = str(Path(cfg.data.root).resolve())
        with self._lock:
            self._check_capacity()
            name = check_run_name(name) if name else self._fresh_name(cfg)
            run_dir = self.runs_root / name
            if run_dir.exists():
                raise ConfigError(f"a run named {name!r} already exists; choose another name or delete it")
            run_dir.mkdir(parents=True)
            atomic.write_json(run_dir / JOB_CONFIG, cfg.to_dict())
            args = ["--config", str(run_dir / JOB_CONFIG), "--run-dir", str(run_dir), "--no-progress"]
            self._spawn(name, run_dir, args, device, processes)
        return name

    def resume(self, name: str, *, max_steps: int | None = None, device: str | None = None,
               processes: int | None = None) -> None:
        """Continue a stopped, finished or failed run from its latest checkpoint, to `max_steps` (default: as before).

        `device` and `processes` default to those of the run's last start.
        """
        run_dir = self._run_dir(name)
        with self._lock:
            info = self._describe(name, run_dir)
            if info["state"] in LIVE:
                raise ConfigError(f"run {name!r} is {info['state']}; stop it before resuming")
            checkpoint = latest_checkpoint(run_dir)
            if checkpoint is None:
                raise ConfigError(f"run {name!r} has no checkpoint to resume from; delete it and start a new run")
            step = (_read_json(checkpoint / "trainer_state.json") or {}).get("step", 0)
            base = _read_json(run_dir / "config.json")
            if base is None:
                raise ConfigError(f"run {name!r} has no readable config.json; it cannot be resumed")
            if max_steps is not None:
                base.setdefault("train", {})["max_steps"] = max_steps
            cfg = train_config.from_dict(base)
            if cfg.train.max_steps <= step:
                raise ConfigError(f"run {name!r} is at step {step}; set max_steps above {step} to train it further")
            job = info["job"] or {}
            device = device if device is not None else job.get("device")
            processes = processes if processes is not None else job.get("processes", info["world_size"] or 1)
            self._check_capacity()
            self.check(cfg, device=device, processes=processes)
            args = ["--run-dir", str(run_dir), "--resume", "--no-progress",
                    "--set", f"train.max_steps={cfg.train.max_steps}"]
            self._spawn(name, run_dir, args, device, processes)

    def stop(self, name: str) -> None:
        """Ask a live run to stop: SIGTERM to its process group; it finishes its step and saves a checkpoint."""
        run_dir = self._run_dir(name)
        with self._lock:
            info = self._describe(name, run_dir)
            if info["state"] not in LIVE:
                raise ConfigError(f"run {name!r} is not running (it is {info['state']})")
            job = info["job"]
            try:
                if job is not None:
                    os.killpg(job["pid"], signal.SIGTERM)  # started in its own session: pgid == pid
                else:  # started from a shell: signal only its own process, never the shell's group
                    os.kill(info["pid"], signal.SIGTERM)
            except ProcessLookupError:
                return  # it ended meanwhile
            if job is not None:
                atomic.write_json(run_dir / JOB, {**job, "stop_requested": time.time()})

    def delete(self, name: str) -> None:
        """Delete a run folder with its checkpoints; refused while the run is live."""
        run_dir = self._run_dir(name)
        with self._lock:
            state = self._describe(name, run_dir)["state"]
            if state in LIVE:
                raise ConfigError(f"run {name!r} is {state}; stop it before deleting it")
            doomed = run_dir.with_name(f".{name}.deleting")
            os.replace(run_dir, doomed)  # gone from listings at once, even if the removal below is slow
            self._procs.pop(name, None)
        shutil.rmtree(doomed, ignore_errors=True)

    def runs(self) -> list[dict]:
        """A summary per run folder, newest first: name, state, step, max_steps, world_size, started."""
        if not self.runs_root.is_dir():
            return []
        found = []
        for run_dir in self.runs_root.iterdir():
            if run_dir.name.startswith(".") or not run_dir.is_dir() or not NAME_RE.fullmatch(run_dir.name):
                continue
            if not any((run_dir / f).is_file() for f in (JOB, "status.json", "config.json")):
                continue
            info = self._describe(run_dir.name, run_dir)
            found.append({k: info[k] for k in ("name", "state", "step", "max_steps", "world_size", "started")})
        return sorted(found, key=lambda r: -(r["started"] or 0))

    def live_runs(self) -> list[str]:
        """Names of the runs this manager family started that are still live (they count towards the limit)."""
        return [r["name"] for r in self.runs() if r["state"] in LIVE and (self.runs_root / r["name"] / JOB).is_file()]

    def status(self, name: str, log_lines: int = 40) -> dict:
        """Where a run stands.

        Keys: name, run_dir, state (starting|running|stopping|stopped|finished|failed), step, max_steps,
        progress (0..1), eta_s (seconds left, None until two train rows of this attempt exist), world_size,
        pid, command, device, started, metrics (the metrics.jsonl rows), log (its last `log_lines` lines),
        error (a traceback or reason when failed, else None), checkpoint (path of the latest, or None),
        config (config.json as a dict, or None before the run wrote it).
        """
        run_dir = self._run_dir(name)
        info = self._describe(name, run_dir)
        metrics = _read_metrics(run_dir / "metrics.jsonl")
        train_rows = [r for r in metrics if r.get("split") == "train"]
        step = max([info["step"] or 0, *(r["step"] for r in metrics)])
        max_steps = info["max_steps"]
        checkpoint = latest_checkpoint(run_dir)
        job = info["job"] or {}
        return {
            "name": name,
            "run_dir": str(run_dir),
            "state": info["state"],
            "step": step,
            "max_steps": max_steps,
            "progress": min(1.0, step / max_steps) if max_steps else 0.0,
            "eta_s": _eta(train_rows, max_steps, info["started"]) if info["state"] in LIVE else None,
            "world_size": info["world_size"],
            "pid": info["pid"],
            "command": job.get("command"),
            "device": job.get("device"),
            "started": info["started"],
            "metrics": metrics,
            "log": _tail(run_dir / LOG, log_lines),
            "error": info["error"],
            "checkpoint": str(checkpoint) if checkpoint else None,
            "config": _read_json(run_dir / "config.json"),
        }

    # -- internals --------------------------------------------------------------------------

    def _run_dir(self, name: str) -> Path:
        run_dir = self.runs_root / check_run_name(name)
        if not run_dir.is_dir():
            raise ConfigError(f"there is no run named {name!r} in {self.runs_root}")
        return run_dir

    def _check_capacity(self) -> None:
        live = self.live_runs()
        if len(live) >= self.max_concurrent:
            raise ConfigError(
                f"{len(live)} run(s) already training ({', '.join(live)}); at most {self.max_concurrent} at once. "
                "Stop one or wait for it to finish.")

    def _fresh_name(self, cfg: TrainConfig) -> str:
        base = f"{cfg.model['model_type']}-{cfg.data.kind}-{time.strftime('%Y%m%d-%H%M%S')}"
        name, n = base, 1
        while (self.runs_root / name).exists():
            n += 1
            name = f"{base}-{n}"
        return name

    def _spawn(self, name: str, run_dir: Path, cli_args: list[str], device: str | None, processes: int) -> None:
        """Start the CLI for `run_dir` in a new session, its output appended to train.log; write job.json."""
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
        self._procs[name] = proc
        atomic.write_json(run_dir / JOB, {"pid": proc.pid, "command": shlex.join(cmd), "argv": cmd, "started": started,
                                    "device": device, "processes": processes, "log_offset": offset})

    def _alive(self, name: str, pid: int | None, marker: bytes) -> tuple[bool, int | None]:
        """(is the run's process alive, its exit code if this manager started and reaped it)."""
        if pid is None:
            return False, None
        with self._lock:
            proc = self._procs.get(name)
            if proc is not None and proc.pid == pid:
                code = proc.poll()
                return code is None, code
        return _pid_alive(pid, marker), None

    def _describe(self, name: str, run_dir: Path) -> dict:
        """The run's state from its files and its process (see the module docstring)."""
        job, st = _read_json(run_dir / JOB), _read_json(run_dir / "status.json")
        cfg = _read_json(run_dir / "config.json") or _read_json(run_dir / JOB_CONFIG) or {}
        started = job.get("started") if job else (st or {}).get("updated")
        # status.json belongs to the latest attempt only if it was written after that attempt started.
        fresh = st if st is not None and (job is None or st.get("updated", 0) >= job["started"]) else None
        pid = job["pid"] if job else (st or {}).get("pid")
        # A job's command line names its (absolute) run folder; a shell's may name it relatively.
        marker = str(run_dir).encode() if job else b"core.train"
        alive, code = self._alive(name, pid, marker) if (job or (st or {}).get("state") == "running") else (False, None)
        stopping = bool(job and job.get("stop_requested", 0) >= job["started"])
        error = None
        if alive:  # live until its process exits, even after status.json says it is done
            state = (fresh or {}).get("state", "starting")
            if stopping or state in DONE:
                state = "stopping"
        elif fresh is not None and fresh.get("state") in DONE:
            state, error = fresh["state"], fresh.get("error")
        elif fresh is not None:  # says running, but nobody is
            how = "" if code is None else f", with exit code {code}" if code >= 0 else f", by signal {-code}"
            state, error = "failed", f"{DIED}{how}; its last checkpoint is kept and can be resumed."
        elif stopping:
            state = "stopped"  # stopped before its first step: nothing was saved
        elif job is not None:  # this attempt ended before training began
            state = "failed"
            error = _log_since(run_dir / LOG, job.get("log_offset", 0)) or f"{DIED}, before it started training."
        else:
            state = (st or {}).get("state", "stopped")
        step = (st or {}).get("step", 0)
        max_steps = (fresh or {}).get("max_steps") or cfg.get("train", {}).get("max_steps") or (st or {}).get(
            "max_steps")
        return {"name": name, "state": state, "step": step, "max_steps": max_steps, "error": error,
                "world_size": (st or {}).get("world_size") or (job or {}).get("processes"), "pid": pid,
                "started": started, "job": job}


def check_run_name(name: str) -> str:
    """A run name is a single folder name: letters, digits, '.', '_' and '-', not starting with '.'."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"run name {name!r} is not allowed: use 1-80 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return name


def max_processes(device: str | None) -> int:
    """How many training processes `device` can take: one per GPU, or one per CPU core."""
    kind = pick_device(device).type
    if kind == "cuda":
        return torch.cuda.device_count()
    if kind == "mps":
        return 1
    return os.cpu_count() or 1


def _check_launch(device: str | None, processes: int) -> None:
    if device is not None and not isinstance(device, str):
        raise ConfigError(f"device must be a name such as 'cpu' or 'cuda', got {device!r}")
    limit = max_processes(device)  # ConfigError for an unknown or missing device
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= limit:
        raise ConfigError(f"processes must be an integer from 1 to {limit} on this device, got {processes!r}")
    if processes > 1 and device and device.startswith("cuda:"):
        raise ConfigError(f"with {processes} processes choose device 'cuda' (one GPU per process), not {device!r}")


def _check_data(cfg: TrainConfig, processes: int) -> None:
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


def _pid_alive(pid: int, marker: bytes) -> bool:
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


def _eta(train_rows: list[dict], max_steps: int | None, started: float | None) -> float | None:
    """Seconds to max_steps at the pace of this attempt's last few logged rows."""
    rows = [r for r in train_rows if "time" in r and (started is None or r["time"] >= started)][-10:]
    if not max_steps or len(rows) < 2 or rows[-1]["step"] <= rows[0]["step"]:
        return None
    per_step = (rows[-1]["time"] - rows[0]["time"]) / (rows[-1]["step"] - rows[0]["step"])
    return max(0.0, (max_steps - rows[-1]["step"]) * per_step)


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _read_metrics(path: Path) -> list[dict]:
    """The rows of metrics.jsonl; a torn last line (a process killed mid-write) is skipped."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def _tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a text file ("" if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def _log_since(path: Path, offset: int) -> str:
    """What the latest attempt wrote to its log (its last 64 KiB)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(offset, f.tell() - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""
