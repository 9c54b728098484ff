"""Sampling and forecasting Fourier-series curves with a period-conditioned WaveNet (the signal lab).

    sample_curves(model, period, length, count)       free-running curves of a chosen period
    forecast(model, history, period, horizon, k)      k continuations of an observed start of a curve
    horizon_error(model, curves, periods, n, h, k)    RMSE of the k-trajectory mean against the truth,
                                                      per step ahead, over held-out curves

Curves are floats in [-1, 1] (the linear codec's 127 levels); the period, in seconds, reaches the
model as its one local channel, `period_feature(P)` at every sample (core.data.fourier).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.codecs import decode, encode
from core.conditioning import Cond
from core.data.fourier import LEVELS, PERIOD_HIGH, PERIOD_LOW, check_fourier_model, period_feature
from core.errors import ConfigError
from core.generation import generate_all
from core.models.wavenet import WaveNet


@dataclass(frozen=True)
class Forecast:
    """K sampled continuations of one observed history."""

    history: np.ndarray  # (N,) float32, the observed points as the model saw them (quantised)
    trajectories: np.ndarray  # (K, H) float32

    @property
    def mean(self) -> np.ndarray:
        """(H,) the pointwise mean of the trajectories."""
        return self.trajectories.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """(H,) the pointwise standard deviation (0 for a single trajectory)."""
        return self.trajectories.std(axis=0)


def period_cond(periods: np.ndarray | float, length: int) -> Cond:
    """Local conditioning (B, 1, length) holding period_feature(P_b) at every sample; periods (B,) or scalar."""
    periods = np.atleast_1d(np.asarray(periods, dtype=np.float64))
    if not np.all((periods >= PERIOD_LOW) & (periods < PERIOD_HIGH)):
        raise ConfigError(f"periods must be in [{PERIOD_LOW:g}, {PERIOD_HIGH:g}) seconds, got {periods.tolist()}")
    feature = torch.tensor(period_feature(periods), dtype=torch.float32)
    return Cond(local=feature[:, None, None].expand(-1, 1, length).contiguous())


def sample_curves(model: WaveNet, period: float, length: int, count: int = 1, *, temperature: float = 1.0,
                  seed: int | None = None, method: str = "auto") -> np.ndarray:
    """`count` curves of `length` samples drawn with the given period, float32 (count, length)."""
    check_fourier_model(model.config)
    _check_positive("length", length)
    _check_positive("count", count)
    tokens = generate_all(model, length, cond=period_cond(period, length), batch=count, temperature=temperature,
                          seed=seed, method=method)
    return decode(tokens.cpu().numpy(), LEVELS, "linear")


def forecast(model: WaveNet, history: np.ndarray, period: float, horizon: int, trajectories: int = 16, *,
             temperature: float = 1.0, seed: int | None = None, method: str = "auto") -> Forecast:
    """`trajectories` continuations of `history` (N,) floats in [-1, 1], each `horizon` samples long."""
    check_fourier_model(model.config)
    history = np.asarray(history, dtype=np.float32)
    if history.ndim != 1 or len(history) == 0:
        raise ConfigError(f"history must be a non-empty 1-D curve, got shape {history.shape}")
    _check_positive("horizon", horizon)
    _check_positive("trajectories", trajectories)
    prime = torch.from_numpy(encode(history, LEVELS, "linear"))
    tokens = generate_all(model, horizon, prime=prime, cond=period_cond(period, len(history) + horizon),
                          batch=trajectories, temperature=temperature, seed=seed, method=method)
    return Forecast(decode(prime.numpy(), LEVELS, "linear"), decode(tokens.cpu().numpy(), LEVELS, "linear"))


def horizon_error(model: WaveNet, curves: np.ndarray, periods: np.ndarray, observe: int, horizon: int,
                  trajectories: int = 8, *, temperature: float = 1.0, seed: int = 0,
                  method: str = "auto") -> np.ndarray:
    """RMSE (H,) at each step ahead h = 1 .. H of the trajectory mean against the true curve.

    curves (M, T) floats and their periods (M,): each is observed for its first `observe` points and
    forecast `horizon` points with `trajectories` samples, all M x K in one batch. Entry h-1 is
    sqrt(mean over curves of (mean_k y_k[h] - x[observe + h - 1])^2).
    """
    check_fourier_model(model.config)
    curves = np.asarray(curves, dtype=np.float32)
    m, t = curves.shape
    if not (1 <= observe and observe + horizon <= t):
        raise ConfigError(f"observe ({observe}) + horizon ({horizon}) must fit the curves' {t} samples")
    _check_positive("trajectories", trajectories)
    prime = torch.from_numpy(encode(curves[:, :observe], LEVELS, "linear")).repeat_interleave(trajectories, 0)
    cond = period_cond(np.repeat(periods, trajectories), observe + horizon)
    tokens = generate_all(model, horizon, prime=prime, cond=cond, batch=m * trajectories, temperature=temperature,
                          seed=seed, method=method)
    means = decode(tokens.cpu().numpy(), LEVELS, "linear").reshape(m, trajectories, horizon).mean(axis=1)
    return np.sqrt(((means - curves[:, observe : observe + horizon]) ** 2).mean(axis=0))


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
