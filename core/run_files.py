"""Reading a training run's folder: the files a run and its manager write, read so that a torn or missing
file (a process killed mid-write, a run that never started) is an absence, never an exception.

    runs/NAME/
        config.json       the run's config (written by core.train)
        status.json       {"state", "step", "max_steps", "pid", "world_size", "updated", "error", ...}
        metrics.jsonl     one JSON row per log: {"split", "step", "time", ...}; read by metrics_rows()
        train.log         the process's stdout and stderr, appended per attempt
        job_config.json   the config a manager was asked to start (core.jobs)
        job.json          the manager's latest attempt: pid, command, started, device, processes, log_offset

    check_run_name(name)           a run name is one folder name; ConfigError otherwise
    read_json(path)                a JSON object, or None
    metrics_rows(run_dir)          the rows of metrics.jsonl (the one parser of that file)
    tail(path, lines), log_since(path, offset)
    eta(train_rows, max_steps, started)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from core.errors import ConfigError

JOB, JOB_CONFIG, LOG, METRICS = "job.json", "job_config.json", "train.log", "metrics.jsonl"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
LOG_TAIL_BYTES = 64 * 1024


def check_run_name(name: str) -> str:
    """A run name is a single folder name: letters, digits, '.', '_' and '-', not starting with '.'."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"run name {name!r} is not allowed: use 1-80 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return name


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def metrics_rows(run_dir: str | os.PathLike) -> list[dict]:
    """The rows of run_dir/metrics.jsonl, in order: each a dict with an integer "step".

    A torn line (a process killed mid-write) or a row without a step is skipped; no file is no rows.
    """
    try:
        lines = (Path(run_dir) / METRICS).read_text().splitlines()
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


def tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a text file ("" if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def log_since(path: Path, offset: int) -> str:
    """What the latest attempt wrote to its log (its last 64 KiB)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(offset, f.tell() - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def eta(train_rows: list[dict], max_steps: int | None, started: float | None) -> float | None:
    """Seconds to max_steps at the pace of this attempt's last few logged rows."""
    rows = [r for r in train_rows if "time" in r and (started is None or r["time"] >= started)][-10:]
    if not max_steps or len(rows) < 2 or rows[-1]["step"] <= rows[0]["step"]:
        return None
    per_step = (rows[-1]["time"] - rows[0]["time"]) / (rows[-1]["step"] - rows[0]["step"])
    return max(0.0, (max_steps - rows[-1]["step"]) * per_step)
