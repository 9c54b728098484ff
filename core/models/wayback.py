"""Multi-scale recurrent nets trained by truncated backprop ("waybackprop", the wayback seed).

Read top to bottom: the config (the seed's hyperparameters, with its names and meanings), the chunk
embedding and the chunk head, the network.

Tokens are mu-law codes in [0, Q), Q = 2^bit_depth. Time runs in chunks of c = chunk_size samples;
one recurrent step consumes one chunk. The state carries the previous chunk (c start symbols,
index Q, at the start of a stream), so a segment's logits at position t are a function of x_{<t}
and the state, the first sample of a stream is modelled too, and consecutive segments need not
overlap: the reference's one-element overlap lives in the carried state.

    step k:   e_k = input_net(previous chunk)                               (B, E)
              the layers due at k update (core/models/wayback_schedule.py), each reading its own
              state, e_k (bottom layer), and the layers below and above it (vskip: all others)
    chunk k:  o_k = output_net([h_0; ...; h_{L-1}])                         (B, D)
              x_{kc+j} ~ softmax(V_j elu(A_j o_k + sum_{i<j} U_ij[x_{kc+i}]))  j = 0 .. c-1

The chunk head is the seed's "small stateless autoregressive model conditioned on the recurrent
state": the distribution still factorises sample by sample.

Truncation: layer i's gradient is cut every boundaries[i] of its own steps (stack: every segment),
exactly as `Schedule.reach` says; `forward` does the cutting, so one backward per segment is
truncated backprop through time. The cuts are positions in the stream: segments must start on a
multiple of the schedule's `segment_steps` (core/data/segments.py cuts them so).

Memory: `nll` (the training loss's path) can run the segment in blocks of the bottom layer's span
under activation checkpointing, the loss inside each block: the graph keeps each block's first state
and its per-sample losses, and the backward recomputes one block at a time. So a segment holds about
one bottom-layer block of activations (boundaries[0] steps) plus a few states per block, not the
whole segment: the seed's "constant memory per layer" (stack: one block, the segment). It costs one
more forward (about 1.5-2x the step time on a CPU, where these models are small and overhead-bound),
so by default it is on where memory is the limit, on an accelerator, and off on the CPU.

`unroll_layer_count` is accepted and ignored: it was a TensorFlow workaround (stop the gradient
between static unrolls); here every layer is cut where its boundary says.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from core.models.recurrent_cells import ACTIVATIONS, CELLS, FROZEN, BatchNorm, Cell, FeedForward, Projection, State
from core.models.registry import register
from core.models.wayback_schedule import Schedule, check_schedule
from core.validation import is_int, need


@dataclass
class WaybackConfig:
    sampling_frequency: int = 44100  # Hz; audio is resampled to it
    bit_depth: int = 8  # amplitude resolution: Q = 2^bit_depth mu-law levels (the seed's data_dim)
    layout: str = "stack"  # "stack" (every layer every step) or "wayback" (layer i every P_i steps)
    cell: str = "lstm"  # recurrent transition: "rnn", "gru" or "lstm"
    activation: str = "tanh"  # inside the transition: "identity", "elu" or "tanh"
    use_bn: bool = False  # recurrent batch normalisation (per projected term, gain 0.1)
    vskip: bool = False  # each layer's transition reads the state of every other layer
    segment_length: int | None = None  # samples per truncated-backprop segment; None = chunk_size x segment_steps
    chunk_size: int = 1  # samples per recurrent step, modelled by the chunk head
    layer_sizes: list[int] = field(default_factory=lambda: [1000])  # units per recurrent layer, bottom to top
    periods: list[int] | None = None  # wayback: layer i updates every periods[0] x ... x periods[i] steps
    boundaries: list[int] = field(default_factory=lambda: [100])  # own steps each layer backprops through
    unroll_layer_count: int = 0  # accepted and ignored (a TensorFlow workaround in the seed)
    carry: bool = True  # False: a layer restarts from the layer above (learned map) each cycle of it
    io_sizes: list[int] = field(default_factory=lambda: [512])  # layers of the input and output nets

    def __post_init__(self) -> None:
        need(is_int(self.sampling_frequency) and self.sampling_frequency >= 1,
             f"sampling_frequency must be an integer number of Hz >= 1, got {self.sampling_frequency!r}")
        need(is_int(self.bit_depth) and 1 <= self.bit_depth <= 16,
             f"bit_depth must be an integer in [1, 16] (2^bit_depth levels), got {self.bit_depth!r}")
        need(self.cell in CELLS, f"cell must be one of {CELLS}, got {self.cell!r}")
        need(self.activation in ACTIVATIONS,
             f"activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}")
        for name in ("use_bn", "vskip", "carry"):
            need(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("layer_sizes", "io_sizes", "boundaries"):
            v = getattr(self, name)
            need(isinstance(v, (list, tuple)), f"{name} must be a list of integers, got {v!r}")
            setattr(self, name, list(v))
        need(len(self.layer_sizes) >= 1, "layer_sizes must name at least one layer")
        for name in ("layer_sizes", "io_sizes", "boundaries"):
            for i, n in enumerate(getattr(self, name)):
                need(is_int(n) and n >= 1, f"{name}[{i}] must be an integer >= 1, got {n!r}")
        depth = len(self.layer_sizes)
        need(len(self.boundaries) == depth,
             f"boundaries has {len(self.boundaries)} entries for {depth} layers (layer_sizes): give one per layer")
        if self.periods is None:
            self.periods = [1] * depth
        need(isinstance(self.periods, (list, tuple)) and len(self.periods) == depth,
             f"periods must be a list with one entry per layer ({depth}), got {self.periods!r}")
        self.periods = list(self.periods)
        check_schedule(self.layout, self.periods, self.boundaries, self.chunk_size)
        need(is_int(self.unroll_layer_count) and 0 <= self.unroll_layer_count <= depth,
             f"unroll_layer_count must be an integer in [0, {depth}], got {self.unroll_layer_count!r}")
        if self.unroll_layer_count:
            warnings.warn("unroll_layer_count is ignored: it was a TensorFlow workaround; here each layer's "
                          "gradient is cut where its boundary says", UserWarning, stacklevel=3)
        unit = self.chunk_size * self.schedule.segment_steps
        if self.segment_length is None:
            self.segment_length = unit
        need(is_int(self.segment_length) and self.segment_length >= unit and self.segment_length % unit == 0,
             f"segment_length must be a multiple of chunk_size x the top layer's gradient span "
             f"({self.chunk_size} x {self.schedule.segment_steps} = {unit} samples), so that segments start and "
             f"end on cycle boundaries; got {self.segment_length!r}")

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.layout, tuple(self.periods), tuple(self.boundaries), self.chunk_size,
                        vskip=self.vskip, carry=self.carry)

    @property
    def quantization_levels(self) -> int:
        """Q = 2^bit_depth categories per sample."""
        return 2**self.bit_depth

    @property
    def codec(self) -> str:
        return "mulaw"

    @property
    def sample_rate(self) -> int:
        return self.sampling_frequency

    @property
    def longest_gradient_span(self) -> int:
        """Samples the longest gradient path spans: chunk_size x the top layer's span."""
        return self.schedule.longest_span_samples


@dataclass
class RecurrentState:
    """What carries over from one segment (or step) to the next.

    time:   steps taken, modulo the schedule's segment_steps (which every period and span divides)
    layers: per layer, its state tensors, each (B, size)
    last:   LongTensor (B, c), the chunk the next step reads (start symbols Q at a stream's start)
    """

    time: int
    layers: list[State]
    last: torch.Tensor

    def detach(self) -> RecurrentState:
        return RecurrentState(self.time, [tuple(t.detach() for t in s) for s in self.layers], self.last)

    def where(self, rows: torch.Tensor, other: RecurrentState) -> RecurrentState:
        """Rows where `rows` (B,) bool is True from `other`, the rest from self (same time)."""
        pick = rows.view(-1, 1)
        layers = [tuple(torch.where(pick, o, s) for s, o in zip(mine, theirs, strict=True))
                  for mine, theirs in zip(self.layers, other.layers, strict=True)]
        return RecurrentState(self.time, layers, torch.where(pick, other.last, self.last))


class ChunkEmbedding(nn.Module):
    """Input net: chunks of tokens (B, [K,] c) in [0, Q] -> (B, [K,] E).

    The first layer is a projection of the concatenated one-hots, done as a sum of embedding rows;
    the rest are io_sizes[1:]. Without io_sizes the chunk's one-hots themselves are the input.
    """

    def __init__(self, c: WaybackConfig):
        super().__init__()
        self.vocab = c.quantization_levels + 1  # + the start symbol
        self.chunk = c.chunk_size
        if c.io_sizes:
            first = c.io_sizes[0]
            self.table = nn.Embedding(self.chunk * self.vocab, first)
            nn.init.normal_(self.table.weight, std=1.0 / math.sqrt(self.chunk))
            self.norm = BatchNorm(first, shift=False) if c.use_bn else None
            self.bias = nn.Parameter(torch.zeros(first))
            self.rest = FeedForward(first, c.io_sizes[1:], c.use_bn)
            self.out_size = self.rest.out_size
        else:
            self.table = None
            self.out_size = self.chunk * self.vocab
            # Follows the model's dtype under .to(), so the one-hots match the cells' weights.
            self.register_buffer("onehot_like", torch.zeros(0), persistent=False)

    def forward(self, chunks: torch.Tensor, batch_stats: bool) -> torch.Tensor:
        if self.table is None:
            return F.one_hot(chunks, self.vocab).flatten(-2).to(self.onehot_like)
        offsets = torch.arange(self.chunk, device=chunks.device) * self.vocab
        z = self.table(chunks + offsets).sum(dim=-2)
        if self.norm is not None:
            z = self.norm(z, batch_stats)
        return self.rest(F.elu(z + self.bias), batch_stats)


class ChunkHead(nn.Module):
    """The stateless autoregressive model of one chunk: context (N, D), tokens (N, n) -> logits (N, n, Q).

    Position j (0 <= j < n <= c) reads the context and tokens[:, :j] only:
    logits_j = V_j elu(A_j o + sum_{i<j} U_ij[x_i]) + b_j.
    """

    def __init__(self, d: int, hidden: int, c: WaybackConfig):
        super().__init__()
        q, n = c.quantization_levels, c.chunk_size
        self.chunk, self.hidden = n, hidden
        self.context = nn.Linear(d, n * hidden)
        self.pairs = [(i, j) for j in range(n) for i in range(j)]
        self.tokens = nn.Parameter(torch.randn(len(self.pairs), q, hidden) / math.sqrt(max(1, n - 1)))
        self.out = nn.Parameter(torch.randn(n, hidden, q) / math.sqrt(hidden))
        self.bias = nn.Parameter(torch.zeros(n, q))

    def forward(self, o: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        a = self.context(o).view(-1, self.chunk, self.hidden)[:, :n]
        terms = [a[:, j] for j in range(n)]
        for p, (i, j) in enumerate(self.pairs):
            if j < n:
                terms[j] = terms[j] + self.tokens[p][tokens[:, i]]
        a = F.elu(torch.stack(terms, dim=1))
        return torch.einsum("njh,jhq->njq", a, self.out[:n]) + self.bias[:n]


@register("wayback")
class Wayback(nn.Module):
    config_class = WaybackConfig
    default_objective = "tbptt"  # core.training.tbptt: truncated backprop, the state carried across segments

    def __init__(self, config: WaybackConfig):
        super().__init__()
        self.config = c = config
        self.schedule = sched = c.schedule
        self.embed = ChunkEmbedding(c)
        sizes = c.layer_sizes
        self.cells = nn.ModuleList(
            Cell(c.cell, sizes[i], ([self.embed.out_size] if i == 0 else []) + [sizes[j] for j in sched.reads(i)],
                 c.activation, c.use_bn)
            for i in range(len(sizes))
        )
        # carry=False: layer i restarts from elu(proj(h_{i+1})), one output per state tensor.
        restarts = not c.carry and c.layout == "wayback"
        self.reinit = nn.ModuleList(
            Projection([sizes[i + 1]], sum(self.cells[i].state_sizes), c.use_bn) for i in range(len(sizes) - 1)
        ) if restarts else None
        self.output_net = FeedForward(sum(sizes), c.io_sizes, c.use_bn)
        self.head = ChunkHead(self.output_net.out_size, c.io_sizes[-1] if c.io_sizes else max(sizes), c)

    def zero_state(self, batch: int) -> RecurrentState:
        """The state at the start of a stream: zeros, and a chunk of start symbols to read first."""
        p = next(self.parameters())
        layers = [cell.zero_state(batch, p.device, p.dtype) for cell in self.cells]
        last = torch.full((batch, self.config.chunk_size), self.config.quantization_levels,
                          dtype=torch.long, device=p.device)
        return RecurrentState(0, layers, last)

    def forward(self, x: torch.Tensor, state: RecurrentState | None = None, batch_stats: bool | None = None,
                trace: list | None = None) -> tuple[torch.Tensor, RecurrentState]:
        """x (B, T) tokens, T a multiple of chunk_size -> (logits (B, Q, T), the state after x).

        logits[:, :, t] is a function of x_{<t} and `state` (None: a stream's start). batch_stats
        defaults to self.training. `trace`, if a list, receives (layer, step, output (B, size)) for
        every update, the tensors the rest of the graph uses (for gradient measurements).
        """
        state, chunks, inputs = self._chunks(x, state)
        bs = self.training if batch_stats is None else batch_stats
        h, time, layers = self.recur(self.embed(inputs, bs), state, bs, trace)
        logits = self.readout(h, chunks, bs).reshape(*x.shape, -1).transpose(1, 2)
        return logits, RecurrentState(time, layers, chunks[:, -1])

    def nll(self, x: torch.Tensor, state: RecurrentState | None = None, checkpointed: bool | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, RecurrentState]:
        """x (B, T) -> (-log p(x_t | x_<t, state) (B, T), argmax hits (B, T) bool, the state after x).

        The same numbers and gradients as cross-entropy over `forward`'s logits; with `checkpointed`
        (and gradients on) each block of the bottom layer's span is a checkpointed region whose
        activations are recomputed in the backward. None: checkpointed unless x is on the CPU (see the
        module docstring).
        """
        state, chunks, inputs = self._chunks(x, state)
        k = chunks.shape[1]
        if checkpointed is None:
            checkpointed = x.device.type != "cpu"
        block = self.schedule.spans[0] if checkpointed and torch.is_grad_enabled() else k
        sizes = [len(s) for s in state.layers]
        flat = [t for s in state.layers for t in s]
        nlls, hits = [], []
        for k0 in range(0, k, block):
            region = _Region(self, inputs[:, k0 : k0 + block], chunks[:, k0 : k0 + block], state.time + k0, sizes)
            nll, hit, *flat = checkpoint(region, *flat, use_reentrant=False) if block < k else region(*flat)
            nlls.append(nll)
            hits.append(hit)
        return (torch.cat(nlls, dim=1), torch.cat(hits, dim=1),
                RecurrentState((state.time + k) % self.schedule.segment_steps, _unflatten(flat, sizes), chunks[:, -1]))

    def _chunks(self, x: torch.Tensor, state: RecurrentState | None
                ) -> tuple[RecurrentState, torch.Tensor, torch.Tensor]:
        """Checked x (B, T) -> (state, chunks (B, K, c), the chunk each step reads (B, K, c))."""
        c = self.config
        if x.dim() != 2 or x.shape[1] == 0 or x.shape[1] % c.chunk_size:
            raise ValueError(f"x must be (B, T), T > 0 a multiple of chunk_size={c.chunk_size}, got {tuple(x.shape)}")
        if x.min() < 0 or x.max() >= c.quantization_levels:
            raise ValueError(f"tokens must be in [0, {c.quantization_levels}), got [{x.min()}, {x.max()}]")
        state = self.zero_state(x.shape[0]) if state is None else state
        chunks = x.view(x.shape[0], -1, c.chunk_size)
        return state, chunks, torch.cat([state.last.unsqueeze(1), chunks[:, :-1]], dim=1)

    def recur(self, e: torch.Tensor, state: RecurrentState, batch_stats: bool | str,
              trace: list | None = None) -> tuple[torch.Tensor, int, list[State]]:
        """Run the schedule over inputs e (B, K, E) -> (all layers' outputs after each step (B, K, sum sizes),
        time after, layer states after). Cuts each layer's gradient where the schedule says."""
        sched, layers = self.schedule, list(state.layers)
        outs = []
        for k in range(e.shape[1]):
            step = state.time + k
            for i in range(len(layers)):
                if sched.cut(i, step):
                    layers[i] = tuple(s.detach() for s in layers[i])
            for i in sched.updates(step):
                if sched.reinit(i, step):
                    z = F.elu(self.reinit[i]([Cell.output(layers[i + 1])], batch_stats))
                    layers[i] = tuple(z.split(self.cells[i].state_sizes, dim=-1))
                terms = [e[:, k]] if i == 0 else []
                for j in sched.reads(i):
                    h = Cell.output(layers[j])
                    terms.append(h if sched.read_live(i, j) else h.detach())
                layers[i] = self.cells[i](terms, layers[i], batch_stats)
                if trace is not None:
                    trace.append((i, step, Cell.output(layers[i])))
            outs.append(torch.cat([Cell.output(s) for s in layers], dim=-1))
        return torch.stack(outs, dim=1), (state.time + e.shape[1]) % sched.segment_steps, layers

    def readout(self, h: torch.Tensor, tokens: torch.Tensor, batch_stats: bool | str) -> torch.Tensor:
        """h (B, K, sum sizes) after each step, tokens (B, K, c) of the chunks they predict -> logits (B, K, c, Q)."""
        o = self.output_net(h, batch_stats)
        b, k, c = tokens.shape
        return self.head(o.reshape(b * k, -1), tokens.reshape(b * k, c)).view(b, k, c, -1)

    def step_context(self, state: RecurrentState) -> tuple[torch.Tensor, RecurrentState]:
        """One step on state.last with running statistics -> (h (B, sum sizes) for the chunk head, new state).

        The new state keeps `last`; the caller sets it once the chunk is known (for generation).
        """
        h, time, layers = self.recur(self.embed(state.last.unsqueeze(1), False), state, False)
        return h[:, 0], RecurrentState(time, layers, state.last)


class _Region:
    """One block of `Wayback.nll`: (layer state tensors at its start) -> (nll (B, n), hits (B, n), state tensors
    at its end). Its first call normalises with the batch's statistics and updates the running ones (in
    training); a checkpoint's recomputation of it uses the same batch statistics and updates nothing."""

    def __init__(self, model: Wayback, inputs: torch.Tensor, targets: torch.Tensor, time: int, sizes: list[int]):
        self.model, self.inputs, self.targets, self.time, self.sizes = model, inputs, targets, time, sizes
        self.calls = 0

    def __call__(self, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        bs = model.training and (FROZEN if self.calls else True)
        self.calls += 1
        b, k, c = self.targets.shape
        state = RecurrentState(self.time, _unflatten(list(flat), self.sizes), self.inputs[:, 0])
        h, _, layers = model.recur(model.embed(self.inputs, bs), state, bs)
        logits = model.readout(h, self.targets, bs)  # (B, K, c, Q)
        targets = self.targets.reshape(b * k * c)
        logits = logits.reshape(b * k * c, -1)
        nll = F.cross_entropy(logits, targets, reduction="none").view(b, k * c)
        hit = (logits.argmax(dim=-1) == targets).view(b, k * c)
        return (nll, hit, *[t for s in layers for t in s])


def _unflatten(flat: list[torch.Tensor], sizes: list[int]) -> list[State]:
    """The state tensors of all layers in one list -> one tuple per layer of sizes[i] tensors."""
    out, i = [], 0
    for n in sizes:
        out.append(tuple(flat[i : i + n]))
        i += n
    return out
