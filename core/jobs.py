"""Background training runs driven by the UI: subprocesses of the training CLI, watched through their run folders.

    jobs = JobManager(Path("runs"), max_concurrent=1)
    name = jobs.start(config, name="tones-a", device="cpu", processes=1)   # config: dict or TrainConfig
    jobs.status(name)           {"state", "step", "max_steps", "eta_s", "metrics", "log", "error", ...}
    jobs.stop(name)             SIGTERM to the run's process group: the step finishes and a checkpoint is written
    jobs.resume(name, max_steps=2000)
    jobs.delete(name)           only when it is not running
    jobs.runs()                 a summary per run folder, newest first

A run is a process of the training CLI (core.run_launch) writing its run folder (core.run_files).
Everything the manager knows is in those files, so a new manager (after an app restart, or in
another browser tab's request) re-attaches to runs that are still going: a run is live while
its process is. A run whose status.json says "running" but whose process is gone died (kill -9,
out of memory...): it is shown as failed, and its last checkpoint still loads and resumes.

Every config is validated before a process starts (TrainConfig, the device, the process
count, the sizes a RunLimits bounds, and the data: the training split must hold one batch per
process, checked in a bounded child process so the data never sits in the app), so a bad value
is refused with its reason (ConfigError) instead of crashing a run. A manager made with
`data_roots` takes data only from under those folders, and one made `read_only` (a public demo)
lists and watches runs but refuses to start, resume, stop or delete any.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from core import atomic, run_launch
from core.checkpoints import latest_checkpoint
from core.data_check import check_in_child
from core.errors import ConfigError
from core.run_files import (
    JOB,
    JOB_CONFIG,
    LOG,
    NAME_RE,
    check_run_name,
    eta,
    log_since,
    metrics_rows,
    read_json,
    tail,
)
from core.run_limits import RunLimits, check_limits
from core.training import config as train_config
from core.training.config import TrainConfig

LIVE = ("starting", "running", "stopping")  # states with a process behind them
DONE = ("stopped", "finished", "failed")
DIED = "the training process died (killed?)"
READ_ONLY = ("this app is a public demo (python app.py --public-demo): runs can be watched but not started, "
             "resumed, stopped or deleted. Run the app on your own machine, or with --auth, to train")


class JobManager:
    """Starts, watches, stops, resumes and deletes training runs in `runs_root`; at most `max_concurrent` at once.

    Thread-safe: one manager serves every user of an app. Only runs this manager family started
    (those with a job.json) count towards `max_concurrent`; runs started from the command line in
    the same folder are listed and can be watched and stopped too.
    """

    def __init__(self, runs_root: str | os.PathLike, max_concurrent: int = 1, *, limits: RunLimits | None = None,
                 data_roots: Sequence[str | os.PathLike] | None = None, read_only: bool = False):
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an integer >= 1, got {max_concurrent!r}")
        self.runs_root = Path(runs_root).resolve()
        self.max_concurrent = max_concurrent
        self.limits = limits or RunLimits()
        self.data_roots = None if data_roots is None else [Path(r) for r in data_roots]  # None: any folder
        self.read_only = read_only
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen] = {}  # runs this manager started: reaped by poll()

    # -- validation -------------------------------------------------------------------------

    def check(self, config: dict | TrainConfig, *, device: str | None = None, processes: int = 1) -> TrainConfig:
        """The validated TrainConfig for a new run on `device` with `processes` processes; ConfigError says why not.

        The sizes are checked against `self.limits` first (arithmetic, nothing built), the data folders
        against `data_roots`; then the model is counted and the splits built in a bounded child process
        (core.data_check), so that a model over the size bound, "batch larger than the data" and "no such
        data folder" are refused before any run starts, and the app never holds the model or the data.
        """
        cfg = config if isinstance(config, TrainConfig) else train_config.from_dict(config)
        run_launch.check_launch(device, processes)
        check_limits(cfg, processes, self.limits)
        self._check_data_paths(cfg)
        check_in_child(cfg, processes, self.limits)
        return cfg

    def _check_data_paths(self, cfg: TrainConfig) -> None:
        """With `data_roots`, every path the data reads is under one of them. The message is the same whether
        a path outside exists or not, so it tells nothing about the server's other folders."""
        if self.data_roots is None:
            return
        if cfg.train.init_from:
            raise ConfigError("train.init_from (fine-tuning from a checkpoint folder) is not offered on this server; "
                              "leave it empty")
        roots = [r.resolve() for r in self.data_roots]
        for name in cfg.data.path_fields:
            value = getattr(cfg.data, name)
            if value and not any(Path(value).resolve().is_relative_to(r) for r in roots):
                shown = ", ".join(str(r) for r in self.data_roots)
                raise ConfigError(f"data.{name} must be a folder under this app's data folders ({shown}); "
                                  f"{value!r} is not. Upload audio to make one")

    # -- the runs ---------------------------------------------------------------------------

    def start(self, config: dict | TrainConfig, *, name: str | None = None, device: str | None = None,
              processes: int = 1) -> str:
        """Validate `config` and start it as run `name` (default: family-data-time); returns the run's name."""
        self._check_writable()
        self._check_capacity()
        cfg = self.check(config, device=device, processes=processes)
        cfg = train_config.from_dict(cfg.to_dict())  # a copy: the data root is made absolute below
        if getattr(cfg.data, "root", ""):  # a data kind read from a folder (audio_folder)
            cfg.data.root = str(Path(cfg.data.root).resolve())
        if cfg.train.init_from:
            cfg.train.init_from = str(Path(cfg.train.init_from).resolve())
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
        self._check_writable()
        run_dir = self._run_dir(name)
        with self._lock:
            info = self._describe(name, run_dir)
            if info["state"] in LIVE:
                raise ConfigError(f"run {name!r} is {info['state']}; stop it before resuming")
            checkpoint = latest_checkpoint(run_dir)
            if checkpoint is None:
                raise ConfigError(f"run {name!r} has no checkpoint to resume from; delete it and start a new run")
            step = (read_json(checkpoint / "trainer_state.json") or {}).get("step", 0)
            base = read_json(run_dir / "config.json")
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
        self._check_writable()
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
        self._check_writable()
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
        metrics = metrics_rows(run_dir)
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
            "eta_s": eta(train_rows, max_steps, info["started"]) if info["state"] in LIVE else None,
            "world_size": info["world_size"],
            "pid": info["pid"],
            "command": job.get("command"),
            "device": job.get("device"),
            "started": info["started"],
            "metrics": metrics,
            "log": tail(run_dir / LOG, log_lines),
            "error": info["error"],
            "checkpoint": str(checkpoint) if checkpoint else None,
            "config": read_json(run_dir / "config.json"),
        }

    # -- internals --------------------------------------------------------------------------

    def _run_dir(self, name: str) -> Path:
        run_dir = self.runs_root / check_run_name(name)
        if not run_dir.is_dir():
            raise ConfigError(f"there is no run named {name!r} in {self.runs_root}")
        return run_dir

    def _check_writable(self) -> None:
        if self.read_only:
            raise ConfigError(READ_ONLY)

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
        self._procs[name] = run_launch.spawn(run_dir, cli_args, device, processes)

    def _alive(self, name: str, pid: int | None, marker: bytes) -> tuple[bool, int | None]:
        """(is the run's process alive, its exit code if this manager started and reaped it)."""
        if pid is None:
            return False, None
        with self._lock:
            proc = self._procs.get(name)
            if proc is not None and proc.pid == pid:
                code = proc.poll()
                return code is None, code
        return run_launch.pid_alive(pid, marker), None

    def _describe(self, name: str, run_dir: Path) -> dict:
        """The run's state from its files and its process (see the module docstring)."""
        job, st = read_json(run_dir / JOB), read_json(run_dir / "status.json")
        cfg = read_json(run_dir / "config.json") or read_json(run_dir / JOB_CONFIG) or {}
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
            error = log_since(run_dir / LOG, job.get("log_offset", 0)) or f"{DIED}, before it started training."
        else:
            state = (st or {}).get("state", "stopped")
        step = (st or {}).get("step", 0)
        max_steps = (fresh or {}).get("max_steps") or cfg.get("train", {}).get("max_steps") or (st or {}).get(
            "max_steps")
        return {"name": name, "state": state, "step": step, "max_steps": max_steps, "error": error,
                "world_size": (st or {}).get("world_size") or (job or {}).get("processes"), "pid": pid,
                "started": started, "job": job}
