"""End to end: the Fourier-series lab's handlers through gradio_client, against an app launched here.

The app serves two tiny random period-conditioned WaveNets and one audio WaveNet (which the lab
must not offer). Contract: samples have the asked shape and are reproducible, a forecast starts
from the held-out curve's observed points and its band is mean ± 2σ of its trajectories, and the
comparison plots one RMSE curve per Fourier model on the same held-out curves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

import pages.signals as lab
from core.checkpoints import save_checkpoint
from core.codecs import decode, encode
from core.data.fourier import LEVELS
from core.forecast import horizon_error
from core.model_store import ModelStore
from core.models.wavenet import WaveNet
from tests.conftest import serving, tiny_audio_config
from tests.test_app_receptive_field import values
from tests.test_forecast import tiny_fourier_model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("signal-models")
    save_checkpoint(tiny_fourier_model(0), folder / "fourier-a")
    save_checkpoint(tiny_fourier_model(1), folder / "fourier-b")
    save_checkpoint(WaveNet(tiny_audio_config()), folder / "audio")
    return folder


@pytest.fixture(scope="module")
def client(models: Path) -> Iterator[Client]:
    with serving(models) as url:
        yield Client(url, verbose=False)


def traces(plot: dict) -> dict[str, dict]:
    return {t["name"]: t for t in json.loads(plot["plot"])["data"]}


def test_the_lab_lists_only_fourier_models(models: Path) -> None:
    names = [m["name"] for m in lab.signal_models(ModelStore([models], device="cpu"))]
    assert names == [f"{models.name}/fourier-a", f"{models.name}/fourier-b"]


def test_samples_have_the_asked_shape_and_a_seed_repeats_them(client: Client, models: Path) -> None:
    path = str(models / "fourier-a")
    plot, status = client.predict(path, 6.0, 3.0, 2, 1.0, 7, api_name="/sample_signals")
    curves = [values(t["y"]) for t in traces(plot).values()]
    assert len(curves) == 2 and all(len(c) == 150 for c in curves)
    assert all(np.abs(c).max() <= 1 for c in curves)
    assert "2 × 150 samples" in status
    again, _ = client.predict(path, 6.0, 3.0, 2, 1.0, 7, api_name="/sample_signals")
    assert [values(t["y"]) for t in traces(again).values()] == curves


def test_a_forecast_starts_from_the_held_out_curve_and_its_band_is_two_sigma(client: Client, models: Path) -> None:
    plot, status = client.predict(str(models / "fourier-b"), 5, 120, 60, 6, 1.0, 3, api_name="/forecast_signal")
    t = traces(plot)
    truth, _ = lab.held_out_curves(6)
    assert np.allclose(values(t["truth"]["y"]), truth[5], atol=1e-6)
    quantised = decode(encode(truth[5, :120], LEVELS, "linear"), LEVELS, "linear")
    assert np.allclose(values(t["observed"]["y"]), quantised, atol=1e-6)
    paths = np.array(values(t["trajectories"]["y"]), dtype=float).reshape(6, 61)[:, :60]  # NaN-separated
    mean, std = paths.mean(0), paths.std(0)
    assert np.allclose(values(t["mean"]["y"]), mean, atol=1e-5)
    assert np.allclose(values(t["+2σ"]["y"]), mean + 2 * std, atol=1e-5)
    assert np.allclose(values(t["-2σ"]["y"]), mean - 2 * std, atol=1e-5)
    assert np.allclose(values(t["mean"]["x"]), (120 + np.arange(60)) / 50)
    assert "Curve 5" in status and "RMSE of the mean" in status


def test_compare_plots_each_fourier_models_error_against_horizon(client: Client, models: Path) -> None:
    plot, table = client.predict(3, 40, 30, 2, 0.0, api_name="/compare_horizons")
    lines = traces(plot)
    names = [f"{models.name}/fourier-a", f"{models.name}/fourier-b"]
    assert sorted(lines) == names
    curves, periods = lab.held_out_curves(3)
    expected = horizon_error(tiny_fourier_model(0), curves, periods, 40, 30, 2, temperature=0)
    assert np.allclose(values(lines[names[0]]["y"]), expected, atol=1e-5)
    assert all(name in table for name in names) and "h = 25" in table


def test_bad_requests_give_a_message_and_the_lab_keeps_working(client: Client, models: Path) -> None:
    path = str(models / "fourier-a")
    for args, message in (((path, 12.0, 3.0, 1, 1.0, 0), "greater than maximum value 9.99"),
                          (("/etc", 6.0, 3.0, 1, 1.0, 0), "not in this app's model folders"),
                          ((str(models / "audio"), 6.0, 3.0, 1, 1.0, 0), "127 levels"),
                          ((None, 6.0, 3.0, 1, 1.0, 0), "choose a model")):
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name="/sample_signals")
    with pytest.raises(AppError, match="horizon"):
        client.predict(path, 0, 450, 100, 4, 1.0, 0, api_name="/forecast_signal")
    plot, _ = client.predict(path, 6.0, 1.0, 1, 1.0, 0, api_name="/sample_signals")
    assert len(values(next(iter(traces(plot).values()))["y"])) == 50
