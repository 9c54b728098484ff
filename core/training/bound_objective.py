"""The bound objective of the sequential latent-variable models (VRNN, SRNN, GHMM): ELBO, IWAE or FIVO.

Training maximises the chosen bound per timestep (core.inference.bounds.bound_loss: minus the summed
log p-hat over the summed lengths); evaluation estimates all three bounds at once (FIVO resampling
multinomially, as the reference evaluates) and reports each as a sum for pooling, so a run's
validation rows and `python -m core.evaluate` give ELBO, IWAE and FIVO in nats per timestep, and its
train rows the bound it trains with ("fivo_nats", say). "nll_nats" is minus the bound the run trains with.

Under torchrun each process filters its own sequences with `particles` particles each (the particles
are tiled per process) and DDP averages the processes' gradients, so the loss is their mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from core.data.batch import Batch
from core.errors import ConfigError
from core.inference.bounds import BOUNDS, bound_loss, evaluate_bounds
from core.inference.resampling import ANCESTOR_SAMPLERS
from core.training.objectives import ObjectiveOutput, register_objective, through
from core.validation import check_int, is_number, need


@register_objective("bound")
@dataclass
class BoundObjective:
    """ELBO, IWAE or FIVO (the FIVO seed's Table 1 rows) with `particles` particles."""

    bound: str = "fivo"  # "elbo" (one particle), "iwae" (never resamples) or "fivo" (resamples by ESS)
    particles: int = 4
    resampling: str = "multinomial"  # "multinomial" or "systematic" (training; evaluation is multinomial)
    threshold: float = 0.5  # FIVO resamples when ESS <= threshold * particles
    relaxed: bool = False  # FIVO: blend states with Gumbel-softmax weights instead of copying them
    fused: bool = True  # VRNN and SRNN on the CPU filter in one C call (core.inference.fused_filter); false: the loop

    def __post_init__(self) -> None:
        need(self.bound in BOUNDS, f"objective.bound must be one of {BOUNDS}, got {self.bound!r}")
        check_int("objective.particles", self.particles, 1)
        need(self.resampling in ANCESTOR_SAMPLERS,
             f"objective.resampling must be one of {tuple(ANCESTOR_SAMPLERS)}, got {self.resampling!r}")
        need(is_number(self.threshold) and 0 <= self.threshold <= 1,
             f"objective.threshold must be a number in [0, 1], got {self.threshold!r}")
        need(isinstance(self.relaxed, bool), f"objective.relaxed must be true or false, got {self.relaxed!r}")
        need(isinstance(self.fused, bool), f"objective.fused must be true or false, got {self.fused!r}")

    def check(self, model: torch.nn.Module, dataset, world: int) -> None:
        if not hasattr(model, "propose_and_weight"):
            raise ConfigError(f"the bound objective needs a sequential latent-variable model (vrnn, srnn, ghmm), "
                              f"not {model.model_type!r}")

    def build(self, model: torch.nn.Module, seed: int, training: bool = True) -> Callable[..., ObjectiveOutput]:
        def train(net: torch.nn.Module, batch: Batch, state: object = None) -> ObjectiveOutput:
            loss, log_p_hat, timesteps = through(net, lambda model: bound_loss(
                model, batch.x, batch.lengths, self.bound, self.particles, self.resampling, self.threshold,
                self.relaxed, self.fused))
            total = float(log_p_hat.detach().sum())
            return ObjectiveOutput(loss, {"nll_nats": -total, f"{self.bound}_nats": total}, float(timesteps))

        def evaluate(net: torch.nn.Module, batch: Batch, state: object = None) -> ObjectiveOutput:
            bounds = evaluate_bounds(net, batch.x, batch.lengths, self.particles, self.threshold, self.fused)
            timesteps = float(batch.x.shape[0] * batch.x.shape[1] if batch.lengths is None else batch.lengths.sum())
            sums = {f"{name}_nats": float(value.sum()) for name, value in bounds.items()}
            sums["nll_nats"] = -sums[f"{self.bound}_nats"]
            return ObjectiveOutput(-bounds[self.bound].sum() / timesteps, sums, timesteps)

        return train if training else evaluate
