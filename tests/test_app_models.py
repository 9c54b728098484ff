"""End to end: the models page's Hub events, through gradio_client, against a fake Hub.

The app runs in a subprocess (`python app.py`) started with HF_ENDPOINT pointing at the FakeHub
of tests/test_hub.py and HF_HOME in a temporary folder: huggingface_hub reads them when it is
imported, which in this pytest process has already happened (gradio imports it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from test_hub import REPO, ROOT, TOKEN, FakeHub, checkpoint_files, tiny_model

from core.checkpoints import CARD, CONFIG, WEIGHTS, save_checkpoint
from core.model_store import ModelStore
from pages import models as models_page
from pages.model_picker import metrics_text

STARTUP_TIMEOUT = 90  # seconds for the app to import gradio and torch and start serving


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("app_models")
    save_checkpoint(tiny_model(), folder / "local-tiny")
    return folder


@pytest.fixture(scope="module")
def fake_hub(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(1)
    served = save_checkpoint(tiny_model(), tmp_path_factory.mktemp("served") / "tiny")
    hub = FakeHub().start()
    hub.add_repo(REPO, checkpoint_files(served))
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def app(model_dir: Path, fake_hub: FakeHub, tmp_path_factory: pytest.TempPathFactory):
    """(gradio_client.Client, path of the app's log) for `python app.py` serving model_dir."""
    logs = tmp_path_factory.mktemp("app_logs") / "app.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=fake_hub.url, HF_HOME=str(tmp_path_factory.mktemp("hf_home")),
               HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(ROOT))
    port = _free_port()
    with open(logs, "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--checkpoints", str(model_dir), "--port", str(port)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield _connect(f"http://127.0.0.1:{port}/", proc, logs), logs
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_loaded_hub_model_is_listed_and_generates_audio(app, model_dir: Path) -> None:
    client, _ = app
    status, table = client.predict(repo_id=REPO, revision="", api_name="/load_hub_model")
    assert f"Loaded **{REPO}**" in status
    rows = {row[1]: row for row in table["data"]}
    assert set(rows) == {f"{model_dir.name}/local-tiny", f"hub: {REPO}"}
    hub_row = rows[f"hub: {REPO}"]
    assert hub_row[2] == "wavenet" and "models--studio--tiny-wavenet" in hub_row[-1]
    result = client.predict(model=hub_row[-1], audio=None, prime_seconds=0.1, seconds=0.1, temperature=1.0,
                            top_k=0, variations=1, seed=0, class_id=0, api_name="/generate_audio")
    audio, rate = sf.read(result[1], dtype="int16")
    assert rate == 8000 and len(audio) == 800


def test_unknown_repo_shows_its_message_and_the_app_keeps_serving(app) -> None:
    client, _ = app
    with pytest.raises(AppError, match="was not found on the Hub"):
        client.predict(repo_id="studio/no-such-model", revision="", api_name="/load_hub_model")
    with pytest.raises(AppError, match="not a valid repo id"):
        client.predict(repo_id="not a repo", revision="", api_name="/load_hub_model")
    status, _ = client.predict(repo_id=REPO, revision="main", api_name="/load_hub_model")
    assert "revision `main`" in status


def test_push_uploads_a_local_checkpoint_and_never_echoes_the_token(app, model_dir: Path,
                                                                   fake_hub: FakeHub) -> None:
    client, logs = app
    folder = model_dir / "local-tiny"
    status = client.predict(path=str(folder), repo_id="me/from-app", token=TOKEN, private=True,
                            api_name="/push_to_hub")
    assert f"{fake_hub.url}/me/from-app" in status and fake_hub.repos["me/from-app"]["private"]
    files = fake_hub.files("me/from-app")
    for name in (CONFIG, WEIGHTS, CARD):
        assert files[name] == (folder / name).read_bytes()
    commits = [h for m, p, h in fake_hub.requests if m == "POST" and p.startswith("/api/models/me/from-app/commit")]
    assert commits and all(h["authorization"] == f"Bearer {TOKEN}" for h in commits)
    with pytest.raises(AppError, match="refused the token") as refused:
        client.predict(path=str(folder), repo_id="me/from-app", token=TOKEN + "-wrong", private=False,
                       api_name="/push_to_hub")
    with pytest.raises(AppError, match="not one of this app's models"):
        client.predict(path=str(ROOT), repo_id="me/from-app", token=TOKEN, private=False, api_name="/push_to_hub")
    assert TOKEN not in status and TOKEN not in str(refused.value) and TOKEN not in logs.read_text()


def test_table_and_details_show_the_store_models_and_cards_without_front_matter(model_dir: Path,
                                                                               tmp_path: Path) -> None:
    model = tiny_model()
    extra = save_checkpoint(model, tmp_path / "extra", metrics={"bits_per_sample": 7.123456, "steps": 100})
    store = ModelStore([model_dir], device="cpu")
    store.add_folder(extra, "hub: me/extra")
    store.add_folder(extra, "hub: me/extra@main")  # a second add only relabels
    rows = models_page.table_rows(store)
    params = f"{sum(p.numel() for p in model.parameters()):,}"
    assert rows == [
        ["WaveNet on audio, 8 kHz", f"{model_dir.name}/local-tiny", "wavenet", 8000, model.receptive_field, params,
         "—", str(model_dir / "local-tiny")],
        ["WaveNet on audio, 8 kHz", "hub: me/extra@main", "wavenet", 8000, model.receptive_field, params,
         "bits_per_sample 7.123 · steps 100", str(extra)],
    ]
    config, card = models_page.model_details(store, str(extra))
    assert config["model_type"] == "wavenet" and config["dilations"] == [1, 2, 4]
    assert "# wavenet checkpoint" in card and "library_name" not in card and "bits_per_sample" in card
    assert models_page.model_details(store, str(tmp_path))[0] is None


def test_metrics_read_as_words_in_one_unit_per_model_without_repeating_a_value() -> None:
    written = {"step": 10000, "valid_nll_nats": 2.81147, "valid_bits_per_sample": 4.0561, "valid_accuracy": 0.16832,
               "test_bits_per_dim": 3.88765, "test_nll_nats_per_item": 11037.558}
    audio = {"model_type": "wavenet", "sample_rate": 8000}
    assert metrics_text(written, audio) == ("step 10,000 · validation 4.056 bits/sample · accuracy 16.8% · "
                                            "test 3.888 bits/sample")
    for image in ({"model_type": "pixelcnn"}, {"model_type": "wavenet", "sample_rate": 0,
                                               "extra": {"image_shape": [28, 28]}}):
        assert metrics_text(written, image).count("bits/dim") == 2 and "bits/sample" not in metrics_text(written, image)
    assert metrics_text(written, {"model_type": "vrnn"}).count("bits/timestep") == 2
    assert metrics_text({"valid_nll_nats": 2.5, "note": "hand-made"}, audio) == "validation 2.500 nats · note hand-made"
    assert metrics_text({}, audio) == ""


def test_a_sequence_models_bounds_read_per_split_in_nats_per_timestep_instead_of_repeated_bits() -> None:
    written = {"step": 9000, "valid_elbo_nats": -8.3861, "valid_fivo_nats": -7.4241, "valid_iwae_nats": -8.1339,
               "valid_bits_per_sample": 10.71, "test_bits_per_dim": 10.739, "test_nll_nats_per_item": 445.2,
               "test_elbo_per_t": -8.4009, "test_iwae_per_t": -8.0826, "test_fivo_per_t": -7.4437, "test_particles": 4}
    assert metrics_text(written, {"model_type": "vrnn"}) == (
        "step 9,000 · test FIVO -7.444, IWAE -8.083, ELBO -8.401 nats/timestep (4 particles) · "
        "validation FIVO -7.424, IWAE -8.134, ELBO -8.386 nats/timestep")
    training = {"step": 50, "valid_fivo_nats": -9.5, "valid_bits_per_sample": 13.7}  # a run still training
    assert metrics_text(training, {"model_type": "vrnn"}) == "step 50 · validation FIVO -9.500 nats/timestep"


def _connect(url: str, proc: subprocess.Popen, logs: Path) -> Client:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the app exited:\n{logs.read_text()}"
        try:
            return Client(url, verbose=False)
        except Exception:  # noqa: BLE001 - not serving yet
            time.sleep(0.5)
    raise AssertionError(f"the app did not start in {STARTUP_TIMEOUT} s:\n{logs.read_text()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
