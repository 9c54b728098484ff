"""core.forecast: period conditioning, forecasts that start from the observed history, and the horizon error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.codecs import decode, encode
from core.data.fourier import LEVELS, split_curves
from core.errors import ConfigError
from core.forecast import forecast, horizon_error, period_cond, sample_curves
from core.models.wavenet import WaveNet, WaveNetConfig


def tiny_fourier_model(seed: int = 0) -> WaveNet:
    torch.manual_seed(seed)
    return WaveNet(WaveNetConfig(quantization_levels=LEVELS, codec="linear", sample_rate=0, local_channels=1,
                                 dilations=[1, 2, 4, 8], residual_channels=8, dilation_channels=8, skip_channels=8,
                                 head_channels=8)).eval()


def test_period_cond_holds_the_period_feature_at_every_sample() -> None:
    cond = period_cond(np.array([5.0, 7.5, 9.99]), 12)
    assert cond.local.shape == (3, 1, 12)
    assert torch.allclose(cond.local[:, 0, 0], torch.tensor([-1.0, 0.0, 0.996]))
    assert (cond.local == cond.local[:, :, :1]).all()
    with pytest.raises(ConfigError, match="periods"):
        period_cond(10.0, 5)


def test_the_period_changes_the_samples_and_the_seed_reproduces_them() -> None:
    model = tiny_fourier_model()
    a = sample_curves(model, 5.5, 60, 2, seed=3)
    assert a.shape == (2, 60) and a.dtype == np.float32 and np.abs(a).max() <= 1
    assert np.array_equal(a, sample_curves(model, 5.5, 60, 2, seed=3))
    assert not np.array_equal(a, sample_curves(model, 9.5, 60, 2, seed=3))


def test_a_forecast_continues_the_quantised_history() -> None:
    model = tiny_fourier_model()
    history = np.sin(np.arange(40) / 4).astype(np.float32)
    result = forecast(model, history, 6.0, 25, 5, seed=1)
    assert np.array_equal(result.history, decode(encode(history, LEVELS, "linear"), LEVELS, "linear"))
    assert result.trajectories.shape == (5, 25)
    assert np.allclose(result.mean, result.trajectories.mean(0)) and np.allclose(result.std, result.trajectories.std(0))
    greedy = forecast(model, history, 6.0, 25, 3, temperature=0)
    assert (greedy.std == 0).all()  # greedy trajectories agree


def test_horizon_error_is_the_rmse_of_each_curves_forecast_mean() -> None:
    model = tiny_fourier_model()
    curves, periods = split_curves("test", 3, 80)
    rmse = horizon_error(model, curves, periods, observe=50, horizon=20, trajectories=2, temperature=0)
    means = np.stack([forecast(model, c[:50], p, 20, 1, temperature=0).mean
                      for c, p in zip(curves, periods, strict=True)])
    assert rmse.shape == (20,)
    assert np.allclose(rmse, np.sqrt(((means - curves[:, 50:70]) ** 2).mean(0)), atol=1e-6)


def test_bad_requests_are_refused_with_the_reason() -> None:
    model = tiny_fourier_model()
    curves, periods = split_curves("test", 2, 40)
    with pytest.raises(ConfigError, match="must fit"):
        horizon_error(model, curves, periods, observe=30, horizon=20)
    with pytest.raises(ConfigError, match="history"):
        forecast(model, np.zeros(0), 6.0, 5)
    with pytest.raises(ConfigError, match="count"):
        sample_curves(model, 6.0, 10, 0)
    audio = WaveNet(WaveNetConfig(quantization_levels=256, dilations=[1, 2], residual_channels=4, dilation_channels=4,
                                  skip_channels=4, head_channels=4))
    with pytest.raises(ConfigError, match="127 levels"):
        sample_curves(audio, 6.0, 10)


def test_the_horizons_script_reports_each_checkpoints_rmse_and_a_table(tmp_path) -> None:
    from core.checkpoints import save_checkpoint
    from scripts.fourier_horizons import main

    for seed in (0, 1):
        save_checkpoint(tiny_fourier_model(seed), tmp_path / f"m{seed}")
    table = tmp_path / "table.md"
    report = main([str(tmp_path / "m0"), str(tmp_path / "m1"), "--curves", "3", "--observe", "40", "--horizon", "12",
                   "--trajectories", "2", "--markdown", str(table)])
    curves, periods = split_curves("test", 3, 500)
    expected = horizon_error(tiny_fourier_model(1), curves, periods, 40, 12, 2, seed=0)
    assert np.allclose(report["models"][str(tmp_path / "m1")], expected, atol=1e-6)
    text = table.read_text()
    assert "| m0 |" in text and "| m1 |" in text and "h = 10" in text and "h = 25" not in text
