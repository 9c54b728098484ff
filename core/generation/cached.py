"""The cached stepper (Paine et al. 2016): per-layer ring buffers of past layer inputs, O(L) per sample.

`prime_rings` computes what every ring and the input-token window hold after a prefix, once, for
the cached, graph and fused steppers alike; each copies it into its own memory layout.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from core.conditioning import Cond
from core.generation.stepper import SamplingLoop, check_prime, model_device, register_stepper
from core.models.wavenet import WaveNet


@register_stepper("wavenet", "cached")
class CachedStepper(SamplingLoop):
    """Per-layer ring buffers of past layer inputs: O(L) work per sample, independent of R.

    Layer l keeps its last S_l = (K-1) d_l inputs in a ring (S_l, B, C_res). At time t every
    past tap (t - j d_l, j >= 1) of every layer is already known, so one batched matmul
    computes all their contributions before the layers run; each layer then adds only its
    current input's tap, its gate and its residual. The skips of all layers are one matmul.
    """

    def __init__(self, model: WaveNet, batch: int, cond: Cond | None = None, seed: int | None = None):
        c = model.config
        self.model, self.batch, self.cond = model, batch, cond
        self.q, self.k_in, self.k, self.t = c.quantization_levels, c.input_kernel_size, c.kernel_size, 0
        dev, dtype = model_device(model), next(model.parameters()).dtype
        self._init_sampling(seed, dev)
        self.input_tables = [model.input_table(k).detach() for k in range(self.k_in)]
        self.input_bias = model.input_conv.bias.detach()
        # Shifted tokens feeding the input conv; Q+1 is the zero padding row.
        self.tokens = torch.full((batch, self.k_in), self.q + 1, dtype=torch.long, device=dev)
        self.dilations = list(c.dilations)
        self.sizes = [(self.k - 1) * d for d in self.dilations]
        self.bufs = [torch.zeros(size, batch, c.residual_channels, device=dev, dtype=dtype) for size in self.sizes]
        convs = [layer.conv.weight.detach() for layer in model.layers]  # each (2C, C_res, K); tap K-1 is "now"
        self.w_now = [w[:, :, -1].t().contiguous() for w in convs]  # (C_res, 2C)
        self.w_past = torch.stack([  # (L, (K-1)*C_res, 2C): tap K-1-j reads t - j*d, j = 1..K-1
            torch.cat([w[:, :, self.k - 1 - j].t() for j in range(1, self.k)]) for w in convs
        ]).contiguous()
        self.b_conv = torch.stack([layer.conv.bias.detach() for layer in model.layers]).unsqueeze(1)  # (L, 1, 2C)
        outs = [(layer.out.weight.detach()[:, :, 0].t(), layer.out.bias.detach(), layer.residual_channels)
                for layer in model.layers]
        self.res = [(w[:, :r].contiguous(), b[:r]) if r else None for w, b, r in outs]  # (C_dil, C_res)
        self.w_skip = torch.cat([w[:, r:] for w, _, r in outs]).contiguous()  # (L*C_dil, C_skip)
        self.b_skip = sum(b[r:] for _, b, r in outs)
        self.head = [(m.weight.detach()[:, :, 0].t().contiguous(), m.bias.detach())
                     for m in model.head if isinstance(m, torch.nn.Conv1d)]
        with torch.no_grad():  # the class part is constant over time
            self.class_cond = model.class_conditioning(cond.classes if cond is not None else None)
        if model.local_proj is not None:
            self.local_w = model.local_proj.weight.detach()[:, :, 0].t().contiguous()  # (C_local, L*2C)
            self.local_b = model.local_proj.bias.detach()

    rank = 1  # default_method prefers higher ranks among the usable steppers

    @staticmethod
    def unusable(model: torch.nn.Module) -> str | None:
        return None

    def prime(self, tokens: torch.Tensor, logits: bool = True) -> torch.Tensor | None:
        """tokens (B, P): one conv forward fills every ring buffer -> logits (B, Q, P); without
        `logits` the forward covers only the last R tokens (prime_forward) and returns None."""
        check_prime(self, tokens)
        primed = prime_rings(self.model, tokens, self.cond, logits)
        for buf, (slots, values) in zip(self.bufs, primed.rings, strict=True):
            buf[slots] = values
        self.tokens[:, 1:] = primed.input_tokens
        self.t, self.prev = tokens.shape[1], tokens[:, -1]
        return primed.logits

    def step(self, prev: torch.Tensor | None) -> torch.Tensor:
        """prev (B,) = x_{t-1} (None at t=0) -> logits (B, Q) of x_t."""
        if prev is None:
            prev = torch.full((self.batch,), self.q, dtype=torch.long, device=self.tokens.device)
        logits = self._step(prev)
        self.t += 1
        return logits

    def _step(self, prev: torch.Tensor) -> torch.Tensor:
        """One step from x_{t-1}: every state change in place, so core.generation.cuda_graph can capture it."""
        n_layers = len(self.bufs)
        self.tokens.copy_(torch.cat([self.tokens[:, 1:], prev.view(-1, 1)], dim=1))
        h = self.input_bias + sum(table[self.tokens[:, k]] for k, table in enumerate(self.input_tables))
        past = self._read_past()  # (L*(K-1), B, C_res)
        if self.k > 2:
            past = past.view(n_layers, self.k - 1, self.batch, -1).transpose(1, 2)
        z_past = torch.baddbmm(self.b_conv, past.reshape(n_layers, self.batch, -1), self.w_past)  # (L, B, 2C)
        cond = self._cond_now()
        if cond is not None:
            z_past = z_past + cond.transpose(0, 1)
        gates = []
        for i in range(n_layers):
            self._write(i, h)
            a, g = torch.addmm(z_past[i], h, self.w_now[i]).chunk(2, dim=1)
            gate = torch.tanh(a) * torch.sigmoid(g)  # (B, C_dil)
            gates.append(gate)
            if self.res[i] is not None:
                w_res, b_res = self.res[i]
                h = torch.addmm(h, gate, w_res).add_(b_res)
        skip = torch.addmm(self.b_skip, torch.cat(gates, dim=1), self.w_skip)  # (B, C_skip)
        (w1, b1), (w2, b2) = self.head
        return torch.addmm(b2, torch.relu(torch.addmm(b1, torch.relu(skip), w1)), w2)

    def _read_past(self) -> torch.Tensor:
        """Every past tap of every layer at time t: (L*(K-1), B, C_res), layer-major."""
        t = self.t
        return torch.stack([buf[(t - j * d) % size] for buf, d, size in zip(self.bufs, self.dilations, self.sizes,
                                                                             strict=True)
                            for j in range(1, self.k)])

    def _write(self, layer: int, h: torch.Tensor) -> None:
        """Layer `layer`'s input at time t, h (B, C_res), takes its ring's oldest slot."""
        self.bufs[layer][self.t % self.sizes[layer]] = h

    def _local_frame(self) -> int:
        """The local-conditioning frame of the current step; ValueError past the last frame."""
        frame, frames = self.t // self.model.config.local_hop, self.cond.local.shape[2]
        if frame >= frames:
            raise ValueError(f"local conditioning covers {frames} frames; step {self.t} needs more")
        return frame

    def _cond_now(self) -> torch.Tensor | None:
        """Conditioning for the current step, (B, L, 2C), or None."""
        total = self.class_cond
        if self.model.local_proj is not None:
            g = torch.addmm(self.local_b, self.cond.local[:, :, self._local_frame()], self.local_w)
            total = g if total is None else total + g
        return None if total is None else total.view(self.batch, len(self.bufs), -1)


class PrimedRings(NamedTuple):
    """What a prefix leaves in the cached state, in slot order, for any stepper to copy into its layout.

    rings:        per layer, (slots (n_l,) long, values (n_l, B, C_res)): ring slot (pos mod S_l) of
                  layer l's input at each of the last n_l = min(P, S_l) positions
    input_tokens: (B, K_in - 1) the shifted tokens the next step's input conv reads besides the new one
                  (Q + 1, the zero-padding row, before the start)
    logits:       (B, Q, P), or None when not asked for
    """

    rings: list[tuple[torch.Tensor, torch.Tensor]]
    input_tokens: torch.Tensor
    logits: torch.Tensor | None


def prime_rings(model: WaveNet, tokens: torch.Tensor, cond: Cond | None, logits: bool) -> PrimedRings:
    """The cached state after the prefix tokens (B, P), from one conv forward (prime_forward)."""
    p, q, k_in = tokens.shape[1], model.config.quantization_levels, model.config.input_kernel_size
    with torch.no_grad():
        inputs, a, out = prime_forward(model, tokens, cond, logits)
    rings = []
    for d, h in zip(model.config.dilations, inputs, strict=True):
        size = (model.config.kernel_size - 1) * d
        pos = torch.arange(max(0, p - size), p, device=tokens.device)
        rings.append((pos % size, h[:, :, pos - a].permute(2, 0, 1)))
    # step() drops the oldest input token and appends the newest: the K_in - 1 kept are the last
    # shifted tokens [START, x_0, ..., x_{P-2}], padded on the left where P < K_in - 1.
    shifted = torch.cat([torch.full_like(tokens[:, :1], q), tokens[:, :-1]], dim=1)
    kept = torch.full((tokens.shape[0], k_in - 1), q + 1, dtype=torch.long, device=tokens.device)
    n = min(p, k_in - 1)
    if n:
        kept[:, k_in - 1 - n :] = shifted[:, p - n :]
    return PrimedRings(rings, kept, out)


def prime_forward(model: WaveNet, tokens: torch.Tensor, cond: Cond | None,
                  logits: bool) -> tuple[list[torch.Tensor], int, torch.Tensor | None]:
    """The one conv forward of prime(): (each layer's input (B, C_res, P - a) over tokens[:, a:], a,
    logits (B, Q, P) or None). With logits a = 0; without, a = max(0, P - R): the last R tokens
    are all that filling the rings needs.

    Layer l's ring holds its inputs at the last S_l = (K-1) d_l positions, and the input at q
    depends on the shifted inputs q - D_l .. q, D_l = K_in - 1 + sum_{j<l} S_j: none earlier than
    P - R + 1. A forward over tokens a = P - R .. P - 1 (at offset a, for local conditioning)
    gets all of them right; only its first shifted input, the start token in place of x_{a-1},
    differs from the full forward, and nothing the rings hold depends on it.
    """
    a = 0 if logits else max(0, tokens.shape[1] - model.receptive_field)
    skip, inputs = model.trunk(tokens[:, a:], cond, offset=a, keep_inputs=True)
    return inputs, a, model.head(skip) if logits else None
