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
from core.models.ghmm_exact import (
    Variance,
    filtering_proposal,
    kalman_filter,
    kalman_smoother,
    smoothing_proposal,
)
from core.models.registry import register
from core.models.sequential import State
from core.validation import check_int, is_number, need

PROPOSALS = ("prior", "filtering", "smoothing", "learned_filtering", "learned_smoothing")


@dataclass
class GHMMConfig:
    num_timesteps: int = 5  # T: the chain's length; the learned proposals have parameters per step
    variance: float = 0.1  # v: of z_0, of each transition and of each emission
    proposal: str = "prior"  # one of PROPOSALS

    def __post_init__(self) -> None:
        check_int("num_timesteps", self.num_timesteps, 1)
        need(is_number(self.variance) and self.variance > 0,
             f"variance must be a finite number > 0, got {self.variance!r}")
        self.variance = float(self.variance)
        need(self.proposal in PROPOSALS, f"proposal must be one of {', '.join(PROPOSALS)}, got {self.proposal!r}")


@register("ghmm")
class GaussianHMM(nn.Module):
    """The GHMM and its proposal. Observations x are (B, T, 1) floats, T <= num_timesteps for learned proposals."""

    config_class = GHMMConfig
    default_objective = "bound"  # core.training.bound_objective: ELBO, IWAE or FIVO through core.inference
    latent_key = "z"  # the state tensor the SMC trace records for plots

    def __init__(self, config: GHMMConfig):
        super().__init__()
        self.config = config
        # Carries the model's dtype and device (.double(), .to(device)); v itself stays a Python float, so a
        # float64 model computes with v exactly rather than with v rounded to float32.
        self.register_buffer("anchor", torch.zeros(()), persistent=False)
        self.learned = config.proposal.startswith("learned_")
        v = config.variance
        # log p(z_t | z_{t-1}) + log p(x_t | z_t) - log q(z_t) with z_t = mean + std * eps is
        # -((z_t - z_{t-1})^2 + (x_t - z_t)^2) / (2 v) + (eps^2 + log var_q) / 2 - log(2 pi v^2) / 2.
        self._log_norm = 0.5 * math.log(2 * math.pi * v * v)
        filtering = filtering_proposal(torch.zeros(()), v, v)
        self._fixed = {"prior": (1.0, math.sqrt(v), math.log(v)),  # prev_coef, std, log variance
                       "filtering": (filtering.prev_coef, math.sqrt(filtering.variance), math.log(filtering.variance))}
        if self.learned:
            t = config.num_timesteps
            self.prev_weight = nn.Parameter(torch.ones(t))  # a_t
            # c_t (T,) for filtering; W (T, T) for smoothing, of which only s >= t (the upper triangle) is read
            shape = (t,) if config.proposal == "learned_filtering" else (t, t)
            self.obs_weight = nn.Parameter(torch.zeros(shape))
            self.bias = nn.Parameter(torch.zeros(t))  # b_t
            self.log_variance = nn.Parameter(torch.full((t,), math.log(config.variance)))  # s_t

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> State:
        """x (B, T, 1), lengths (B,) -> {"x": zero past each end} and what the proposal precomputes, all (B, T, 1):
        "offset", the part of the proposal mean that depends on x alone; for smoothing also the per-sequence
        "prev_coef", "std" and "log_var" (they depend on the length)."""
        if x.dim() != 3 or x.shape[-1] != 1:
            raise ConfigError(f"GHMM observations must be (B, T, 1), got shape {tuple(x.shape)}")
        steps = x.shape[1]
        if self.learned and steps > self.config.num_timesteps:
            raise ConfigError(f"a {self.config.proposal} proposal has parameters for num_timesteps="
                              f"{self.config.num_timesteps} steps, got sequences of {steps}; "
                              "train one with a longer chain")
        valid = torch.arange(steps, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        xs = torch.where(valid, x[..., 0], 0.0).to(self.anchor.dtype)  # (B, T)
        v, proposal = self.config.variance, self.config.proposal
        context = {"x": xs}
        if proposal == "filtering":
            context["offset"] = filtering_proposal(xs, v, v).offset
        elif proposal == "smoothing":
            smoothing = smoothing_proposal(xs, v, v, lengths)
            context.update(prev_coef=smoothing.prev_coef, offset=smoothing.offset, std=smoothing.variance.sqrt(),
                           log_var=smoothing.variance.log())
        elif self.learned:
            w = self.obs_weight[:steps]
            w = torch.diag(w) if w.dim() == 1 else w[:, :steps].triu()
            context["offset"] = xs @ w.T + self.bias[:steps]
        return {k: c.unsqueeze(-1) for k, c in context.items()}

    def zero_state(self, batch: int) -> State:
        """{"z": (batch, 1) zeros}: z_{-1} = 0."""
        return {"z": self.anchor.new_zeros(batch, 1)}

    def propose_and_weight(self, state: State, context: State, t: int) -> tuple[State, torch.Tensor]:
        """z_t ~ q (reparameterised); log weight (batch,) = log p(z_t | z_{t-1}) + log p(x_t | z_t) - log q(z_t)."""
        z_prev, x_t = state["z"], context["x"][:, t]
        mean, std, log_var = self._proposal(z_prev, context, t)
        eps = torch.randn_like(z_prev)
        z = mean + std * eps
        step, miss = z - z_prev, x_t - z
        log_w = -0.5 * ((step * step + miss * miss) / self.config.variance - eps * eps - log_var)
        return {"z": z}, log_w.squeeze(-1) - self._log_norm

    def _proposal(self, z_prev: torch.Tensor, context: State, t: int) -> tuple[torch.Tensor, Variance, Variance]:
        """Step t's proposal for z_prev (batch, 1): its mean (batch, 1), std and log variance (floats or tensors)."""
        proposal = self.config.proposal
        if proposal == "prior":
            _, std, log_var = self._fixed[proposal]
            return z_prev, std, log_var
        if proposal == "filtering":
            prev_coef, std, log_var = self._fixed[proposal]
            return prev_coef * z_prev + context["offset"][:, t], std, log_var
        if proposal == "smoothing":
            return (context["prev_coef"][:, t] * z_prev + context["offset"][:, t], context["std"][:, t],
                    context["log_var"][:, t])
        log_var = self.log_variance[t]
        return self.prev_weight[t] * z_prev + context["offset"][:, t], (0.5 * log_var).exp(), log_var

    def exact_log_likelihood(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, 1), lengths (B,) -> (B,) exact log p(x), by the Kalman filter."""
        v = self.config.variance
        return kalman_filter(x[..., 0].to(self.anchor.dtype), v, v, lengths).log_likelihood

    def posterior(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, 1), lengths (B,) -> exact means and variances of z_t given x, (B, T) each (Kalman smoother)."""
        v = self.config.variance
        return kalman_smoother(x[..., 0].to(self.anchor.dtype), v, v, lengths)
