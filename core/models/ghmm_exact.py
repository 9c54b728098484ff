"""Exact inference in the 1-D Gaussian HMM: the numbers the particle filter is checked against.

The chain, with transition variance q and emission variance r (both v in core.models.ghmm):

    z_{-1} = 0,   z_t | z_{t-1} ~ N(z_{t-1}, q),   x_t | z_t ~ N(z_t, r),   t = 0 .. T-1

so z_0 ~ N(0, q). Everything is Gaussian, so log p(x) has three independent routes here:

- `mvn_log_likelihood`: x ~ N(0, Sigma) with Sigma_ij = q (min(i, j) + 1) + r [i == j];
- `kalman_filter`: the forward recursion, p(x) = prod_t p(x_t | x_{<t});
- the exact smoothing proposal (`smoothing_proposal`): with it every importance weight equals p(x).

Sequences in a batch may be shorter than T (`lengths`); past its end a sequence contributes no
likelihood and its moments stay at their last valid value. x is (B, T) here (the model squeezes
its (B, T, 1) observations); q and r are floats or 0-dim tensors.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

Variance = float | torch.Tensor


class LinearGaussian(NamedTuple):
    """A proposal N(prev_coef * z_{t-1} + offset, variance) for each step: floats or (B, T) tensors."""

    prev_coef: Variance
    offset: torch.Tensor
    variance: Variance


class KalmanResult(NamedTuple):
    log_likelihood: torch.Tensor  # (B,) log p(x_{0:L-1})
    means: torch.Tensor  # (B, T) E[z_t | x_{0:t}]
    variances: torch.Tensor  # (B, T) Var[z_t | x_{0:t}]


def chain_covariance(steps: int, q: Variance, r: Variance, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(T, T) covariance of x_{0:T-1}: Cov(z_i, z_j) = q (min(i, j) + 1), plus r on the diagonal."""
    idx = torch.arange(steps, dtype=dtype)
    return q * (torch.minimum(idx.unsqueeze(0), idx.unsqueeze(1)) + 1) + r * torch.eye(steps, dtype=dtype)


def mvn_log_likelihood(x: torch.Tensor, q: Variance, r: Variance) -> torch.Tensor:
    """(B, T) full-length sequences -> (B,) log N(x; 0, chain_covariance(T, q, r))."""
    cov = chain_covariance(x.shape[1], q, r, dtype=x.dtype).to(x.device)
    return torch.distributions.MultivariateNormal(torch.zeros_like(x[0]), covariance_matrix=cov).log_prob(x)


def _valid(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """(T, B) bool: step t of sequence b is inside it."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(1)
    if lengths is None:
        return torch.ones(x.shape[1], x.shape[0], dtype=torch.bool, device=x.device)
    return steps < lengths.to(x.device).unsqueeze(0)


def kalman_filter(x: torch.Tensor, q: Variance, r: Variance, lengths: torch.Tensor | None = None) -> KalmanResult:
    """x (B, T), lengths (B,) -> log p(x) (B,) and the filtered moments of each z_t (B, T)."""
    valid = _valid(x, lengths)
    mean = torch.zeros_like(x[:, 0])
    var = torch.zeros_like(x[:, 0])  # z_{-1} = 0 is known exactly
    log_lik = torch.zeros_like(x[:, 0])
    means, variances = [], []
    for t in range(x.shape[1]):
        pred_var = var + q
        innovation_var = pred_var + r
        residual = x[:, t] - mean
        step_ll = -0.5 * (torch.log(2 * math.pi * innovation_var) + residual**2 / innovation_var)
        log_lik = log_lik + torch.where(valid[t], step_ll, 0.0)
        gain = pred_var / innovation_var
        mean = torch.where(valid[t], mean + gain * residual, mean)
        var = torch.where(valid[t], pred_var * r / innovation_var, var)
        means.append(mean)
        variances.append(var)
    return KalmanResult(log_lik, torch.stack(means, 1), torch.stack(variances, 1))


def kalman_smoother(x: torch.Tensor, q: Variance, r: Variance,
                    lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, T), lengths (B,) -> posterior means and variances of z_t given the whole sequence, (B, T) each.

    The Rauch-Tung-Striebel backward pass over the Kalman filter's moments.
    """
    valid = _valid(x, lengths)
    filtered = kalman_filter(x, q, r, lengths)
    f_mean, f_var = filtered.means, filtered.variances
    mean, var = f_mean[:, -1], f_var[:, -1]
    means, variances = [mean], [var]
    for t in range(x.shape[1] - 2, -1, -1):
        pred_var = f_var[:, t] + q
        gain = f_var[:, t] / pred_var
        has_next = valid[t + 1]
        mean = torch.where(has_next, f_mean[:, t] + gain * (mean - f_mean[:, t]), f_mean[:, t])
        var = torch.where(has_next, f_var[:, t] + gain**2 * (var - pred_var), f_var[:, t])
        means.append(mean)
        variances.append(var)
    return torch.stack(means[::-1], 1), torch.stack(variances[::-1], 1)


def backward_messages(x: torch.Tensor, q: Variance, r: Variance,
                      lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, T) -> (J, h), (B, T) each: p(x_{t+1:L-1} | z_t) is proportional to exp(-J_t z_t^2 / 2 + h_t z_t).

    J_t = h_t = 0 from the sequence's last step on (nothing left to observe). Going back one step,
    integrating z_t out of N(z_t; z_{t-1}, q) N(x_t; z_t, r) exp(-J_t z_t^2 / 2 + h_t z_t) gives, with
    precision P_t = 1/q + 1/r + J_t:  J_{t-1} = 1/q - 1/(q^2 P_t),  h_{t-1} = (x_t / r + h_t) / (q P_t).
    """
    valid = _valid(x, lengths)
    j = torch.zeros_like(x[:, 0])
    h = torch.zeros_like(x[:, 0])
    js, hs = [j], [h]
    for t in range(x.shape[1] - 1, 0, -1):
        precision = 1 / q + 1 / r + j
        j_prev = 1 / q - 1 / (q**2 * precision)
        h_prev = (x[:, t] / r + h) / (q * precision)
        j = torch.where(valid[t], j_prev, 0.0)
        h = torch.where(valid[t], h_prev, 0.0)
        js.append(j)
        hs.append(h)
    return torch.stack(js[::-1], 1), torch.stack(hs[::-1], 1)


def filtering_proposal(x: torch.Tensor, q: Variance, r: Variance) -> LinearGaussian:
    """p(z_t | z_{t-1}, x_t) for x (B, T): N((r z_{t-1} + q x_t) / (q + r), q r / (q + r))."""
    return LinearGaussian(r / (q + r), x * (q / (q + r)), q * r / (q + r))


def smoothing_proposal(x: torch.Tensor, q: Variance, r: Variance,
                       lengths: torch.Tensor | None = None) -> LinearGaussian:
    """p(z_t | z_{t-1}, x_{t:L-1}) for x (B, T), from the backward messages (J_t, h_t): with precision
    P_t = 1/q + 1/r + J_t, it is N((z_{t-1} / q + x_t / r + h_t) / P_t, 1 / P_t). Every field (B, T)."""
    j, h = backward_messages(x, q, r, lengths)
    precision = 1 / q + 1 / r + j
    return LinearGaussian(1 / (q * precision), (x / r + h) / precision, 1 / precision)
