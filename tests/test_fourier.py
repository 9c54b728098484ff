"""Fourier series: seeded period-conditioned curves, their spectrum, their split; and short training runs
of both non-audio kinds (Fourier curves and MNIST digits) through core.train.Trainer."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.codecs import decode
from core.data import build_split, data_config
from core.data.fourier import (
    LEVELS,
    SAMPLE_RATE_HZ,
    FourierDataset,
    fourier_curve,
    fourier_curves,
    period_feature,
)
from core.data.mnist_sources import cache_dir
from core.errors import ConfigError
from core.models.wavenet import WaveNetConfig
from core.training import config as train_config
from core.training.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]
SHRINK = ["model.dilations=[1,2,4]", "model.residual_channels=8", "model.dilation_channels=8",
          "model.skip_channels=8", "model.head_channels=8", "train.batch_size=4", "train.log_every=2",
          "data.max_items=8"]


def curve_model(**kw) -> WaveNetConfig:
    kw = {"quantization_levels": LEVELS, "codec": "linear", "local_channels": 1, **kw}
    return WaveNetConfig(dilations=[1, 2], residual_channels=4, dilation_channels=4, skip_channels=4,
                         head_channels=4, sample_rate=0, **kw)


def split(name: str, **data) -> FourierDataset:
    return build_split(data_config("fourier", **data), name, curve_model())


# -- the curves -------------------------------------------------------------------------


def test_curves_are_deterministic_per_seed_and_a_longer_set_extends_a_shorter_one():
    a, pa = fourier_curves(4, 5, 200)
    b, pb = fourier_curves(4, 5, 200)
    c, pc = fourier_curves(4, 8, 200)
    assert np.array_equal(a, b) and np.array_equal(pa, pb)
    assert np.array_equal(a, c[:5]) and np.array_equal(pa, pc[:5])
    d, _ = fourier_curves(5, 5, 200)
    assert not any(np.array_equal(x, y) for x, y in zip(a, d, strict=True))


def test_train_valid_and_test_splits_hold_different_curves():
    curves = {name: split(name, fourier_curves=16, fourier_length=100).tokens for name in ("train", "valid", "test")}
    assert len(curves["train"]) == 16 and len(curves["valid"]) == len(curves["test"]) == 16
    for x, y in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not any(np.array_equal(u, v) for u in curves[x] for v in curves[y])
    again = split("valid", fourier_curves=16, fourier_length=100).tokens
    assert np.array_equal(curves["valid"], again)


def test_curves_fill_minus_one_to_one_and_tokens_lie_in_127_levels():
    x, _ = fourier_curves(0, 50, 500)
    assert x.dtype == np.float32 and x.shape == (50, 500)
    assert np.allclose(np.abs(x).max(axis=1), 1.0)
    tokens = split("train", fourier_curves=50).tokens
    assert tokens.dtype == np.int64 and tokens.min() >= 0 and tokens.max() < LEVELS
    assert np.all((tokens.min(axis=1) == 0) | (tokens.max(axis=1) == LEVELS - 1))  # each peak is an end level


def test_periods_lie_in_5_to_10_seconds_and_reach_the_model_as_a_constant_local_feature():
    ds = split("train", fourier_curves=300, fourier_length=50)
    assert ds.periods.min() >= 5.0 and ds.periods.max() < 10.0
    assert ds.periods.min() < 5.5 and ds.periods.max() > 9.5  # spread over the range
    x, local = ds[7]
    assert x.shape == (50,) and x.dtype == torch.int64
    assert local.shape == (1, 50) and local.dtype == torch.float32
    assert torch.all(local == local[0, 0])
    assert float(local[0, 0]) == pytest.approx((ds.periods[7] - 7.5) / 2.5, abs=1e-6)
    assert -1 <= period_feature(5.0) and period_feature(9.999) < 1
    assert ds.score_from == 0
    ds.set_epoch(3)
    assert torch.equal(ds[7][0], x)


def test_the_spectrum_of_a_curve_lies_at_multiples_of_one_over_its_period():
    length = 100 * SAMPLE_RATE_HZ  # 100 s: 0.01 Hz bins, harmonics >= 0.1 Hz apart
    ds = split("test", fourier_curves=8, fourier_length=length, max_items=4)
    freqs = np.fft.rfftfreq(length, 1 / SAMPLE_RATE_HZ)
    for tokens, period in zip(ds.tokens, ds.periods, strict=True):
        curve = decode(tokens, LEVELS, "linear")
        power = np.abs(np.fft.rfft(curve * np.hanning(length))) ** 2
        harmonics = np.arange(1, 6) / period  # terms k = 1 .. 5
        near = np.abs(freqs[:, None] - harmonics[None, :]).min(axis=1) <= 0.03
        assert power[near].sum() / power.sum() > 0.99


def test_one_curve_draws_from_the_rng_it_is_given():
    a = fourier_curve(np.random.default_rng(1), 100)
    b = fourier_curve(np.random.default_rng(1), 100)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


# -- the split's checks ------------------------------------------------------------------


@pytest.mark.parametrize("model, match", [
    (dict(quantization_levels=64), "127"),
    (dict(codec="mulaw"), "linear"),
    (dict(local_channels=0), "local_channels=1"),
    (dict(local_channels=2), "local_channels=1"),
])
def test_build_split_refuses_a_model_that_cannot_take_the_curves(model, match):
    with pytest.raises(ConfigError, match=match):
        build_split(data_config("fourier", fourier_curves=2), "train", curve_model(**model))


def test_codec_none_is_accepted_for_the_same_tokens():
    ds = build_split(data_config("fourier", fourier_curves=2, fourier_length=20), "train",
                     curve_model(codec="none"))
    assert len(ds) == 2


@pytest.mark.parametrize("field, value", [
    ("fourier_terms", [0, 3]), ("fourier_terms", [5, 3]), ("fourier_terms", [3]), ("fourier_terms", "3,5"),
    ("fourier_length", 1), ("fourier_curves", 0),
])
def test_data_config_refuses_bad_fourier_options(field, value):
    with pytest.raises(ConfigError, match=field):
        data_config("fourier", **{field: value})


# -- short training runs of the presets --------------------------------------------------


def train_briefly(config: str, overrides: list[str], run_dir: Path) -> dict:
    cfg = train_config.load(ROOT / "configs" / config, SHRINK + overrides)
    trainer = Trainer(cfg, run_dir, device="cpu", show_progress=False)
    metrics = trainer.run()
    assert trainer.step == cfg.train.max_steps
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    assert (run_dir / "latest").read_text().strip() == f"step_{cfg.train.max_steps:08d}"
    assert np.isfinite(metrics["bits"]) and 0 <= metrics["acc"] <= 1
    return metrics


def test_the_fourier_preset_trains_end_to_end(tmp_path):
    metrics = train_briefly("fourier_wavenet.json", [
        "data.fourier_curves=8", "data.fourier_length=64", "train.max_steps=4", "train.valid_every=4"],
        tmp_path / "run")
    assert metrics["bits"] < 2 * np.log2(LEVELS)


def test_the_digits_preset_trains_end_to_end(tmp_path):
    if (cache_dir() / "mnist.npz").is_file():
        source = []  # the real digits, first 8 of each split
    else:
        rng = np.random.default_rng(0)
        arrays = {}
        for s in ("train", "valid", "test"):
            arrays[f"x_{s}"] = rng.integers(0, 256, size=(8, 784), dtype=np.uint8)
            arrays[f"y_{s}"] = rng.integers(0, 10, size=8)
        np.savez(tmp_path / "d.npz", **arrays)
        source = [f"data.mnist_path={tmp_path / 'd.npz'}"]
    metrics = train_briefly("digits_wavenet.json", ["train.max_steps=3", "train.valid_every=3", *source],
                            tmp_path / "run")
    assert metrics["bits"] < 2 * 8
