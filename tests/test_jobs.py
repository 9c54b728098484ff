"""Background training runs (core.jobs): start, watch, stop, resume, kill -9, refusals and the concurrency limit.

Every run is a real `python -m core.train` subprocess on a tiny tones config; fixtures kill the
process groups of the runs they started, whatever happens in the test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from core import jobs as jobs_module
from core.checkpoints import latest_checkpoint, load_checkpoint
from core.errors import ConfigError
from core.jobs import JobManager
from core.training import config as train_config

ROOT = Path(__file__).resolve().parents[1]
TONE = ROOT / "configs" / "tone500.json"
TINY = [
    "model.dilations=[1,2,4]", "model.residual_channels=8", "model.dilation_channels=8",
    "model.skip_channels=8", "model.head_channels=8", "data.clips=4", "data.targets=128",
    "train.batch_size=4", "train.log_every=1", "train.valid_batches=1",
]
TIMEOUT = 120  # seconds for a run to reach a state on a busy 2-core machine


def tiny_config(*overrides: str) -> dict:
    """The tone500 config shrunk to a model and data that train a step in milliseconds."""
    return train_config.apply_overrides(json.loads(TONE.read_text()), [*TINY, *overrides])


def wait_for(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> object:
    end = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)
    return value


def wait_for_status(jobs: JobManager, name: str, check: Callable[[dict], bool], what: str) -> dict:
    """The run's status once `check(status)` holds."""

    def ready() -> dict | None:
        status = jobs.status(name)
        return status if check(status) else None

    return wait_for(ready, what)


def wait_for_state(jobs: JobManager, name: str, states: tuple[str, ...]) -> dict:
    return wait_for_status(jobs, name, lambda s: s["state"] in states, f"{name} to be one of {states}")


def train_steps(status: dict) -> list[int]:
    return [r["step"] for r in status["metrics"] if r["split"] == "train"]


def kill_runs(root: Path) -> None:
    """SIGKILL the process group of every run started under `root` (each is its own session) and reap it."""
    for job in root.glob("*/job.json"):
        try:
            os.killpg(json.loads(job.read_text())["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError, json.JSONDecodeError, KeyError):
            pass


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[JobManager]:
    manager = JobManager(tmp_path / "runs")
    try:
        yield manager
    finally:
        kill_runs(manager.runs_root)
        for proc in manager._procs.values():
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[JobManager, str]]:
    """(manager, name) of a long run started once for this module's tests; it trains until stopped."""
    manager = JobManager(tmp_path_factory.mktemp("live") / "runs", max_concurrent=1)
    try:
        name = manager.start(tiny_config("train.max_steps=100000", "train.valid_every=3"), name="live", device="cpu")
        yield manager, name
    finally:
        kill_runs(manager.runs_root)
        for proc in manager._procs.values():
            proc.wait(timeout=30)


def test_metrics_arrive_while_the_run_trains(live) -> None:
    jobs, name = live
    status = wait_for_status(jobs, name, lambda s: len(train_steps(s)) >= 2, "two train rows")
    assert status["state"] == "running"
    assert train_steps(status)[:2] == [1, 2]
    assert {"bits", "lr", "nll_nats"} <= set(status["metrics"][0])
    assert status["eta_s"] is not None and status["eta_s"] > 0
    assert status["world_size"] == 1 and status["max_steps"] == 100000
    assert "-m core.train" in status["command"] and "--device cpu" in status["command"]
    assert "core.train" in status["log"]
    assert jobs.runs()[0]["name"] == name and jobs.runs()[0]["state"] == "running"


def test_a_start_beyond_the_concurrency_limit_is_refused_before_a_process_starts(live) -> None:
    jobs, name = live
    with pytest.raises(ConfigError, match=r"at most 1 at once"):
        jobs.start(tiny_config("train.max_steps=2"), name="second", device="cpu")
    assert not (jobs.runs_root / "second").exists()
    assert jobs.live_runs() == [name]


def test_a_live_run_cannot_be_deleted_or_resumed(live) -> None:
    jobs, name = live
    with pytest.raises(ConfigError, match="stop it before deleting"):
        jobs.delete(name)
    with pytest.raises(ConfigError, match="stop it before resuming"):
        jobs.resume(name)
    assert (jobs.runs_root / name / "job.json").is_file()


def test_a_new_manager_reattaches_to_a_running_run(live) -> None:
    # What an app restart does: nothing but the run folder and the live process.
    jobs, name = live
    fresh = JobManager(jobs.runs_root)
    assert fresh.status(name)["state"] in ("starting", "running")
    assert fresh.live_runs() == [name]


def test_stop_saves_a_checkpoint_and_resume_continues_the_step_count(live) -> None:
    jobs, name = live
    wait_for(lambda: latest_checkpoint(jobs.runs_root / name), "a first checkpoint")
    jobs.stop(name)
    stopped = wait_for_state(jobs, name, ("stopped", "finished", "failed"))
    assert stopped["state"] == "stopped" and stopped["error"] is None
    step = stopped["step"]
    assert stopped["checkpoint"].endswith(f"step_{step:08d}")
    load_checkpoint(stopped["checkpoint"])

    jobs.resume(name, max_steps=step + 3)
    done = wait_for_state(jobs, name, ("finished", "failed"))
    assert done["state"] == "finished", done["error"]
    assert done["step"] == step + 3
    assert train_steps(done) == list(range(1, step + 4)), "the step count continues where it stopped"
    assert done["log"].count("$ ") == 2, "both attempts append to one log"

    jobs.delete(name)
    assert not (jobs.runs_root / name).exists() and jobs.runs() == []


def test_a_killed_run_shows_as_failed_and_its_last_checkpoint_loads_and_resumes(jobs: JobManager) -> None:
    name = jobs.start(tiny_config("train.max_steps=100000", "train.valid_every=2"), name="victim", device="cpu")
    run_dir = jobs.runs_root / name
    wait_for(lambda: latest_checkpoint(run_dir) is not None and jobs.status(name)["step"] >= 4, "two checkpoints")
    os.killpg(json.loads((run_dir / "job.json").read_text())["pid"], signal.SIGKILL)

    failed = wait_for_state(jobs, name, ("failed", "stopped", "finished"))
    assert failed["state"] == "failed"
    assert "the training process died (killed?), by signal 9" in failed["error"]
    assert JobManager(jobs.runs_root).status(name)["state"] == "failed", "a restarted app sees it failed too"

    checkpoint = latest_checkpoint(run_dir)
    load_checkpoint(checkpoint)
    step = json.loads((checkpoint / "trainer_state.json").read_text())["step"]
    jobs.resume(name, max_steps=step + 2)
    done = wait_for_state(jobs, name, ("finished", "failed"))
    assert done["state"] == "finished", done["error"]
    assert done["step"] == step + 2
    assert train_steps(done) == list(range(1, step + 3)), "rows past the checkpoint are dropped, then continue"


@pytest.mark.parametrize("overrides, kwargs, message", [
    (["train.lr=-0.1"], {}, "train.lr must be a number > 0"),
    (["train.learning_rate=0.1"], {}, "unknown train keys: learning_rate"),
    (["train.batch_size=1000"], {}, "larger than the"),
    (["data.kind=audio_folder", "data.root=/nonexistent/sounds"], {}, "no data folder at"),
    ([], {"device": "cuda:7"}, "CUDA is not available"),
    ([], {"processes": 0}, "processes must be an integer from 1"),
    ([], {"name": "../escape"}, "run name '../escape' is not allowed"),
])
def test_a_bad_config_is_refused_with_the_reason_before_a_process_starts(jobs, overrides, kwargs, message) -> None:
    if "device" in kwargs and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=re.escape(message)):
        jobs.start(tiny_config("train.max_steps=2", *overrides), **{"device": "cpu", **kwargs})
    assert jobs._procs == {}
    assert not jobs.runs_root.exists() or list(jobs.runs_root.iterdir()) == []


def test_a_run_that_fails_before_training_shows_the_clis_error(jobs, monkeypatch) -> None:
    # Skip the parent's data check, so the CLI itself meets the batch that is larger than the data.
    monkeypatch.setattr(jobs_module, "check_in_child", lambda cfg, processes, limits: None)
    name = jobs.start(tiny_config("train.max_steps=2", "train.batch_size=1000"), name="doomed", device="cpu")
    failed = wait_for_state(jobs, name, ("failed", "finished", "stopped"))
    assert failed["state"] == "failed"
    assert "error: train.batch_size=1000" in failed["error"] and "larger than the" in failed["error"]
    assert failed["checkpoint"] is None


def test_run_names_and_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        JobManager("runs", max_concurrent=0)
    jobs = JobManager("/nonexistent/runs")
    assert jobs.runs() == []
    for bad in ("", ".hidden", "a/b", "..", "x" * 81):
        with pytest.raises(ConfigError, match="not allowed"):
            jobs.status(bad)
    with pytest.raises(ConfigError, match="no run named"):
        jobs.status("missing")
