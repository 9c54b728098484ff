"""Recurrent cells (rnn, gru, lstm) with optional recurrent batch normalisation, and feed-forward nets.

Every transition projects a list of terms (its own output and whatever it reads) and sums them:

    use_bn False:  W [x_1; ...; x_n] + b                      (one matmul over the concatenation)
    use_bn True:   BN_1(W_1 x_1) + ... + BN_n(W_n x_n) + b     (Cooijmans et al. 2016: each term
                                                               normalised on its own, gain 0.1)

Batch normalisation keeps running statistics; `batch_stats` says whether a call normalises with the
batch's statistics (True: training, and then updates the running ones; FROZEN: the same without the
update, for recomputing a checkpointed forward) or with the running ones (False: evaluation and
generation, where the batch may be one row). No call mutates anything else, so a generator can run a
shared model with batch_stats=False.

State is a tuple of tensors, each (B, size); `output(state)` is what other layers and the readout see.

    rnn:   h' = act(proj([h, inputs]))
    gru:   r = sigmoid(proj_r([h, inputs]) - 1);  g, z = proj_gz([r * h, inputs])
           h' = (1 - sigmoid(z)) h + sigmoid(z) act(g)                    (BN(h') with use_bn)
    lstm:  i, j, f, o = proj([h, inputs]);  c' = sigmoid(f + 1) c + sigmoid(i) act(j)
           (c' = BN(c') with use_bn);  h' = sigmoid(o) act(c')
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

CELLS: tuple[str, ...] = ("rnn", "gru", "lstm")
ACTIVATIONS = {"identity": lambda x: x, "elu": F.elu, "tanh": torch.tanh}

State = tuple[torch.Tensor, ...]
FROZEN = "frozen"  # batch_stats: normalise with the batch's statistics, leave the running ones alone


class BatchNorm(nn.Module):
    """Batch normalisation with statistics over the batch at each time step (Cooijmans et al. 2016).

    x (B, D) is one step, x (B, K, D) is K steps normalised each with its own batch statistics, so a segment
    gives the same numbers whole or in blocks. The running statistics move once per step by `momentum`
    (K steps at once in closed form); they normalise when batch_stats is False or the batch is one row.
    """

    def __init__(self, size: int, gain: float = 0.1, shift: bool = True, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((size,), gain))
        self.beta = nn.Parameter(torch.zeros(size)) if shift else None
        self.register_buffer("running_mean", torch.zeros(size))
        self.register_buffer("running_var", torch.ones(size))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor, batch_stats: bool | str) -> torch.Tensor:
        """x (B, D) or (B, K, D) -> the same shape."""
        if batch_stats is False or x.shape[0] == 1:
            mean, var = self.running_mean, self.running_var
        else:
            mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)
            if batch_stats is True:
                self._update(mean.detach(), var.detach() * x.shape[0] / (x.shape[0] - 1))
        y = (x - mean) * torch.rsqrt(var + self.eps) * self.gamma
        return y if self.beta is None else y + self.beta

    @torch.no_grad()
    def _update(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """mean, var (D,) or (K, D): K steps of r <- (1 - m) r + m s_k, in closed form."""
        m = self.momentum
        mean, var = mean.reshape(-1, mean.shape[-1]), var.reshape(-1, var.shape[-1])
        k = mean.shape[0]
        w = (m * (1 - m) ** torch.arange(k - 1, -1, -1, dtype=mean.dtype, device=mean.device)).view(-1, 1)
        self.running_mean.mul_((1 - m) ** k).add_((w * mean).sum(dim=0))
        self.running_var.mul_((1 - m) ** k).add_((w * var).sum(dim=0))


class Projection(nn.Module):
    """Sum of linear projections of several terms (..., in_k) -> (..., out), batch-normalised per term if use_bn."""

    def __init__(self, in_sizes: Sequence[int], out: int, use_bn: bool):
        super().__init__()
        self.use_bn = use_bn
        if use_bn:
            self.weights = nn.ModuleList(nn.Linear(n, out, bias=False) for n in in_sizes)
            self.norms = nn.ModuleList(BatchNorm(out, shift=False) for _ in in_sizes)
            self.bias = nn.Parameter(torch.zeros(out))
        else:
            self.linear = nn.Linear(sum(in_sizes), out)

    def forward(self, terms: Sequence[torch.Tensor], batch_stats: bool | str) -> torch.Tensor:
        if not self.use_bn:
            return self.linear(torch.cat(list(terms), dim=-1))
        out = self.bias
        for w, norm, x in zip(self.weights, self.norms, terms, strict=True):
            out = out + norm(w(x), batch_stats)
        return out


class FeedForward(nn.Module):
    """Layers of proj -> ELU (the seed's input and output nets): (B, [K,] in) -> (B, [K,] sizes[-1]), or identity."""

    def __init__(self, in_size: int, sizes: Sequence[int], use_bn: bool):
        super().__init__()
        dims = [in_size, *sizes]
        self.layers = nn.ModuleList(Projection([a], b, use_bn) for a, b in zip(dims, dims[1:], strict=False))
        self.out_size = dims[-1]

    def forward(self, x: torch.Tensor, batch_stats: bool | str) -> torch.Tensor:
        for layer in self.layers:
            x = F.elu(layer([x], batch_stats))
        return x


class Cell(nn.Module):
    """One recurrent layer of `size` units reading terms of `in_sizes`."""

    def __init__(self, kind: str, size: int, in_sizes: Sequence[int], activation: str, use_bn: bool):
        super().__init__()
        self.kind, self.size, self.act = kind, size, ACTIVATIONS[activation]
        terms = [size, *in_sizes]
        if kind == "rnn":
            self.proj = Projection(terms, size, use_bn)
        elif kind == "gru":
            self.proj_r = Projection(terms, size, use_bn)
            self.proj_gz = Projection(terms, 2 * size, use_bn)
        else:
            self.proj = Projection(terms, 4 * size, use_bn)
        self.norm = BatchNorm(size) if use_bn and kind != "rnn" else None

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.size, self.size) if self.kind == "lstm" else (self.size,)

    def zero_state(self, batch: int, device=None, dtype=None) -> State:
        return tuple(torch.zeros(batch, n, device=device, dtype=dtype) for n in self.state_sizes)

    @staticmethod
    def output(state: State) -> torch.Tensor:
        """The (B, size) part of the state other layers read: h (the last tensor)."""
        return state[-1]

    def forward(self, inputs: Sequence[torch.Tensor], state: State, batch_stats: bool | str) -> State:
        """inputs: the terms this layer reads, each (B, in_k); state -> the new state."""
        h = state[-1]
        if self.kind == "rnn":
            return (self.act(self.proj([h, *inputs], batch_stats)),)
        if self.kind == "gru":
            r = torch.sigmoid(self.proj_r([h, *inputs], batch_stats) - 1.0)
            g, z = self.proj_gz([r * h, *inputs], batch_stats).chunk(2, dim=-1)
            z = torch.sigmoid(z)
            h = (1 - z) * h + z * self.act(g)
            return (self.norm(h, batch_stats) if self.norm is not None else h,)
        i, j, f, o = self.proj([h, *inputs], batch_stats).chunk(4, dim=-1)
        c = torch.sigmoid(f + 1.0) * state[0] + torch.sigmoid(i) * self.act(j)
        if self.norm is not None:
            c = self.norm(c, batch_stats)
        return c, torch.sigmoid(o) * self.act(c)
