"""A training run, once it has a checkpoint, is a model on the page that samples it (issue: training panel).

Tiny real runs of `python -m core.train` (a Fourier WaveNet, a digits PixelCNN on a small .npz, a VRNN
on a few chorales) in a runs folder; the app's store serves that folder, as `app.py --runs` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import numpy as np

import pages.digits as digits_page
import pages.sequences_models as sequences_models
import pages.sequences_music as music_page
import pages.signals as signals_page
from core.model_store import ModelStore
from core.train import main as train
from pages.train_runs import progress_html, sample_page
from tests.test_mnist import small_splits

ROOT = Path(__file__).resolve().parents[1]
TINY_WAVENET = ["model.dilations=[1,2,4]", "model.residual_channels=4", "model.dilation_channels=4",
                "model.skip_channels=4", "model.head_channels=4"]
SHORT = ["train.batch_size=2", "train.max_steps=2", "train.valid_every=2", "train.log_every=1",
         "train.valid_batches=1"]


def run(config: str, run_dir: Path, overrides: list[str]) -> None:
    assert train(["--config", str(ROOT / config), "--run-dir", str(run_dir), "--no-progress",
                  *sum((["--set", s] for s in overrides), [])]) == 0


def test_a_finished_fourier_run_is_sampled_on_the_signals_page(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run("configs/fourier_wavenet.json", runs / "fourier", TINY_WAVENET + SHORT + [
        "data.fourier_curves=16", "data.fourier_length=64"])
    store = ModelStore([runs], device="cpu")
    [entry] = signals_page.signal_models(store)
    assert entry["name"] == "runs/fourier (step_00000002)"
    figure, status = signals_page.sample_signals(store, entry["path"], 6.0, 2.0, 2, 1.0, 0)
    assert len(figure.data) == 2 and len(figure.data[0].y) == 100 and "2 × 100 samples" in status
    assert digits_page.digit_models(store) == []
    config = json.loads((runs / "fourier" / "config.json").read_text())
    assert sample_page(config) == ("signals", "Signals")
    status = {"state": "finished", "progress": 1.0, "eta_s": None, "step": 2, "max_steps": 2,
              "checkpoint": entry["path"], "config": config}
    assert f"href='signals?model={quote(entry['path'], safe='')}'" in progress_html(status)


def test_a_finished_digits_run_is_sampled_on_the_digits_page(tmp_path: Path) -> None:
    np.savez(tmp_path / "digits.npz", **small_splits())
    runs = tmp_path / "runs"
    run("configs/digits_pixelcnn.json", runs / "digits", SHORT + [
        "model.channels=4", "model.layers=2", "model.skip_channels=8", "model.head_channels=8",
        f"data.mnist_path=\"{tmp_path / 'digits.npz'}\""])
    store = ModelStore([runs], device="cpu")
    [entry] = digits_page.digit_models(store)
    image, status = digits_page.sample_digits(store, entry["path"], 4, 2, 1.0, 0, progress=lambda *a, **k: None)
    assert image.shape == (2 * digits_page.GAP + 28 * digits_page.SCALE,
                           3 * digits_page.GAP + 2 * 28 * digits_page.SCALE, 3)
    assert "2 × 784 pixels" in status and signals_page.signal_models(store) == []
    assert sample_page(json.loads((runs / "digits" / "config.json").read_text())) == ("digits", "Digits")


def test_a_finished_pianoroll_run_is_sampled_on_the_sequences_page(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run("configs/vrnn_jsb_fivo.json", runs / "vrnn", SHORT + ["model.latent_size=4", "data.max_items=4"])
    store = ModelStore([runs], device="cpu")
    entry, untrained = sequences_models.music_models(store)
    assert entry["name"] == "runs/vrnn (step_00000002)" and untrained["path"] == sequences_models.UNTRAINED
    take = music_page.music_take(store, entry["path"], "jsb", 0, 4, 3, 2, 0)
    assert take.samples.shape == (2, 3, 88) and take.model == entry["name"]
    config = json.loads((runs / "vrnn" / "config.json").read_text())
    assert sample_page(config) == ("sequences", "Sequences")
