"""ELBO, IWAE and FIVO: three settings of the one SMC engine (core.inference.smc).

    fivo: N particles, resample when the ESS of the weights since the last resampling <= threshold * N
    iwae: N particles, never resample
    elbo: iwae with one particle (`particles` is not used)

Each gives per sequence a log p-hat whose expectation lower-bounds log p(x); the training loss is
-(sum of the bounds) / (total valid timesteps), the reference's per-timestep bound. Evaluation
resamples multinomially whatever the training used (systematic or relaxed resampling are training
choices), and runs without gradients.
"""

from __future__ import annotations

import torch

from core.errors import ConfigError
from core.inference.resampling import ess_criterion
from core.inference.smc import SMCResult, run_smc
from core.models.sequential import LatentStepModel

BOUNDS = ("elbo", "iwae", "fivo")


def estimate(model: LatentStepModel, x: torch.Tensor, lengths: torch.Tensor | None, bound: str, particles: int, *,
             resampling: str = "multinomial", threshold: float = 0.5, relaxed: bool = False,
             temperature: float = 0.5, trace: bool = False, generator: torch.Generator | None = None,
             fused: bool = True) -> SMCResult:
    """Run `bound` on x (B, T, ...): log p-hat (B,) and, with trace=True, the engine's SMCTrace.

    resampling, threshold, relaxed and temperature only matter for fivo; fused as run_smc's.
    """
    if bound not in BOUNDS:
        raise ConfigError(f"bound must be one of {', '.join(BOUNDS)}, got {bound!r}")
    criterion = ess_criterion(threshold) if bound == "fivo" else None
    return run_smc(model, x, lengths, particles=1 if bound == "elbo" else particles, criterion=criterion,
                   resampling=resampling, relaxed=relaxed, temperature=temperature, trace=trace, generator=generator,
                   fused=fused)


def bound_loss(model: LatentStepModel, x: torch.Tensor, lengths: torch.Tensor | None, bound: str, particles: int,
               resampling: str = "multinomial", threshold: float = 0.5,
               relaxed: bool = False, fused: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The training loss: (-(sum_b log p-hat_b) / timesteps scalar, log p-hat (B,), timesteps = sum of lengths).

    x (B, T, ...), lengths (B,) valid steps per sequence (None: all T).
    """
    result = estimate(model, x, lengths, bound, particles, resampling=resampling, threshold=threshold,
                      relaxed=relaxed, fused=fused)
    timesteps = x.shape[0] * x.shape[1] if lengths is None else int(lengths.sum())
    return -result.log_p_hat.sum() / timesteps, result.log_p_hat, timesteps


@torch.no_grad()
def evaluate_bounds(model: LatentStepModel, x: torch.Tensor, lengths: torch.Tensor | None, particles: int,
                    threshold: float = 0.5, fused: bool = True) -> dict[str, torch.Tensor]:
    """{"elbo", "iwae", "fivo"} -> log p-hat (B,) each, fivo resampling multinomially (the reference's eval)."""
    return {bound: estimate(model, x, lengths, bound, particles, threshold=threshold, fused=fused).log_p_hat
            for bound in BOUNDS}
