"""Resampling for sequential Monte Carlo: small pure functions over log-weights (N, B).

N particles, B independent filters (sequences). Column b of `log_weights` holds the
unnormalised log-weights of filter b's particles; the functions here never mix columns.

    ancestors = multinomial_ancestors(log_weights)   # (N, B) long: new particle n copies old ancestors[n, b]
    ancestors = systematic_ancestors(log_weights)    # same, lower variance: one uniform per filter
    blend = relaxed_blend_weights(log_weights, 0.5)  # (N, B, N) float: new particle n mixes the old ones
    resample_now = ess_criterion(0.5)(log_weights, t)  # (B,) bool: ESS <= 0.5 * N

Ancestor indices are drawn from detached weights and are integers, so no gradient flows
through the choice (FIVO's reference drops that score-function term too). The relaxed
variant keeps a gradient: its Gumbel-softmax blending weights are differentiable in the
log-weights, and a blended state is a convex combination of the old particles.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from core.errors import ConfigError

# (log_weights (N, B), t) -> (B,) bool: which filters resample after step t.
Criterion = Callable[[torch.Tensor, int], torch.Tensor]


def ess(log_weights: torch.Tensor) -> torch.Tensor:
    """(N, B) unnormalised log-weights -> (B,) effective sample size 1 / sum_n w_n^2 (w normalised), in [1, N]."""
    w = torch.softmax(log_weights, dim=0)
    return 1 / (w * w).sum(dim=0)


class EssCriterion:
    """Resample filter b when its ESS <= threshold * N (FIVO's reference uses 0.5); a Criterion.

    The ESS lies in [1, N] and equals N only for equal weights: threshold 0 never resamples, 0.5
    never resamples equal weights, 1 resamples at every step (equal weights up to rounding).
    A class rather than a closure so a fused filter (core.inference.fused_filter) can read the threshold.
    """

    def __init__(self, threshold: float = 0.5):
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold!r}")
        self.threshold = threshold

    def __call__(self, log_weights: torch.Tensor, t: int) -> torch.Tensor:
        if self.threshold == 0.0:
            return torch.zeros(log_weights.shape[1], dtype=torch.bool, device=log_weights.device)
        # ESS <= threshold * N, as sum w^2 >= 1 / (threshold * N): one softmax, no logsumexp.
        w = torch.softmax(log_weights.detach(), dim=0)
        return (w * w).sum(dim=0) >= 1 / (self.threshold * log_weights.shape[0])


def ess_criterion(threshold: float = 0.5) -> EssCriterion:
    """The ESS criterion at `threshold` (see EssCriterion)."""
    return EssCriterion(threshold)


def always_resample(log_weights: torch.Tensor, t: int) -> torch.Tensor:
    """The criterion that resamples every filter at every step: (N, B) -> (B,) all True."""
    return torch.ones(log_weights.shape[1], dtype=torch.bool, device=log_weights.device)


def multinomial_ancestors(log_weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, B) log-weights -> (N, B) long: N independent draws per filter from softmax(log_weights[:, b])."""
    probs = torch.softmax(log_weights.detach(), dim=0).T  # (B, N)
    return torch.multinomial(probs, log_weights.shape[0], replacement=True, generator=generator).T


def systematic_ancestors(log_weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, B) log-weights -> (N, B) long, sorted per filter: the points (n + U_b) / N, one uniform U_b per filter,
    looked up in the weights' cdf. Each particle is copied floor(N w) or ceil(N w) times (w its normalised weight).
    """
    n, b = log_weights.shape
    cdf = torch.softmax(log_weights.detach(), dim=0).T.cumsum(dim=1)  # (B, N)
    cdf = cdf / cdf[:, -1:]  # the last entry is then exactly 1 > every point, so the index stays in range
    offset = torch.rand(b, 1, dtype=cdf.dtype, device=cdf.device, generator=generator)
    points = (torch.arange(n, dtype=cdf.dtype, device=cdf.device) + offset) / n  # (B, N)
    # right=True: the first i with cdf[i] > point, so a zero-weight particle (a flat step) is never chosen.
    return torch.searchsorted(cdf, points, right=True).T


ANCESTOR_SAMPLERS = {"multinomial": multinomial_ancestors, "systematic": systematic_ancestors}


def relaxed_blend_weights(log_weights: torch.Tensor, temperature: float = 0.5,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, B) log-weights -> (N, B, N) Gumbel-softmax blending weights, differentiable in the log-weights.

    weights[n, b, :] is a relaxed one-hot over filter b's old particles (a point of the simplex);
    as the temperature goes to 0 it becomes the one-hot of a multinomial draw.
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature!r}")
    n, b = log_weights.shape
    logits = torch.log_softmax(log_weights, dim=0).T  # (B, N)
    u = torch.rand(n, b, n, dtype=log_weights.dtype, device=log_weights.device, generator=generator)
    gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))
    return torch.softmax((logits.unsqueeze(0) + gumbel) / temperature, dim=-1)


def ancestor_rows(ancestors: torch.Tensor) -> torch.Tensor:
    """(N, B) ancestors -> (N * B,) long: row n * B + b takes row ancestors[n, b] * B + b."""
    b = ancestors.shape[1]
    return (ancestors * b + torch.arange(b, device=ancestors.device)).reshape(-1)


def gather_particles(tensor: torch.Tensor, ancestors: torch.Tensor) -> torch.Tensor:
    """(N * B, ...) particle-major rows, (N, B) ancestors -> (N * B, ...): row n*B + b := row ancestors[n, b]*B + b."""
    return tensor.index_select(0, ancestor_rows(ancestors))


def blend_particles(tensor: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N * B, ...) particle-major rows, (N, B, N) weights -> (N * B, ...).

    Row (n, b) becomes sum_l weights[n, b, l] * row (l, b); the state must be floating point.
    """
    n, b, _ = weights.shape
    old = tensor.reshape(n, b, -1)  # (N, B, F)
    new = torch.einsum("nbl,lbf->nbf", weights.to(old.dtype), old)
    return new.reshape(tensor.shape)
