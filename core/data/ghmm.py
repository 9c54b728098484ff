"""Synthetic sequences from the Gaussian HMM (core.models.ghmm), for a `ghmm` data kind.

    z_0 ~ N(0, v),   z_t | z_{t-1} ~ N(z_{t-1}, v),   x_t | z_t ~ N(z_t, v)

The same seed gives the same sequences on every machine (a CPU generator, float64 draws).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from core.data.registry import SPLITS, DataKind, check_split, register_kind
from core.data.sequences import SequenceDataset
from core.errors import ConfigError
from core.validation import check_int, is_number, need


class GHMMSample(NamedTuple):
    latents: torch.Tensor  # (N, T, 1) float32: z
    observations: torch.Tensor  # (N, T, 1) float32: x, what a model is trained on


def sample_ghmm(n: int, steps: int = 5, variance: float = 0.1, seed: int = 0) -> GHMMSample:
    """N sequences of T = `steps` steps from the GHMM with variance v = `variance`, drawn with `seed`."""
    for name, value in (("n", n), ("steps", steps)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if not isinstance(variance, int | float) or isinstance(variance, bool) or not (0 < variance < math.inf):
        raise ConfigError(f"variance must be a finite number > 0, got {variance!r}")
    generator = torch.Generator().manual_seed(seed)
    std = math.sqrt(variance)
    z = torch.cumsum(std * torch.randn(n, steps, generator=generator, dtype=torch.float64), dim=1)
    x = z + std * torch.randn(n, steps, generator=generator, dtype=torch.float64)
    return GHMMSample(z.unsqueeze(-1).float(), x.unsqueeze(-1).float())


@register_kind("ghmm")
@dataclass
class GHMMData(DataKind):
    """Observation sequences drawn from the Gaussian HMM itself (its true parameters), one seed per split."""

    sequences: int = 1000  # in the train split; valid and test get max(16, sequences // 8)
    steps: int = 5  # T
    variance: float = 0.1  # v of the true model
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("sequences", self.sequences, 1)
        check_int("steps", self.steps, 1)
        need(is_number(self.variance) and self.variance > 0, f"variance must be a number > 0, got {self.variance!r}")
        check_int("seed", self.seed, 0)

    def build(self, split: str, model_config) -> SequenceDataset:
        check_split(split)
        n = self.sequences if split == "train" else max(16, self.sequences // 8)
        drawn = sample_ghmm(n, self.steps, self.variance, seed=len(SPLITS) * self.seed + SPLITS.index(split))
        return SequenceDataset(list(drawn.observations.numpy()))

    def model_settings(self, model: dict) -> dict:
        return {"num_timesteps": self.steps, "variance": self.variance}

    def footprint(self, model_config) -> tuple[int, str]:
        """The train and valid sequences' steps: float64 draws of z and x and their float32 copies, 24 bytes each."""
        steps = (self.sequences + max(16, self.sequences // 8)) * self.steps
        return 24 * steps, f"data.sequences x data.steps = {steps:,} steps (train and valid)"
