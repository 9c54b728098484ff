"""The 1-D Gaussian hidden Markov model of FIVO's experiments, with five proposals to filter it.

    z_0 ~ N(0, v),   z_t | z_{t-1} ~ N(z_{t-1}, v),   x_t | z_t ~ N(z_t, v),   t = 0 .. T-1

(v = 0.1 and T = 5 by default). Read as z_{-1} = 0, the first step is no special case. The model
itself is fixed; what the bounds can train is the proposal q(z_t | z_{t-1}, x) the particle filter
draws from:

    prior              p(z_t | z_{t-1})                      (the weight is p(x_t | z_t))
    filtering          p(z_t | z_{t-1}, x_t), exact
    smoothing          p(z_t | z_{t-1}, x_{t:T-1}), exact: every importance weight is p(x)
    learned_filtering  N(a_t z_{t-1} + c_t x_t + b_t, exp(s_t))               learnable per step
    learned_smoothing  N(a_t z_{t-1} + sum_{s>=t} W_ts x_s + b_t, exp(s_t))   learnable per step

Both learned families contain the exact proposal of the same name and start at the prior
(a = 1, c = W = b = 0, exp(s) = v), so training moves them from the prior toward it. The
exact likelihood and posterior (`exact_log_likelihood`, `posterior`) come from
core.models.ghmm_exact. The model follows core.models.sequential's step protocol; the one state
tensor is the latent "z" (N * B, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import ConfigError
from core.models import register
from core.models.ghmm_exact import (
    backward_messages,
    filtering_proposal,
    kalman_filter,
    kalman_smoother,
    smoothing_proposal,
)
from core.models.sequential import State

PROPOSALS = ("prior", "filtering", "smoothing", "learned_filtering", "learned_smoothing")


@dataclass
class GHMMConfig:
    num_timesteps: int = 5  # T: the chain's length; the learned proposals have parameters per step
    variance: float = 0.1  # v: of z_0, of each transition and of each emission
    proposal: str = "prior"  # one of PROPOSALS

    def __post_init__(self) -> None:
        t = self.num_timesteps
        if not isinstance(t, int) or isinstance(t, bool) or t < 1:
            raise ConfigError(f"num_timesteps must be an integer >= 1, got {t!r}")
        v = self.variance
        if not isinstance(v, int | float) or isinstance(v, bool) or not (0 < v < math.inf):
            raise ConfigError(f"variance must be a finite number > 0, got {v!r}")
        self.variance = float(v)
        if self.proposal not in PROPOSALS:
            raise ConfigError(f"proposal must be one of {', '.join(PROPOSALS)}, got {self.proposal!r}")


def _log_normal(value: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """log N(value; mean, var), elementwise with broadcasting."""
    return -0.5 * (torch.log(2 * math.pi * var) + (value - mean) ** 2 / var)


@register("ghmm")
class GaussianHMM(nn.Module):
    """The GHMM and its proposal. Observations x are (B, T, 1) floats, T <= num_timesteps for learned proposals."""

    config_class = GHMMConfig
    latent_key = "z"  # the state tensor the SMC trace records for plots

    def __init__(self, config: GHMMConfig):
        super().__init__()
        self.config = config
        # Carries the model's dtype and device (.double(), .to(device)); v itself stays a Python float, so a
        # float64 model computes with v exactly rather than with v rounded to float32.
        self.register_buffer("anchor", torch.zeros(()), persistent=False)
        self.learned = config.proposal.startswith("learned_")
        if self.learned:
            t = config.num_timesteps
            self.prev_weight = nn.Parameter(torch.ones(t))  # a_t
            # c_t (T,) for filtering; W (T, T) for smoothing, of which only s >= t (the upper triangle) is read
            shape = (t,) if config.proposal == "learned_filtering" else (t, t)
            self.obs_weight = nn.Parameter(torch.zeros(shape))
            self.bias = nn.Parameter(torch.zeros(t))  # b_t
            self.log_variance = nn.Parameter(torch.full((t,), math.log(config.variance)))  # s_t

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> State:
        """x (B, T, 1), lengths (B,) -> {"x": (B, T, 1), zero past each end} and what the proposal precomputes:
        the backward messages "j", "h" (B, T, 1) for smoothing, the data part "obs_mean" (B, T, 1) of a learned mean."""
        if x.dim() != 3 or x.shape[-1] != 1:
            raise ConfigError(f"GHMM observations must be (B, T, 1), got shape {tuple(x.shape)}")
        steps = x.shape[1]
        if self.learned and steps > self.config.num_timesteps:
            raise ConfigError(f"a {self.config.proposal} proposal has parameters for num_timesteps="
                              f"{self.config.num_timesteps} steps, got sequences of {steps}; "
                              "train one with a longer chain")
        valid = torch.arange(steps, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        xs = torch.where(valid, x[..., 0], 0.0).to(self.anchor.dtype)  # (B, T)
        context = {"x": xs.unsqueeze(-1)}
        if self.config.proposal == "smoothing":
            j, h = backward_messages(xs, self.config.variance, self.config.variance, lengths)
            context.update(j=j.unsqueeze(-1), h=h.unsqueeze(-1))
        elif self.learned:
            w = self.obs_weight[:steps]
            w = torch.diag(w) if w.dim() == 1 else w[:, :steps].triu()
            context["obs_mean"] = (xs @ w.T + self.bias[:steps]).unsqueeze(-1)
        return context

    def zero_state(self, batch: int) -> State:
        """{"z": (batch, 1) zeros}: z_{-1} = 0."""
        return {"z": self.anchor.new_zeros(batch, 1)}

    def propose_and_weight(self, state: State, context: State, t: int) -> tuple[State, torch.Tensor]:
        """z_t ~ q (reparameterised); log weight (batch,) = log p(z_t | z_{t-1}) + log p(x_t | z_t) - log q(z_t)."""
        z_prev, x_t = state["z"], context["x"][:, t]
        v = self.anchor.new_tensor(self.config.variance)
        proposal = self.config.proposal
        if proposal == "prior":
            mean, var = z_prev, v
        elif proposal == "filtering":
            mean, var = filtering_proposal(z_prev, x_t, v, v)
        elif proposal == "smoothing":
            mean, var = smoothing_proposal(z_prev, x_t, context["j"][:, t], context["h"][:, t], v, v)
        else:
            mean, var = self.prev_weight[t] * z_prev + context["obs_mean"][:, t], self.log_variance[t].exp()
        z = mean + torch.sqrt(var) * torch.randn_like(z_prev)
        log_w = _log_normal(z, z_prev, v) + _log_normal(x_t, z, v) - _log_normal(z, mean, var)
        return {"z": z}, log_w.squeeze(-1)

    def exact_log_likelihood(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, 1), lengths (B,) -> (B,) exact log p(x), by the Kalman filter."""
        v = self.config.variance
        return kalman_filter(x[..., 0].to(self.anchor.dtype), v, v, lengths).log_likelihood

    def posterior(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, 1), lengths (B,) -> exact means and variances of z_t given x, (B, T) each (Kalman smoother)."""
        v = self.config.variance
        return kalman_smoother(x[..., 0].to(self.anchor.dtype), v, v, lengths)
