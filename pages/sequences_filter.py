"""The particle filter the Particles tab shows: a GHMM sequence, FIVO's filter over it, the exact posterior.

    run_filter(store, proposal, particles, threshold, seed, steps, filter_seed)   FilterRun: a sequence drawn with
                                                                                 `seed`, FIVO's filter over it, and
                                                                                 the exact posterior (Kalman smoother)

The filter resamples (multinomially) after step t when the effective sample size of the weights
since its last resampling is at most threshold * N: threshold 0 never resamples (IWAE), 1 always does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.data.ghmm import sample_ghmm
from core.inference.bounds import estimate
from core.inference.smc import lineages
from core.model_store import ModelStore
from pages.checks import number_in, seed_or_none, whole_in
from pages.sequences_models import ghmm_model, seeded

MAX_PARTICLES = 256
MIN_STEPS, MAX_STEPS = 5, 50
MAX_SEED = 999  # sequence seeds offered


@dataclass
class FilterRun:
    """One filter over one sequence; T steps, N particles, every array numpy."""

    proposal: str
    threshold: float
    filter_seed: int
    observations: np.ndarray  # (T,) x
    latents: np.ndarray  # (T,) the z the sequence was drawn with
    mean: np.ndarray  # (T,) exact posterior mean of z_t given all of x
    std: np.ndarray  # (T,) its standard deviation
    particles: np.ndarray  # (T, N) z_t of each particle after step t's proposal, before resampling
    weights: np.ndarray  # (T, N) their normalised weights (what resampling after step t draws with)
    ess: np.ndarray  # (T,) in [1, N]
    resampled: np.ndarray  # (T,) bool: the filter resampled after step t
    lineages: np.ndarray  # (T, N) long: the particle at step t that the final particle n descends from
    parents: np.ndarray  # (T - 1, N) long: particle n at step t + 1 descends from particle parents[t, n] at step t
    log_p_hat: float
    exact: float  # log p(x)


def run_filter(store: ModelStore, proposal: str | None, particles: float, threshold: float, seed: float,
               steps: float, filter_seed: float | None) -> FilterRun:
    """Draw a T-step GHMM sequence with `seed`, filter it with N particles drawn with `filter_seed` (None: random);
    StudioError for bad input."""
    n = whole_in("particles", particles, 1, MAX_PARTICLES)
    threshold = number_in("threshold", threshold, 0, 1)
    seed = whole_in("sequence seed", seed, 0, MAX_SEED)
    t = whole_in("steps", steps, MIN_STEPS, MAX_STEPS)
    filter_seed = seed_or_none(filter_seed)
    filter_seed = int(np.random.default_rng().integers(2**31)) if filter_seed is None else filter_seed
    model = ghmm_model(store, proposal, t)
    drawn = sample_ghmm(1, t, model.config.variance, seed=seed)
    x = drawn.observations.double()  # (1, T, 1)
    with torch.no_grad(), seeded(filter_seed):
        result = estimate(model, x, None, "fivo", n, threshold=threshold, trace=True)
    trace = result.trace
    mean, variance = model.posterior(x)
    return FilterRun(
        proposal=str(proposal), threshold=threshold, filter_seed=filter_seed, observations=x[0, :, 0].numpy(),
        latents=drawn.latents[0, :, 0].numpy(), mean=mean[0].numpy(), std=variance[0].sqrt().numpy(),
        particles=trace.latents[:, 0, :, 0].numpy(), weights=torch.softmax(trace.log_weights[:, 0], dim=1).numpy(),
        ess=trace.ess[:, 0].numpy(), resampled=trace.resampled[:, 0].numpy(),
        lineages=lineages(trace.ancestors)[:, 0].numpy(), parents=trace.ancestors[:-1, 0].numpy(),
        log_p_hat=float(result.log_p_hat[0]),
        exact=float(model.exact_log_likelihood(x)[0]))
