"""One sequential Monte Carlo engine for every `LatentStepModel` (core.models.sequential).

N particles per sequence are folded into the batch, particle-major (row n * B + b is particle n
of sequence b), so each timestep is one model call for all particles of all sequences. For
each sequence b the engine keeps log-weights accumulated since its last resampling, (N, B):

    for t in 0 .. max(lengths) - 1:
        state, inc = model.propose_and_weight(state, context, t)
        log_w += inc, masked to 0 past each sequence's end
        resample_b = criterion(log_w, t)_b and t < length_b     (never past the end)
        if resample_b: every state tensor re-indexed (or blended) by the ancestors, in `_resample`
        log_p_hat_b += log mean_n exp(log_w[n, b])  if resample_b or t == length_b - 1
        log_w[:, b] = 0                             if resample_b

This is FIVO's particle filter (Maddison et al. 2017, the reference's smc.py): exp(log_p_hat) is
an unbiased estimate of p(x_{1:T}) whatever the criterion, so log_p_hat is a lower bound on
log p(x) in expectation. Without a criterion it never resamples (IWAE); with one particle it is
the ELBO. A step past a sequence's end adds nothing, so the last-step update at the sequence's
own length sees exactly the weights the reference adds at the batch's last step.

Randomness: the model draws its proposals from torch's global generator; the engine draws its
resampling from its own generator (seeded once per run from the global one when none is given,
in every mode). So runs that differ only in the resampling setting see the same proposals:
FIVO that never resamples equals IWAE bit for bit under the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from core.errors import ConfigError
from core.inference.resampling import (
    ANCESTOR_SAMPLERS,
    Criterion,
    blend_particles,
    ess,
    gather_particles,
    relaxed_blend_weights,
)
from core.models.sequential import LatentStepModel, State


@dataclass
class SMCTrace:
    """What happened at each step, for plots; every tensor detached. T = max(lengths), N particles.

    Steps past a sequence's end are masked: zero increments, never resampled.
    """

    log_weights: torch.Tensor  # (T, B, N) weights accumulated since the last resampling, before the reset
    ess: torch.Tensor  # (T, B) effective sample size of those weights, in [1, N]
    resampled: torch.Tensor  # (T, B) bool: the filter resampled after step t
    ancestors: torch.Tensor  # (T, B, N) long: particle n after step t descends from particle ancestors[t, b, n]
    # at step t (identity where it did not resample; the relaxed variant's argmax blend weight where it did)
    latents: torch.Tensor | None  # (T, B, N, ...) state[model.latent_key] after step t's proposal, before
    # resampling; None when the model names no latent


class SMCResult(NamedTuple):
    log_p_hat: torch.Tensor  # (B,) log of the unbiased estimate of p(x_b), differentiable
    trace: SMCTrace | None  # None unless asked for


def run_smc(model: LatentStepModel, x: torch.Tensor, lengths: torch.Tensor | None = None, *,
            particles: int = 1, criterion: Criterion | None = None, resampling: str = "multinomial",
            relaxed: bool = False, temperature: float = 0.5, trace: bool = False,
            generator: torch.Generator | None = None) -> SMCResult:
    """Filter x (B, T, ...) with lengths (B,) (default all T) through `model` with N = `particles`.

    criterion: None never resamples; else (log_weights (N, B), t) -> (B,) bool, e.g. ess_criterion(0.5).
    resampling: "multinomial" or "systematic" ancestors; relaxed=True blends states with
    Gumbel-softmax weights at `temperature` instead (gradients flow through the blend).
    generator: the resampling stream (on x's device); None seeds one from torch's global generator.
    """
    if not isinstance(particles, int) or isinstance(particles, bool) or particles < 1:
        raise ConfigError(f"particles must be an integer >= 1, got {particles!r}")
    if resampling not in ANCESTOR_SAMPLERS:
        raise ConfigError(f"resampling must be one of {sorted(ANCESTOR_SAMPLERS)}, got {resampling!r}")
    if x.dim() < 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must be (B, T, ...) with B, T >= 1, got shape {tuple(x.shape)}")
    n, b, device = particles, x.shape[0], x.device
    lengths = _checked_lengths(lengths, x)
    if generator is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    steps = int(lengths.max())
    time = torch.arange(steps, device=device).unsqueeze(1)
    active = (time < lengths.unsqueeze(0)).unbind(0)  # steps x (B,) bool
    final = (time == (lengths - 1).unsqueeze(0)).unbind(0)  # steps x (B,) bool
    identity = torch.arange(n, device=device).unsqueeze(1).expand(n, b)  # (N, B)
    latent_key = getattr(model, "latent_key", None) if trace else None

    context = {k: v.repeat(n, *([1] * (v.dim() - 1))) for k, v in model.encode(x, lengths).items()}
    state = model.zero_state(n * b)
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    log_w = torch.zeros(n, b, dtype=dtype, device=device)
    log_p_hat = torch.zeros(b, dtype=dtype, device=device)
    log_n = math.log(n)
    zero = torch.zeros((), dtype=dtype, device=device)  # a tensor, not 0.0: torch.where is faster with one
    no_resampling = torch.zeros(b, dtype=torch.bool, device=device)
    records: dict[str, list[torch.Tensor]] = {k: [] for k in ("log_weights", "ess", "resampled", "ancestors",
                                                              "latents")}
    for t in range(steps):
        state, increment = model.propose_and_weight(state, context, t)
        log_w = log_w + torch.where(active[t], increment.view(n, b), zero)
        latent = state[latent_key] if latent_key is not None else None
        resample, ancestors = no_resampling, identity
        if criterion is not None:
            resample = criterion(log_w, t) & active[t]
            if relaxed:
                blend = relaxed_blend_weights(log_w, temperature, generator)
                eye = torch.eye(n, dtype=blend.dtype, device=device).unsqueeze(1)  # (N, 1, N)
                blend = torch.where(resample.view(1, b, 1), blend, eye)
                state = _resample(state, blend)
                ancestors = blend.detach().argmax(dim=-1)
            else:
                ancestors = torch.where(resample, ANCESTOR_SAMPLERS[resampling](log_w, generator), identity)
                state = _resample(state, ancestors)
        log_mean_w = torch.logsumexp(log_w, dim=0) - log_n
        log_p_hat = log_p_hat + torch.where(resample | final[t], log_mean_w, zero)
        if trace:
            records["log_weights"].append(log_w.detach().T)
            records["ess"].append(ess(log_w.detach()))
            records["resampled"].append(resample)
            records["ancestors"].append(ancestors.T)
            if latent is not None:
                records["latents"].append(latent.detach().reshape(n, b, *latent.shape[1:]).transpose(0, 1))
        if criterion is not None:
            log_w = torch.where(resample, zero, log_w)
    if not trace:
        return SMCResult(log_p_hat, None)
    stacked = {k: torch.stack(v) if v else None for k, v in records.items()}
    return SMCResult(log_p_hat, SMCTrace(**stacked))


def _resample(state: State, index: torch.Tensor) -> State:
    """The one place particles move: every state tensor (N * B, ...) re-indexed by ancestors (N, B) long,
    or blended by relaxed weights (N, B, N) float. A model keeps nothing else between steps."""
    if index.dtype == torch.long:
        return {k: gather_particles(v, index) for k, v in state.items()}
    return {k: blend_particles(v, index) for k, v in state.items()}


def _checked_lengths(lengths: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """(B,) long on x's device, each in [1, T]; all T when None."""
    b, t = x.shape[0], x.shape[1]
    if lengths is None:
        return torch.full((b,), t, dtype=torch.long, device=x.device)
    lengths = torch.as_tensor(lengths, device=x.device)
    if lengths.shape != (b,) or lengths.is_floating_point():
        raise ValueError(f"lengths must be an integer tensor of shape ({b},), "
                         f"got {lengths.dtype} {tuple(lengths.shape)}")
    if bool(((lengths < 1) | (lengths > t)).any()):
        raise ValueError(f"lengths must lie in [1, {t}], got {lengths.tolist()}")
    return lengths.long()
