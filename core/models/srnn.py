"""SRNN (Fraccaro et al. 2016, "Sequential Neural Models with Stochastic Layers"), as in FIVO.

Read top to bottom: the config, the network, the encoder, one filtering step, one generative step.

The forward LSTM reads the inputs only (input_t = x_{t-1} - mean), never the latents, so all of
h_1..h_T come from one LSTM call in `encode`; the latents form a Markov chain beside it:

    h_t = LSTM(data_enc(input_t), h_{t-1})                              (B, T, H), in encode
    prior      p(z_t | h_t, z_{t-1})    = N(mu_p, sd_p),  MLP([h_t, latent_enc(z_{t-1})])   (R, L)
    proposal   q(z_t | h_t, z_{t-1}, c_t) = N(mu_p + offset, sd_q),  MLP([h_t, c_t, latent_enc(z_{t-1})])
               c_t = data_enc(x_t) (filtering), or a reverse LSTM over [h_s, data_enc(x_s)], s >= t (smoothing)
    emission   p(x_t | z_t, h_t)        = MLP([latent_enc(z_t), h_t]) (+ logit(mean) for Bernoulli)
    log_w      = log p(x_t | z_t, h_t) + log p(z_t | h_t, z_{t-1}) - log q(z_t | ...)

Every first-layer term that reads h_t or c_t is computed in `encode` for all t at once, so a
filtering step is two (H, 2H)/(H, H) matmuls on the particles' latents plus the MLP outputs.
R = N * B rows: particles folded into the batch, particle-major (row n * B + b).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.models.latent_rnn import (
    LatentRNN,
    LatentRNNConfig,
    State,
    affine,
    fused_layers,
    glorot_,
    glorot_fused_,
    lstm_layer,
    normal_params,
    propose,
    reverse_lstm,
    split_steps,
    step_key,
)
from core.models.registry import register
from core.models.sequential import FusedInputs


@dataclass
class SRNNConfig(LatentRNNConfig):
    """See LatentRNNConfig; a class of its own so a checkpoint's config picks the SRNN."""


@register("srnn")
class SRNN(LatentRNN):
    """The SRNN of the FIVO paper with a filtering or smoothing proposal; implements core.models.sequential."""

    config_class = SRNNConfig

    def __init__(self, config: SRNNConfig):
        super().__init__(config)
        h, latent = config.latent_size, config.latent_size
        self.rnn = lstm_layer(h, h)
        # h_t's parts of the prior's and the emission's first layers, fused: [prior | emission].
        self.from_h = glorot_fused_(nn.Linear(h, 2 * h), [2 * h, 2 * h])
        self.proposal_seq = glorot_(nn.Linear(2 * h, h), 3 * h)  # [h_t, c_t]'s part of the proposal's first layer
        # enc(z_{t-1})'s parts of the prior's and the proposal's first layers, fused: [prior | proposal].
        self.from_z_prev = glorot_fused_(nn.Linear(h, 2 * h, bias=False), [2 * h, 3 * h])
        self.prior_out = glorot_(nn.Linear(h, 2 * latent))
        self.proposal_out = glorot_(nn.Linear(h, 2 * latent))
        self.emission_z = glorot_(nn.Linear(h, h, bias=False), 2 * h)  # enc(z_t)'s part of the emission's first layer
        if config.proposal == "smoothing":
            self.reverse_rnn = lstm_layer(2 * h, h)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> State:
        """x (B, T, D) targets, lengths (B,) -> context: x, and per step "seq/t" (B, 3H) = the [prior | proposal |
        emission] first-layer terms that read h_t and c_t."""
        return {"x": x, **self.shared_step_layers(from_z_prev=self.from_z_prev),
                **split_steps("seq", self._sequence_terms(x, lengths))}

    def fused_filter_inputs(self, x: torch.Tensor, lengths: torch.Tensor) -> FusedInputs:
        """What core.inference.fused_filter runs: no LSTM in the loop, seq = `encode`'s terms for all t (B, T, 3H),
        and the step layers: "recurrent" = from_z_prev (H, 2H) and `encode`'s by name."""
        layers = fused_layers(self.shared_step_layers(from_z_prev=self.from_z_prev))
        layers["recurrent"] = layers.pop("from_z_prev")
        return FusedInputs(lstm=False, seq=self._sequence_terms(x, lengths), c_term=None, layers=layers)

    def _sequence_terms(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The [prior | proposal | emission] first-layer terms that read h_t and c_t, for every t: (B, T, 3H)."""
        self.check_x(x, lengths)
        h, _ = self.rnn(self.data_enc(self.inputs(x, lengths)))
        c = self.data_enc(x)
        if self.config.proposal == "smoothing":
            c = reverse_lstm(self.reverse_rnn, torch.cat([h, c], dim=-1), lengths)
        prior, emit = self.from_h(h).chunk(2, dim=-1)
        return torch.cat([prior, self.proposal_seq(torch.cat([h, c], dim=-1)), emit], dim=-1)

    def zero_state(self, batch: int) -> State:
        """enc_z (batch, H) the encoded previous latent (zeros), z (batch, L)."""
        w, size = self.from_h.weight, self.config.latent_size
        return {"enc_z": w.new_zeros(batch, size), "z": w.new_zeros(batch, size)}

    def propose_and_weight(self, state: State, context: State, t: int,
                           eps: torch.Tensor | None = None) -> tuple[State, torch.Tensor]:
        """Draw z_t ~ q and weigh it: -> (new state, log_w (R,)). eps (R, L) fixes the noise (else randn)."""
        s_prior, s_prop, s_emit = context[step_key("seq", t)].chunk(3, dim=-1)
        g_prior, g_prop = affine(state["enc_z"], context, "from_z_prev").chunk(2, dim=-1)
        mu_p, sd_p = normal_params(affine(F.relu(s_prior + g_prior), context, "prior"), 0.0)  # 0.5s in the biases
        z, log_ratio = propose(mu_p, sd_p, affine(F.relu(s_prop + g_prop), context, "proposal"), eps, 0.0)
        enc_z = self.encode_latent(z, context)
        return {"enc_z": enc_z, "z": z}, self.weigh(context, t, s_emit, enc_z) + log_ratio

    def start_sampling(self, state: State, prefix: torch.Tensor) -> State:
        """The filter's state (R = N * B rows) after `prefix` (B, P, D) -> it plus the forward LSTM's (h, c)."""
        b, size = prefix.shape[0], self.config.latent_size
        if prefix.shape[1] == 0:
            h = c = prefix.new_zeros(b, size)
        else:
            _, (h, c) = self.rnn(self.data_enc(self.inputs(prefix)))
            h, c = h[0], c[0]
        n = state["enc_z"].shape[0] // b
        return {**state, "h": h.repeat(n, 1), "c": c.repeat(n, 1)}

    def prior_step(self, state: State, inputs: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[State, torch.Tensor]:
        """Generate one frame: inputs (R, D) centred previous frame -> (state, x_t (R, D)), z_t ~ prior."""
        out, (h, c) = self.rnn(self.data_enc(inputs).unsqueeze(1), (state["h"][None], state["c"][None]))
        a_prior, a_emit = self.from_h(out[:, 0]).chunk(2, dim=-1)
        g_prior = F.linear(state["enc_z"], self.from_z_prev.weight[: self.config.latent_size])
        mu_p, sd_p = normal_params(self.prior_out(F.relu(a_prior + g_prior)))
        z = mu_p + sd_p * torch.randn(mu_p.shape, generator=generator, dtype=mu_p.dtype, device=mu_p.device)
        enc_z = self.latent_enc(z)
        x = self.emission.sample(self.emission(F.relu(a_emit + self.emission_z(enc_z))), generator)
        return {"enc_z": enc_z, "z": z, "h": h[0], "c": c[0]}, x
