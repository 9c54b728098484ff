"""End to end: the Train page's API (start_run, run_status, stop_run, resume_run) through gradio_client.

The app runs in this process on a temporary runs folder; the runs it starts are real
`python -m core.train` subprocesses, killed (process group, SIGKILL) when the module ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import free_port
from gradio_client import Client
from gradio_client.exceptions import AppError
from test_jobs import TIMEOUT, kill_runs, tiny_config

from app import build_app, launch
from core.errors import AudioError, ConfigError
from core.model_store import ModelStore
from pages import train as train_page
from pages.uploads import save_uploads


def form(**changes) -> dict:
    """The Start form's values for a tiny tones run that trains until stopped."""
    values = dict(name="api-run", family="wavenet", model_json=json.dumps(tiny_config()["model"]), data_kind="tones",
                  data_folder=None, targets=128, clips=4, seconds=1.0, frequency=500, tone_kinds=["sine"], lr=0.01,
                  batch_size=4, max_steps=100000, valid_every=3, log_every=1, overrides="train.valid_batches=1",
                  device="cpu", processes=1)
    return {**values, **changes}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, ModelStore, Path]]:
    """(client, the app's model store, its runs folder) for the whole app with the Train page on a temporary folder."""
    root = tmp_path_factory.mktemp("train_app")
    previous = dict(train_page._settings)
    train_page.configure(runs=root / "runs", max_runs=1, uploads=root / "uploads")
    store = ModelStore([root / "models"], device="cpu")
    demo = build_app(store)
    jobs = train_page.job_manager()
    try:
        yield Client(launch(demo, port=free_port(), block=False), verbose=False), store, jobs.runs_root
    finally:
        kill_runs(jobs.runs_root)
        for proc in jobs._procs.values():
            proc.wait(timeout=30)
        demo.close()
        train_page.configure(**previous)


def poll(client: Client, run: str, check: Callable[[dict], bool], what: str) -> dict:
    end = time.monotonic() + TIMEOUT
    while True:
        status = client.predict(run=run, api_name="/run_status")[0]
        if check(status):
            return status
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}; last status: {status.get('state')}")
        time.sleep(0.5)


def train_steps(status: dict) -> list[int]:
    return [r["step"] for r in status["metrics"] if r["split"] == "train"]


TINY_WAYBACK = {"model_type": "wayback", "layout": "wayback", "sampling_frequency": 8000, "layer_sizes": [8, 8],
                "periods": [1, 2], "boundaries": [2, 2], "chunk_size": 2, "io_sizes": [8]}


@pytest.mark.parametrize("changes", [{}, {"name": "api-wayback", "family": "wayback",
                                         "model_json": json.dumps(TINY_WAYBACK)}], ids=["wavenet", "wayback"])
def test_a_run_started_watched_stopped_and_resumed_through_the_api_continues_its_step_count(app, changes) -> None:
    client, store, runs = app
    run, message = client.predict(**form(**changes), api_name="/start_run")
    assert run == changes.get("name", "api-run") and "Started" in message

    running = poll(client, run, lambda s: len(train_steps(s)) >= 2, "metrics to arrive")
    assert running["state"] == "running" and train_steps(running)[:2] == [1, 2]
    assert all("bits" in r and "lr" in r for r in running["metrics"] if r["split"] == "train")

    assert "Stopping" in client.predict(run=run, api_name="/stop_run")
    stopped = poll(client, run, lambda s: s["state"] in ("stopped", "failed", "finished"), "the run to stop")
    assert stopped["state"] == "stopped" and stopped["checkpoint"]
    step = stopped["step"]
    assert any(m["path"] == stopped["checkpoint"] for m in store.list_models()), "a stopped run is a model"

    assert "Resumed" in client.predict(run=run, max_steps=step + 2, api_name="/resume_run")
    done = poll(client, run, lambda s: s["state"] in ("finished", "failed"), "the resumed run to finish")
    assert done["state"] == "finished", done["error"]
    assert done["step"] == step + 2 and train_steps(done) == list(range(1, step + 3))
    assert (runs / run / "checkpoints" / f"step_{step + 2:08d}").is_dir()


@pytest.mark.parametrize("changes, reason", [
    ({"lr": -0.1}, "train.lr must be a number > 0"),
    ({"overrides": "train.learning_rate=0.1"}, "unknown train keys: learning_rate"),
    ({"batch_size": 1000}, "larger than the"),
    ({"model_json": "{not json"}, "the model config is not valid JSON"),
])
def test_a_bad_hyperparameter_is_refused_with_the_reason_before_a_process_starts(app, changes, reason) -> None:
    client, _, runs = app
    with pytest.raises(AppError, match=reason):
        client.predict(**form(name="refused", **changes), api_name="/start_run")
    assert not (runs / "refused").exists()


def test_uploaded_wavs_become_a_data_folder_with_train_and_valid(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        path = tmp_path / f"clip {i}.wav"
        sf.write(path, 0.1 * np.sin(np.arange(4000) * (i + 1) / 10), 8000)
        files.append(str(path))
    folder = save_uploads(tmp_path / "uploads", "sounds", files)
    assert sorted(p.name for p in (folder / "train").iterdir()) == ["000_clip_0.wav", "001_clip_1.wav"]
    assert [p.name for p in (folder / "valid").iterdir()] == ["002_clip_2.wav"]

    one = save_uploads(tmp_path / "uploads", "one", files[:1])
    assert len(sf.read(one / "train" / "000_clip_0.wav")[0]) == 3200
    assert len(sf.read(one / "valid" / "001_clip_0.wav")[0]) == 800

    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    with pytest.raises(AudioError, match="notes.wav"):
        save_uploads(tmp_path / "uploads", "broken", [*files, str(bad)])
    assert not (tmp_path / "uploads" / "broken").exists()
    with pytest.raises(ConfigError, match="already exists"):
        save_uploads(tmp_path / "uploads", "sounds", files)
    with pytest.raises(ConfigError, match="not allowed"):
        save_uploads(tmp_path / "uploads", "../up", files)
