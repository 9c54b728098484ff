"""Synthetic sequences from the Gaussian HMM (core.models.ghmm), for a `ghmm` data kind.

    z_0 ~ N(0, v),   z_t | z_{t-1} ~ N(z_{t-1}, v),   x_t | z_t ~ N(z_t, v)

The same seed gives the same sequences on every machine (a CPU generator, float64 draws).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from core.errors import ConfigError


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
