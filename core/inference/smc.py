"""One sequential Monte Carlo engine for every `LatentStepModel` (core.models.sequential).

N particles per sequence are folded into the batch, particle-major (row n * B + b is particle n
of sequence b), so each timestep is one model call for all particles of all sequences. For
each sequence b the engine keeps log-weights accumulated since its last resampling, (N, B):

    for t in 0 .. max(lengths) - 1:
        state, inc = model.propose_and_weight(state, context, t)
        log_w += inc, masked to 0 past each sequence's end
        resample_b = criterion(log_w, t)_b and t < length_b     (never past the end)
        if resample_b: every state tensor re-indexed (or blended) by the ancestors, in `_resample`
        log_p_hat_b += log mean_n exp(log_w[n, b])  if resample_b
        log_w[:, b] = 0                             if resample_b
    log_p_hat += log mean_n exp(log_w[n, b])        (always, for the steps since the last resampling)

This is FIVO's particle filter (Maddison et al. 2017, the reference's smc.py): exp(log_p_hat) is
an unbiased estimate of p(x_{1:T}) whatever the criterion, so log_p_hat is a lower bound on
log p(x) in expectation. Without a criterion it never resamples (IWAE); with one particle it is
the ELBO. A step past a sequence's end adds nothing, so the final update sees the weights at the
sequence's own last step, as the reference's update at the batch's last step does. The log-mean
at the resampling steps is taken after the loop, in one call over all steps.

The VRNN and the SRNN on the CPU skip this loop: core.inference.fused_filter runs the same filter, forward and
backward, as one C call each, with the same proposal noise (the ESS criterion or none; its
resampling uniforms are drawn up front, so FIVO's ancestors differ from this loop's, by the same law).

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
from core.inference import fused_filter
from core.inference.resampling import (
    ANCESTOR_SAMPLERS,
    Criterion,
    ancestor_rows,
    blend_particles,
    ess,
    relaxed_blend_weights,
)
from core.models.sequential import LatentStepModel, State, tile


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
            generator: torch.Generator | None = None, fused: bool = True) -> SMCResult:
    """Filter x (B, T, ...) with lengths (B,) (default all T) through `model` with N = `particles`.

    criterion: None never resamples; else (log_weights (N, B), t) -> (B,) bool, e.g. ess_criterion(0.5).
    resampling: "multinomial" or "systematic" ancestors; relaxed=True blends states with
    Gumbel-softmax weights at `temperature` instead (gradients flow through the blend).
    generator: the resampling stream (on x's device); None seeds one from torch's global generator.
    fused: run the whole filter as one C call where core.inference.fused_filter can (VRNN and SRNN on the CPU).
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
    if fused and fused_filter.usable(model, x, n, criterion, relaxed):
        threshold = None if criterion is None else criterion.threshold
        result = fused_filter.run(model, x, lengths, n, threshold, resampling, generator)
        recorded = _trace(result.log_weights, result.resampled, result.ancestors, None) if trace else None
        return SMCResult(result.log_p_hat, recorded)
    steps, shortest = int(lengths.max()), int(lengths.min())
    active = (torch.arange(steps, device=device).unsqueeze(1) < lengths.unsqueeze(0)).unbind(0)  # steps x (B,)
    # On the CPU, asking whether any filter resamples costs nothing and saves re-indexing the state when none
    # does; on an accelerator the question would stall the queue, so the state is always re-indexed there.
    ask = device.type == "cpu"
    identity = torch.arange(n, device=device).unsqueeze(1).expand(n, b)  # (N, B)
    latent_key = getattr(model, "latent_key", None) if trace else None

    context = tile(model.encode(x, lengths), n)
    state = model.zero_state(n * b)
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    log_w = torch.zeros(n, b, dtype=dtype, device=device)
    zero = torch.zeros((), dtype=dtype, device=device)  # a tensor, not 0.0: torch.where is faster with one
    weights, resampled, ancestry, latents = [], [], [], []  # per step: (N, B), (B,), (N, B), (B, N, ...)
    for t in range(steps):
        state, increment = model.propose_and_weight(state, context, t)
        increment = increment.view(n, b)
        log_w = log_w + (increment if t < shortest else torch.where(active[t], increment, zero))
        weights.append(log_w)
        if latent_key is not None:
            z = state[latent_key].detach()
            latents.append(z.reshape(n, b, *z.shape[1:]).transpose(0, 1))
        if criterion is None:
            continue
        resample = criterion(log_w, t)
        if t >= shortest:
            resample = resample & active[t]
        # Every step draws its resampling noise, used or not, so the stream never depends on the decisions.
        if relaxed:
            blend = relaxed_blend_weights(log_w, temperature, generator)
        else:
            drawn = ANCESTOR_SAMPLERS[resampling](log_w, generator)
        resampled.append(resample)
        if ask and not bool(resample.any()):
            ancestry.append(identity)
            continue
        if relaxed:
            eye = torch.eye(n, dtype=blend.dtype, device=device).unsqueeze(1)  # (N, 1, N)
            blend = torch.where(resample.view(1, b, 1), blend, eye)
            state = _resample(state, blend)
            ancestors = blend.detach().argmax(dim=-1)
        else:
            ancestors = torch.where(resample, drawn, identity)
            state = _resample(state, ancestor_rows(ancestors))
        ancestry.append(ancestors)
        log_w = torch.where(resample, zero, log_w)

    # p-hat is the product of the mean weights at each resampling and of those left at the end: the
    # weights since each sequence's last resampling, frozen past its end (zero if it resampled last).
    log_n = math.log(n)
    log_p_hat = torch.logsumexp(log_w, dim=0) - log_n
    history = torch.stack(weights) if resampled or trace else None  # (steps, N, B)
    flags = torch.stack(resampled) if resampled else torch.zeros(steps, b, dtype=torch.bool, device=device)
    if resampled:  # one logsumexp over all steps rather than one per step
        at_resampling = torch.logsumexp(history, dim=1) - log_n  # (steps, B)
        log_p_hat = log_p_hat + torch.where(flags, at_resampling, zero).sum(dim=0)
    if not trace:
        return SMCResult(log_p_hat, None)
    ancestors = torch.stack(ancestry) if ancestry else identity.expand(steps, n, b)
    return SMCResult(log_p_hat, _trace(history.detach(), flags, ancestors, torch.stack(latents) if latents else None))


def lineages(ancestors: torch.Tensor) -> torch.Tensor:
    """(T, B, N) trace ancestors -> (T, B, N) long: the index at step t of the particle that particle n of the
    last step descends from (the lineages that survive to the end; the last row is 0 .. N-1)."""
    path = torch.arange(ancestors.shape[2], device=ancestors.device).expand(ancestors.shape[1:])
    paths = [path]
    for t in range(ancestors.shape[0] - 2, -1, -1):
        path = ancestors[t].gather(1, path)
        paths.append(path)
    return torch.stack(paths[::-1])


def _trace(history: torch.Tensor, resampled: torch.Tensor, ancestors: torch.Tensor,
           latents: torch.Tensor | None) -> SMCTrace:
    """The SMCTrace of a run, from its weights (T, N, B) before any reset, flags (T, B), ancestors (T, N, B)."""
    t, n, b = history.shape
    return SMCTrace(log_weights=history.transpose(1, 2), ess=ess(history.transpose(0, 1).reshape(n, t * b)).view(t, b),
                    resampled=resampled, ancestors=ancestors.transpose(1, 2), latents=latents)


def _resample(state: State, index: torch.Tensor) -> State:
    """The one place particles move: every state tensor (N * B, ...) re-indexed by the rows (N * B,) long of
    `ancestor_rows`, or blended by relaxed weights (N, B, N) float. A model keeps nothing else between steps."""
    if index.dtype == torch.long:
        return {k: v.index_select(0, index) for k, v in state.items()}
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
