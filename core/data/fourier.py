"""Random Fourier series: the 1-D data set of the WaveNet talk, conditioned on the period.

Each curve is sampled at 50 Hz (t = n / 50 s, n = 0 .. T-1) and is

    s(t) = sum_{k=1..K} a_k sin(2 pi k t / P + phi_k),    x = s / max_n |s(t_n)|

with the period P drawn uniformly from [5, 10) seconds, the number of terms K uniformly
from `terms` (3 to 5 by default), a_k ~ N(0, 1) and phi_k ~ U[0, 2 pi). So every term is
a harmonic k / P of the base frequency 1 / P, and each curve is scaled so its largest
sample magnitude is exactly 1: it fills [-1, 1]. The linear codec then quantises it to
127 levels, grid[j] = -1 + 2 j / 126 (0 is level 63).

The model is told the period through local conditioning: an item is

    x:     LongTensor (T,)     tokens in [0, 127)
    local: FloatTensor (1, T)  (P - 7.5) / 2.5, in [-1, 1), the same at every sample

one frame per sample, so `WaveNet.upsample_local` needs no alignment (local_hop 1 is the
natural choice; any hop works since the frames cover the curve) and a generator can ask
for any period for any length by passing a constant of its own. Whole curves are scored
(`score_from` 0): the model's start symbol predicts the first sample too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from core.codecs import encode
from core.conditioning import Cond
from core.data.batch import Batch, SplitDataset
from core.data.registry import SPLITS, DataKind, check_split, register_kind
from core.errors import ConfigError
from core.validation import check_int

SAMPLE_RATE_HZ = 50
LEVELS = 127
PERIOD_LOW, PERIOD_HIGH = 5.0, 10.0  # seconds; P ~ U[PERIOD_LOW, PERIOD_HIGH)
TERMS = (3, 5)  # the default range of K, inclusive
MAX_TERMS = 100  # the K-th harmonic of the shortest period, 20 Hz, stays below Nyquist (25 Hz)


def period_feature(period: float | np.ndarray) -> float | np.ndarray:
    """The conditioning value of a period in seconds: (P - 7.5) / 2.5, in [-1, 1) for P in [5, 10)."""
    center, half = (PERIOD_LOW + PERIOD_HIGH) / 2, (PERIOD_HIGH - PERIOD_LOW) / 2
    return (period - center) / half


def check_terms(terms: Sequence[int]) -> tuple[int, int]:
    """Validate `terms` = (K_min, K_max) with 1 <= K_min <= K_max <= MAX_TERMS; returns it as a tuple."""
    ok = (not isinstance(terms, str) and len(terms) == 2
          and all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in terms)
          and 1 <= terms[0] <= terms[1] <= MAX_TERMS)
    if not ok:
        raise ConfigError(f"fourier_terms must be [K_min, K_max] with 1 <= K_min <= K_max <= {MAX_TERMS}, "
                          f"got {terms!r}")
    return int(terms[0]), int(terms[1])


def fourier_curve(rng: np.random.Generator, length: int, terms: Sequence[int] = TERMS) -> tuple[np.ndarray, float]:
    """One curve: float32 (T,) with max |x| = 1, and its period in seconds. Draws everything from `rng`."""
    check_int("length", length, 2)
    k_min, k_max = check_terms(terms)
    period = rng.uniform(PERIOD_LOW, PERIOD_HIGH)
    k = np.arange(1, rng.integers(k_min, k_max + 1) + 1)[:, None]  # (K, 1) harmonic numbers
    a = rng.normal(size=k.shape)
    phi = rng.uniform(0, 2 * np.pi, size=k.shape)
    t = np.arange(length) / SAMPLE_RATE_HZ  # (T,) seconds
    s = (a * np.sin(2 * np.pi * k * t / period + phi)).sum(axis=0)
    peak = np.abs(s).max()
    return (s / peak if peak > 0 else s).astype(np.float32), float(period)


def fourier_curves(seed: int, n_curves: int, length: int,
                   terms: Sequence[int] = TERMS) -> tuple[np.ndarray, np.ndarray]:
    """`n_curves` curves (N, T) float32 and their periods (N,) float64 in [5, 10).

    Curve i comes from its own generator seeded with (seed, i): the set is a function of
    `seed`, and a longer set extends a shorter one. Raises ConfigError naming a bad argument.
    """
    check_int("seed", seed, 0)
    check_int("n_curves", n_curves, 1)
    pairs = [fourier_curve(np.random.default_rng([seed, i]), length, terms) for i in range(n_curves)]
    return np.stack([c for c, _ in pairs]), np.array([p for _, p in pairs])


class FourierDataset(SplitDataset):
    """Period-conditioned curves: item i is (x LongTensor (T,), local FloatTensor (1, T)).

    tokens:  (N, T) integer codes in [0, Q)
    periods: (N,) seconds; local holds `period_feature(period)` at every sample.
    The whole curve is scored (`score_from` 0).
    """

    def __init__(self, tokens: np.ndarray, periods: np.ndarray):
        tokens, periods = np.asarray(tokens), np.asarray(periods, dtype=np.float64)
        if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer) or len(tokens) == 0:
            raise ConfigError(f"tokens must be a non-empty (N, T) integer array, got {tokens.dtype} {tokens.shape}")
        if periods.shape != (len(tokens),):
            raise ConfigError(f"periods must be ({len(tokens)},), got {periods.shape}")
        self.tokens = tokens.astype(np.int64)
        self.periods = periods

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.tokens[index])
        local = torch.full((1, x.shape[0]), float(period_feature(self.periods[index])), dtype=torch.float32)
        return x, local

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
        """(x (T,), local (1, T)) items -> Batch x (B, T), cond local (B, 1, T)."""
        xs, locals_ = zip(*items, strict=True)
        return Batch(torch.stack(xs), Cond(local=torch.stack(locals_)))


def fourier_split(split: str, model_config, *, seed: int = 0, curves: int = 2048, length: int = 500,
                  terms: Sequence[int] = TERMS, max_items: int | None = None) -> FourierDataset:
    """The `split` ("train", "valid", "test") of the Fourier data set, tokenised for `model_config`.

    "train" has `curves` curves, "valid" and "test" max(16, curves // 8); `max_items` caps
    each. Splits of every seed are disjoint draws (generator seed 3 * seed + split index).
    The model must predict 127 levels (linear codec, or "none" for the same tokens) from
    one local channel; ConfigError otherwise.
    """
    check_fourier_model(model_config)
    check_int("seed", seed, 0)
    check_int("curves", curves, 1)
    if max_items is not None:
        check_int("max_items", max_items, 1)
    n = curves if split == "train" else max(16, curves // 8)
    n = min(n, max_items) if max_items is not None else n
    x, periods = split_curves(split, n, length, seed, terms)
    return FourierDataset(encode(x, LEVELS, "linear"), periods)


def split_curves(split: str, n_curves: int, length: int = 500, seed: int = 0,
                 terms: Sequence[int] = TERMS) -> tuple[np.ndarray, np.ndarray]:
    """The first `n_curves` float curves (N, T) and periods (N,) of `split` for data seed `seed`.

    These are the curves `fourier_split` tokenises: e.g. the lab forecasts held-out "test" curves.
    """
    check_split(split)
    return fourier_curves(len(SPLITS) * seed + SPLITS.index(split), n_curves, length, terms)


def check_fourier_model(model_config) -> None:
    """ConfigError unless the model predicts the curves' 127 linear levels from one local (period) channel."""
    if model_config.quantization_levels != LEVELS:
        raise ConfigError(f"the Fourier curves are quantised to {LEVELS} levels but the model predicts "
                          f"quantization_levels={model_config.quantization_levels}; set it to {LEVELS}")
    if model_config.codec not in ("linear", "none"):
        raise ConfigError(f"the Fourier curves use a linear quantiser; set the model's codec to 'linear' "
                          f"(or 'none'), not {model_config.codec!r}")
    local_channels = getattr(model_config, "local_channels", 0)
    if local_channels != 1:
        raise ConfigError(f"a Fourier model is conditioned on the period through local_channels=1, "
                          f"got local_channels={local_channels}")


@register_kind("fourier")
@dataclass
class FourierData(DataKind):
    """The talk's Fourier-series curves at 50 Hz, conditioned on their period, whole curves scored."""

    seed: int = 0  # which curves
    fourier_curves: int = 2048  # curves in the train split; valid and test get max(16, curves // 8)
    fourier_length: int = 500  # samples per curve at 50 Hz (500 = 10 s)
    fourier_terms: list[int] = field(default_factory=lambda: list(TERMS))  # [K_min, K_max] sines
    max_items: int | None = None  # keep at most this many items per split

    def __post_init__(self) -> None:
        check_int("seed", self.seed, 0)
        check_int("fourier_curves", self.fourier_curves, 1)
        check_int("fourier_length", self.fourier_length, 2)
        self.fourier_terms = list(check_terms(self.fourier_terms))
        if self.max_items is not None:
            check_int("max_items", self.max_items, 1)

    def build(self, split: str, model_config) -> FourierDataset:
        return fourier_split(split, model_config, seed=self.seed, curves=self.fourier_curves,
                             length=self.fourier_length, terms=self.fourier_terms, max_items=self.max_items)

    def footprint(self, model_config) -> tuple[int, str]:
        """The train and valid curves' points: float32 curves and int64 tokens, 12 bytes each."""
        counts = [self.fourier_curves, max(16, self.fourier_curves // 8)]
        curves = sum(min(n, self.max_items) if self.max_items is not None else n for n in counts)
        points = curves * self.fourier_length
        return 12 * points, (f"data.fourier_curves x data.fourier_length = {curves:,} curves (train and valid) "
                             f"x {self.fourier_length:,} = {points:,} points")
