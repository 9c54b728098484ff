"""What the VRNN and the SRNN share: their config, the networks' pieces and the distributions.

Both are the FIVO paper's sequence models (seed 001): a deterministic LSTM backbone h_t, a
Gaussian latent z_t per step, an emission p(x_t | z_t, h_t) and a learned proposal
q(z_t | ...) that the SMC engine samples from. One size, `latent_size` (64 in the paper), sets
the latent, the LSTM and every MLP (one hidden layer, ReLU). The conventions:

- Inputs are the observations shifted right one step and centred: input_t = x_{t-1} - mean,
  input_0 = 0 (`shifted_inputs`); targets x_t are not centred. Batches carry only x and lengths:
  the model derives the inputs from x and the `train_mean` stored in its config, so a
  checkpoint is self-contained.
- Standard deviations are softplus(raw + 0.5), raw the network's output.
- The proposal predicts an offset from the prior mean ("res_q", Fraccaro et al. 2016 sec. 3.3).
- Emissions: Bernoulli (pianorolls; logits = MLP(...) + logit(training mean)) or Gaussian
  (standardised speech frames; mean and standard deviation per dimension).

A first layer over a concatenation [a, b] is written as a @ W_a + b @ W_b: the terms known for
the whole sequence before filtering (the encoded target, the reverse LSTM's output, the SRNN's
h_t) are computed once in `encode`; per step only the terms that depend on a particle are. `encode`
also hands the step its layers once per run (`step_layers`: weights transposed, constant offsets
folded into the biases), so each per-step layer is one addmm node in the autograd graph.

Context layout: the targets are one tensor x (B, T, D); every step input that carries gradient
is stored one key per step (`step_key(name, t)`, each (B, K)). Slicing a (R, T, K) tensor at
every step would make backward O(T^2): each slice's gradient is a full-size zero tensor, and
those zero fills were ~40% of an SRNN training step. Split once, the backward is one stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.data.sequences import shifted_inputs
from core.errors import ConfigError
from core.models.sequential import SHARED
from core.validation import is_int, is_number, need

EMISSIONS = ("bernoulli", "gaussian")
PROPOSALS = ("filtering", "smoothing")
SIGMA_BIAS = 0.5  # standard deviation = softplus(raw + SIGMA_BIAS)
MEAN_CLIP = 1e-4  # logit(training mean) uses the mean clipped to [MEAN_CLIP, 1 - MEAN_CLIP]
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

State = dict[str, torch.Tensor]


@dataclass
class LatentRNNConfig:
    data_dim: int = 88  # D: 88 piano keys, or samples per speech frame (200 at 16 kHz)
    latent_size: int = 64  # size of z_t, of the LSTM(s) and of every MLP's hidden layer
    emission: str = "bernoulli"  # "bernoulli" (binary frames) or "gaussian" (real frames)
    proposal: str = "filtering"  # "filtering" q(z_t | past, x_t) or "smoothing" q(z_t | past, x_t..x_T)
    # Per-dimension training mean (D floats): centres the inputs; for Bernoulli emissions its
    # logit is the emission bias. Empty = zeros (no centring, logit bias 0).
    train_mean: list[float] = field(default_factory=list)
    # Gaussian (speech) frames only: the scalar mean and standard deviation the raw signal was
    # standardised with, and its sample rate, so generated frames can be turned back into audio.
    signal_mean: float = 0.0
    signal_std: float = 1.0
    sample_rate: int = 0  # of the framed signal (0 = not audio)

    def __post_init__(self) -> None:
        for name in ("data_dim", "latent_size"):
            v = getattr(self, name)
            need(is_int(v) and v >= 1, f"{name} must be an integer >= 1, got {v!r}")
        need(self.emission in EMISSIONS, f"emission must be one of {EMISSIONS}, got {self.emission!r}")
        need(self.proposal in PROPOSALS, f"proposal must be one of {PROPOSALS}, got {self.proposal!r}")
        need(isinstance(self.train_mean, (list, tuple)) and all(is_number(v) for v in self.train_mean),
             f"train_mean must be a list of finite numbers, got {type(self.train_mean).__name__}")
        self.train_mean = [float(v) for v in self.train_mean]
        need(len(self.train_mean) in (0, self.data_dim),
             f"train_mean must be empty or hold data_dim={self.data_dim} values, got {len(self.train_mean)}")
        if self.emission == "bernoulli":
            need(all(0.0 <= v <= 1.0 for v in self.train_mean),
                 "train_mean must lie in [0, 1] for bernoulli emissions (it is a frequency of 1s)")
        need(is_number(self.signal_mean), f"signal_mean must be a finite number, got {self.signal_mean!r}")
        need(is_number(self.signal_std) and self.signal_std > 0,
             f"signal_std must be a finite number > 0, got {self.signal_std!r}")
        need(is_int(self.sample_rate) and self.sample_rate >= 0,
             f"sample_rate must be an integer >= 0, got {self.sample_rate!r}")


def step_key(name: str, t: int) -> str:
    """The context key of step t of a per-step input, e.g. "seq/12"."""
    return f"{name}/{t}"


def split_steps(name: str, steps: torch.Tensor) -> dict[str, torch.Tensor]:
    """steps (B, T, K) -> {step_key(name, t): steps[:, t] (B, K)}: one context entry per step."""
    return {step_key(name, t): s for t, s in enumerate(steps.unbind(1))}


def glorot_(linear: nn.Linear, fan_in: int | None = None) -> nn.Linear:
    """Glorot-uniform weights (fan_in of the whole first layer when it is split), zero bias."""
    fan_in = linear.in_features if fan_in is None else fan_in
    bound = math.sqrt(6.0 / (fan_in + linear.out_features))
    nn.init.uniform_(linear.weight, -bound, bound)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


def glorot_fused_(linear: nn.Linear, fan_ins: list[int]) -> nn.Linear:
    """Glorot init of a Linear whose output rows stack several layers' parts, one fan_in per block; zero bias."""
    out = linear.out_features // len(fan_ins)
    with torch.no_grad():
        for block, fan_in in zip(linear.weight.split(out), fan_ins, strict=True):
            bound = math.sqrt(6.0 / (fan_in + out))
            block.uniform_(-bound, bound)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    """Linear -> ReLU -> Linear, Glorot-initialised: (..., n_in) -> (..., n_out)."""
    return nn.Sequential(glorot_(nn.Linear(n_in, hidden)), nn.ReLU(), glorot_(nn.Linear(hidden, n_out)))


def lstm_layer(n_in: int, hidden: int) -> nn.LSTM:
    """A one-layer, batch-first nn.LSTM (B, T, n_in) -> (B, T, hidden), initialised by init_lstm_."""
    lstm = nn.LSTM(n_in, hidden, batch_first=True)
    init_lstm_(lstm.weight_ih_l0, lstm.weight_hh_l0, [lstm.bias_ih_l0, lstm.bias_hh_l0])
    return lstm


def init_lstm_(weights_ih: torch.Tensor, weights_hh: torch.Tensor, biases: list[torch.Tensor]) -> None:
    """Glorot over the joined [input, hidden] kernel, zero biases but forget gate 1 (PyTorch order i, f, g, o)."""
    hidden = weights_hh.shape[1]
    bound = math.sqrt(6.0 / (weights_ih.shape[1] + hidden + 4 * hidden))
    with torch.no_grad():
        for w in (weights_ih, weights_hh):
            w.uniform_(-bound, bound)
        for b in biases:
            b.zero_()
        biases[0][hidden:2 * hidden] = 1.0


def normal_params(raw: torch.Tensor, offset: float = SIGMA_BIAS) -> tuple[torch.Tensor, torch.Tensor]:
    """raw (..., 2K) -> mean (..., K), standard deviation softplus(raw_sd + 0.5) (..., K).

    offset=0 when the 0.5 is already in raw (folded into a layer's bias by `step_layers`).
    """
    mu, raw_sd = raw.chunk(2, dim=-1)
    return mu, F.softplus(raw_sd + offset if offset else raw_sd)


def normal_log_prob(x: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """log N(x; mu, sd^2) summed over the last dim: (..., K) -> (...)."""
    return (-0.5 * ((x - mu) / sd) ** 2 - sd.log()).sum(-1) - HALF_LOG_2PI * x.shape[-1]


def propose(mu_p: torch.Tensor, sd_p: torch.Tensor, raw_q: torch.Tensor, eps: torch.Tensor | None,
            sigma_bias: float = SIGMA_BIAS) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised z ~ q = N(mu_p + offset, sd_q), (offset, raw sd) = raw_q (R, 2L):
    -> (z (R, L), log p(z) - log q(z) (R,)) under the prior N(mu_p, sd_p). sigma_bias as normal_params' offset.

    With z = mu_q + sd_q * eps, log q(z) = log N(eps; 0, 1) - sum log sd_q: the same function of
    the parameters as the density at z, written without recomputing (z - mu_q) / sd_q; the
    Gaussians' normalising constants cancel in the difference.
    """
    offset, sd_q = normal_params(raw_q, sigma_bias)
    if eps is None:
        eps = torch.randn_like(mu_p)
    step = torch.addcmul(offset, sd_q, eps)  # z - mu_p
    u = step / sd_p  # (z - mu_p) / sd_p
    # Few ops, for speed: sum of log(sd_q / sd_p) - u^2 / 2 + eps^2 / 2.
    log_ratio = torch.addcmul(torch.addcmul((sd_q / sd_p).log(), u, u, value=-0.5), eps, eps, value=0.5).sum(-1)
    return mu_p + step, log_ratio


class Emission(nn.Module):
    """p(x_t | hidden): the output layer of the emission MLP and its distribution.

    Bernoulli: logits = Linear(hidden) + logit(clipped training mean), (R, D).
    Gaussian: (mean, raw sd) = Linear(hidden), (R, 2D); sd = softplus(raw + 0.5), the same offset as
    the latents (the FIVO reference leaves its Gaussian emission at its class default, 0.25).
    """

    def __init__(self, config: LatentRNNConfig):
        super().__init__()
        self.bernoulli = config.emission == "bernoulli"
        d, h = config.data_dim, config.latent_size
        self.out = glorot_(nn.Linear(h, d if self.bernoulli else 2 * d))
        mean = torch.tensor(config.train_mean or [0.5 if self.bernoulli else 0.0] * d)
        bias = torch.logit(mean.clamp(MEAN_CLIP, 1 - MEAN_CLIP)) if self.bernoulli else torch.zeros(d)
        self.register_buffer("logit_bias", bias, persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (R, H) -> distribution parameters: logits (R, D) or (mean, raw sd) (R, 2D)."""
        out = self.out(hidden)
        return out + self.logit_bias if self.bernoulli else out

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x) summed over D: x (R, D), params from forward -> (R,)."""
        if self.bernoulli:
            return -F.binary_cross_entropy_with_logits(params, x, reduction="none").sum(-1)
        mu, sd = normal_params(params)
        return normal_log_prob(x, mu, sd)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw per row: params (R, D or 2D) -> x (R, D) (0/1 floats, or reals)."""
        if self.bernoulli:
            return torch.bernoulli(torch.sigmoid(params), generator=generator)
        mu, sd = normal_params(params)
        return mu + sd * torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its length, padding left in place: x (B, T, F) -> (B, T, F).

    Applying it twice is the identity, so it also maps a reverse-time output back to time order.
    """
    b, t = x.shape[:2]
    steps = torch.arange(t, device=x.device).expand(b, t)
    last = (lengths.to(x.device) - 1).unsqueeze(1)
    index = torch.where(steps <= last, last - steps, steps)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


def reverse_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Run `lstm` backwards in time over each sequence from its own end: x (B, T, F) -> (B, T, H).

    Output t summarises x_t .. x_{length-1}; padding never reaches a valid step.
    """
    out, _ = lstm(reverse_padded(x, lengths))
    return reverse_padded(out, lengths)


def step_layers(layers: dict[str, nn.Linear], offsets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The layers a filtering step calls, once per run, as SHARED context entries (core.models.sequential):
    "shared/NAME/w" the weight transposed (in, out), "shared/NAME/b" the bias plus offsets[NAME] if given.

    A step then calls `affine`: one addmm, with no transpose node and no separate add for the constant
    offsets (the standard deviations' 0.5, the Bernoulli emission's logit(mean)) in its autograd graph.
    """
    out = {}
    for name, layer in layers.items():
        out[f"{SHARED}{name}/w"] = layer.weight.t()
        if layer.bias is not None:
            out[f"{SHARED}{name}/b"] = layer.bias + offsets[name] if name in offsets else layer.bias
    return out


def fused_layers(shared: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`step_layers`' SHARED entries -> the names of core.models.sequential.FusedInputs.layers: "shared/NAME/w"
    -> "NAME", "shared/NAME/b" -> "NAME/b"."""
    return {k[len(SHARED):].removesuffix("/w"): v for k, v in shared.items()}


def affine(x: torch.Tensor, context: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """x (R, in) through the step layer NAME of `step_layers` -> (R, out)."""
    weight, bias = context[f"{SHARED}{name}/w"], context.get(f"{SHARED}{name}/b")
    return torch.mm(x, weight) if bias is None else torch.addmm(bias, x, weight)


class LatentRNN(nn.Module):
    """The pieces common to VRNN and SRNN: data and latent encoders, emission, input centring."""

    default_objective = "bound"  # core.training.bound_objective: ELBO, IWAE or FIVO through core.inference

    def __init__(self, config: LatentRNNConfig):
        super().__init__()
        self.config = config
        d, h, latent = config.data_dim, config.latent_size, config.latent_size
        self.data_enc = mlp(d, h, h)  # x (or a centred input) -> features (..., H)
        self.latent_enc = mlp(latent, h, h)  # z -> features (..., H)
        self.emission = Emission(config)
        mean = torch.tensor(config.train_mean) if config.train_mean else torch.zeros(d)
        self.register_buffer("input_mean", mean, persistent=False)

    def check_x(self, x: torch.Tensor, lengths: torch.Tensor) -> None:
        """ConfigError unless x is (B, T, data_dim) floats and lengths (B,) in [1, T] (data and model must agree)."""
        d = self.config.data_dim
        if x.dim() != 3 or x.shape[-1] != d or not x.is_floating_point():
            raise ConfigError(f"this model takes float frames (B, T, data_dim={d}), got {tuple(x.shape)} {x.dtype}; "
                              "use a model whose data_dim matches the data")
        if lengths.shape != (x.shape[0],) or lengths.min() < 1 or lengths.max() > x.shape[1]:
            raise ConfigError(f"lengths must be (B,) = ({x.shape[0]},) in [1, {x.shape[1]}], got {lengths.tolist()}")

    def inputs(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D) -> inputs (B, T, D): input_t = x_{t-1} - train_mean, input_0 = 0, 0 past the length."""
        return shifted_inputs(x, self.input_mean, lengths)

    def shared_step_layers(self, **more: nn.Linear) -> dict[str, torch.Tensor]:
        """`step_layers` of the layers both families call per step (prior and proposal outputs with the 0.5 of
        their standard deviations folded in, the latent encoder, the emission's enc(z) part and its output layer
        with logit(mean) folded in) and `more`."""
        latent = self.config.latent_size
        sigma = torch.cat([self.prior_out.bias.new_zeros(latent), self.prior_out.bias.new_full((latent,), SIGMA_BIAS)])
        offsets = {"prior": sigma, "proposal": sigma}
        if self.emission.bernoulli:
            offsets["emission"] = self.emission.logit_bias
        return step_layers({"prior": self.prior_out, "proposal": self.proposal_out, "enc_in": self.latent_enc[0],
                            "enc_out": self.latent_enc[2], "emission_z": self.emission_z,
                            "emission": self.emission.out, **more}, offsets)

    def weigh(self, context: State, t: int, hidden: torch.Tensor, enc_z: torch.Tensor) -> torch.Tensor:
        """log p(x_t | z_t, h_t) (R,) from the emission's first-layer term of h_t, hidden (R, H), and enc(z_t)."""
        params = affine(F.relu(hidden + affine(enc_z, context, "emission_z")), context, "emission")
        return self.emission.log_prob(context["x"][:, t], params)

    def encode_latent(self, z: torch.Tensor, context: State) -> torch.Tensor:
        """enc(z) (R, H) of z (R, L) through the step layers: latent_enc's MLP."""
        return affine(F.relu(affine(z, context, "enc_in")), context, "enc_out")

    def centre(self, x: torch.Tensor) -> torch.Tensor:
        """One observed or sampled frame (R, D) -> the next step's input (R, D)."""
        return x - self.input_mean
