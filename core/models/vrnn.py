"""VRNN (Chung et al. 2015, "A Recurrent Latent Variable Model for Sequential Data"), as in FIVO.

Read top to bottom: the config, the network, one filtering step, one generative step.

The LSTM's input at step t is [enc(input_t), enc(z_{t-1})], input_t = x_{t-1} - mean, so the
latent path feeds the backbone and nothing but the first input can be computed ahead:

    h_t = LSTM([data_enc(input_t), latent_enc(z_{t-1})], h_{t-1})                   (R, H)
    prior      p(z_t | h_t)           = N(mu_p, sd_p),  MLP(h_t)                      (R, L)
    proposal   q(z_t | h_t, c_t)      = N(mu_p + offset, sd_q),  MLP([h_t, c_t])
               c_t = data_enc(x_t) (filtering) or a reverse LSTM over data_enc(x_t..x_T) (smoothing)
    emission   p(x_t | z_t, h_t)      = MLP([latent_enc(z_t), h_t]) (+ logit(mean) for Bernoulli)
    log_w      = log p(x_t | z_t, h_t) + log p(z_t | h_t) - log q(z_t | h_t, c_t)

The three first layers that read h_t (prior, proposal, emission) are one (H, 3H) matmul.
`encode` precomputes, for every t at once and per sequence (not per particle), the LSTM gates' term
that reads data_enc(input_t) (with both biases) and the proposal's c_t projection; a step adds the
gates' term that reads [enc(z_{t-1}), h_{t-1}] through one matmul with the LSTM's other weight
columns, joined once per run, and applies the LSTM cell's nonlinearities itself.
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
    init_lstm_,
    lstm_layer,
    normal_params,
    propose,
    reverse_lstm,
    split_steps,
    step_key,
)
from core.models.registry import register
from core.models.sequential import SHARED, FusedInputs


def lstm_cell(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM cell's nonlinearities (nn.LSTMCell's, gates in PyTorch's order i, f, g, o): gates (R, 4H), the
    previous cell c (R, H) -> (h, c) (R, H) each."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.addcmul(torch.sigmoid(f) * c, torch.sigmoid(i), torch.tanh(g))
    return torch.sigmoid(o) * torch.tanh(c), c


@dataclass
class VRNNConfig(LatentRNNConfig):
    """See LatentRNNConfig; a class of its own so a checkpoint's config picks the VRNN."""


@register("vrnn")
class VRNN(LatentRNN):
    """The VRNN of the FIVO paper with a filtering or smoothing proposal; implements core.models.sequential."""

    config_class = VRNNConfig

    def __init__(self, config: VRNNConfig):
        super().__init__(config)
        h, latent = config.latent_size, config.latent_size
        self.rnn = nn.LSTMCell(2 * h, h)
        init_lstm_(self.rnn.weight_ih, self.rnn.weight_hh, [self.rnn.bias_ih, self.rnn.bias_hh])
        # First layers reading h_t, fused: [prior hidden | proposal's h part | emission's h part].
        self.from_h = glorot_fused_(nn.Linear(h, 3 * h), [h, 2 * h, 2 * h])
        self.prior_out = glorot_(nn.Linear(h, 2 * latent))
        self.proposal_ctx = glorot_(nn.Linear(h, h, bias=False), 2 * h)  # c_t's part of the proposal's first layer
        self.proposal_out = glorot_(nn.Linear(h, 2 * latent))
        self.emission_z = glorot_(nn.Linear(h, h, bias=False), 2 * h)  # enc(z_t)'s part of the emission's first layer
        if config.proposal == "smoothing":
            self.reverse_rnn = lstm_layer(h, h)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> State:
        """x (B, T, D) targets, lengths (B,) -> context: x; per step "step/t" (B, 5H) = [the LSTM gates' term
        reading data_enc(input_t), biases included (4H) | the proposal's first-layer term reading c_t (H)];
        and "shared/recurrent" (2H, 4H), the gates' weights for [enc(z_{t-1}), h_{t-1}], transposed."""
        gates_in, c_term, recurrent = self._sequence_terms(x, lengths)
        return {"x": x, SHARED + "recurrent": recurrent, **self.shared_step_layers(from_h=self.from_h),
                **split_steps("step", torch.cat([gates_in, c_term], dim=-1))}

    def fused_filter_inputs(self, x: torch.Tensor, lengths: torch.Tensor) -> FusedInputs:
        """What core.inference.fused_filter runs: the LSTM backbone, seq = the gates' term reading data_enc(input_t)
        (B, T, 4H), c_term (B, T, H), and the step layers: "recurrent" (2H, 4H) and `encode`'s by name."""
        gates_in, c_term, recurrent = self._sequence_terms(x, lengths)
        layers = fused_layers(self.shared_step_layers(from_h=self.from_h))
        return FusedInputs(lstm=True, seq=gates_in, c_term=c_term, layers={"recurrent": recurrent, **layers})

    def _sequence_terms(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                               torch.Tensor]:
        """-> (the gates' term reading data_enc(input_t), biases included (B, T, 4H), the proposal's term reading
        c_t (B, T, H), the gates' weights for [enc(z_{t-1}), h_{t-1}] transposed (2H, 4H))."""
        self.check_x(x, lengths)
        h = self.config.latent_size
        encoded_x = self.data_enc(x)
        if self.config.proposal == "smoothing":
            encoded_x = reverse_lstm(self.reverse_rnn, encoded_x, lengths)
        rnn = self.rnn
        w_input, w_latent = rnn.weight_ih.split(h, dim=1)
        gates_in = F.linear(self.data_enc(self.inputs(x, lengths)), w_input, rnn.bias_ih + rnn.bias_hh)
        return gates_in, self.proposal_ctx(encoded_x), torch.cat([w_latent, rnn.weight_hh], dim=1).t()

    def zero_state(self, batch: int) -> State:
        """LSTM (h, c) (batch, H), enc_z (batch, H) the encoded previous latent (zeros), z (batch, L)."""
        w, size = self.from_h.weight, self.config.latent_size
        return {k: w.new_zeros(batch, size) for k in ("h", "c", "enc_z", "z")}

    def _backbone(self, state: State, enc_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """One LSTM step -> (h_t, c_t, [prior, proposal, emission] h-parts of their first layers)."""
        h, c = self.rnn(torch.cat([enc_input, state["enc_z"]], dim=-1), (state["h"], state["c"]))
        return h, c, self.from_h(h).chunk(3, dim=-1)

    def propose_and_weight(self, state: State, context: State, t: int,
                           eps: torch.Tensor | None = None) -> tuple[State, torch.Tensor]:
        """Draw z_t ~ q and weigh it: -> (new state, log_w (R,)). eps (R, L) fixes the noise (else randn)."""
        gates_in, c_term = context[step_key("step", t)].split([4 * self.config.latent_size,
                                                               self.config.latent_size], dim=-1)
        recurrent = torch.cat([state["enc_z"], state["h"]], dim=-1)
        h, c = lstm_cell(torch.addmm(gates_in, recurrent, context[SHARED + "recurrent"]), state["c"])
        a_prior, a_prop, a_emit = affine(h, context, "from_h").chunk(3, dim=-1)
        mu_p, sd_p = normal_params(affine(F.relu(a_prior), context, "prior"), 0.0)  # the 0.5s are in the biases
        z, log_ratio = propose(mu_p, sd_p, affine(F.relu(a_prop + c_term), context, "proposal"), eps, 0.0)
        enc_z = self.encode_latent(z, context)
        return {"h": h, "c": c, "enc_z": enc_z, "z": z}, self.weigh(context, t, a_emit, enc_z) + log_ratio

    def start_sampling(self, state: State, prefix: torch.Tensor) -> State:
        """The filter's state after `prefix` (B, P, D) -> the state `prior_step` continues from (the same)."""
        return state

    def prior_step(self, state: State, inputs: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[State, torch.Tensor]:
        """Generate one frame: inputs (R, D) centred previous frame -> (state, x_t (R, D)), z_t ~ prior."""
        h, c, (a_prior, _, a_emit) = self._backbone(state, self.data_enc(inputs))
        mu_p, sd_p = normal_params(self.prior_out(F.relu(a_prior)))
        z = mu_p + sd_p * torch.randn(mu_p.shape, generator=generator, dtype=mu_p.dtype, device=mu_p.device)
        enc_z = self.latent_enc(z)
        x = self.emission.sample(self.emission(F.relu(a_emit + self.emission_z(enc_z))), generator)
        return {"h": h, "c": c, "enc_z": enc_z, "z": z}, x

