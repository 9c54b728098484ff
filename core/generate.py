"""Sampling loops: naive (recompute the receptive field each step) and cached (Paine et al. 2016).

All are *steppers* with one protocol, so tests can compare them logit by logit:

    stepper.prime(tokens)  # (B, P) known prefix, run through the conv forward once -> logits (B, Q, P)
    stepper.prime(tokens, logits=False)  # the same state from the last R tokens only -> None
    stepper.step(prev)     # prev (B,) = the previous token (None at t=0) -> logits (B, Q) for x_t
    stepper.sample(n, temperature, top_k, observed)  # the next n tokens (B, n), sampled in a loop

The third method, "fused" (core/fused.py), runs the cached step and the sampling in one
compiled C kernel. `generate()` drives a stepper and yields chunks of tokens. A stepper reads the model's
weights and keeps every bit of state itself: the model is never mutated, so one loaded model
serves any number of concurrent generators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from core.conditioning import Cond
from core.models.wavenet import WaveNet
from core.sampling import check_sampling_args, sample

METHODS = ("naive", "cached", "fused", "graph")
CPU_METHODS = ("naive", "cached", "fused")


class _SamplingLoop:
    """`sample()` for the PyTorch steppers: step, draw with core.sampling, force observed values."""

    def _init_sampling(self, seed: int | None, device: torch.device) -> None:
        self.gen = torch.Generator(device=device)
        if seed is None:
            self.gen.seed()
        else:
            self.gen.manual_seed(seed)
        self.prev: torch.Tensor | None = None  # the last token, input of the next step

    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None,
               observed: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The next n tokens, LongTensor (B, n); observed = (mask (B, n) bool, values (B, n))."""
        out = []
        for i in range(n):
            x = sample(self.step(self.prev), temperature, top_k, self.gen)
            if observed is not None:
                x = torch.where(observed[0][:, i], observed[1][:, i], x)
            out.append(x)
            self.prev = x
        return torch.stack(out, dim=1)


class NaiveStepper(_SamplingLoop):
    """Each step runs the full forward over the last R+1 tokens: O(R) work per sample.

    `history` keeps only the last R known tokens, x_{t-R} .. x_{t-1}.
    """

    def __init__(self, model: WaveNet, batch: int, cond: Cond | None = None, seed: int | None = None):
        self.model, self.batch, self.cond = model, batch, cond
        self.history = torch.zeros(batch, 0, dtype=torch.long, device=_device(model))
        self.t = 0
        self._init_sampling(seed, _device(model))

    def prime(self, tokens: torch.Tensor, logits: bool = True) -> torch.Tensor | None:
        """tokens (B, P) -> logits (B, Q, P) (None if not `logits`); the next step() takes prev = tokens[:, -1]."""
        _check_prime(self, tokens)
        self.history = tokens[:, :-1][:, -self.model.receptive_field :]
        self.t, self.prev = tokens.shape[1], tokens[:, -1]
        return self.model(tokens, self.cond) if logits else None

    def step(self, prev: torch.Tensor | None) -> torch.Tensor:
        """prev (B,) = x_{t-1} (None at t=0) -> logits (B, Q) of x_t."""
        r = self.model.receptive_field
        if self.t > 0:
            self.history = torch.cat([self.history, prev.view(-1, 1)], dim=1)[:, -r:]
        start = max(0, self.t - r)  # the absolute position of history[:, 0]
        # The last position of the window is x_t itself: a placeholder the logits never see.
        window = F.pad(self.history, (0, 1))
        logits = self.model(window, self.cond, offset=start)[:, :, -1]
        self.t += 1
        return logits


class CachedStepper(_SamplingLoop):
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
        dev, dtype = _device(model), next(model.parameters()).dtype
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

    def prime(self, tokens: torch.Tensor, logits: bool = True) -> torch.Tensor | None:
        """tokens (B, P): one conv forward fills every ring buffer -> logits (B, Q, P); without
        `logits` the forward covers only the last R tokens (prime_forward) and returns None."""
        _check_prime(self, tokens)
        p = tokens.shape[1]
        inputs, a, out = prime_forward(self.model, tokens, self.cond, logits)
        for buf, size, h in zip(self.bufs, self.sizes, inputs, strict=True):
            for pos in range(max(0, p - size), p):
                buf[pos % size] = h[:, :, pos - a]
        shifted = torch.cat([torch.full_like(tokens[:, :1], self.q), tokens[:, :-1]], dim=1)
        # step() drops slot 0 and appends the next token: slots 1.. hold the last K_in - 1.
        for j in range(1, self.k_in):
            pos = p - self.k_in + j
            if pos >= 0:
                self.tokens[:, j] = shifted[:, pos]
        self.t, self.prev = p, tokens[:, -1]
        return out

    def step(self, prev: torch.Tensor | None) -> torch.Tensor:
        """prev (B,) = x_{t-1} (None at t=0) -> logits (B, Q) of x_t."""
        if prev is None:
            prev = torch.full((self.batch,), self.q, dtype=torch.long, device=self.tokens.device)
        logits = self._step(prev)
        self.t += 1
        return logits

    def _step(self, prev: torch.Tensor) -> torch.Tensor:
        """One step from x_{t-1}: every state change in place, so core.cuda_graph can capture it."""
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


def default_method(model: WaveNet) -> str:
    """The fastest method for this model: on CUDA the cached step replayed from a CUDA graph; on
    the CPU the fused C kernel for a float32 WaveNet where it builds (bench/generation.py: over
    20x the cached path at batch 1, about 8x at batch 16); else the PyTorch cached path (MPS,
    other dtypes, no C compiler or no AVX2)."""
    from core.fused import supports

    if _device(model).type == "cuda":
        return "graph"
    return "fused" if supports(model) else "cached"


def make_stepper(method: str, model: WaveNet, batch: int, cond: Cond | None = None, seed: int | None = None):
    """A stepper for `method` (one of METHODS, or "auto" = default_method)."""
    if method == "auto":
        method = default_method(model)
    if method == "naive":
        return NaiveStepper(model, batch, cond, seed)
    if method == "cached":
        return CachedStepper(model, batch, cond, seed)
    if method == "fused":
        from core.fused import FusedStepper

        return FusedStepper(model, batch, cond, seed)
    if method == "graph":
        if _device(model).type != "cuda":
            raise ValueError("the graph method replays a CUDA graph: it needs a model on a CUDA device")
        from core.cuda_graph import GraphStepper

        return GraphStepper(model, batch, cond, seed)
    raise ValueError(f"method must be one of {METHODS} or 'auto', got {method!r}")


def generate(
    model: WaveNet,
    n: int,
    *,
    prime: torch.Tensor | None = None,
    cond: Cond | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    observed: tuple[torch.Tensor, torch.Tensor] | None = None,
    batch: int = 1,
    seed: int | None = None,
    method: str = "auto",
    chunk_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[torch.Tensor]:
    """Sample n tokens after an optional prime; yields LongTensor chunks (B, <= chunk_size).

    prime:    (P,) or (B, P) known tokens; the output does not repeat them.
    cond:     Cond with classes (B,) or (1,) and/or local (B or 1, C_local, >= (P+n)/hop frames).
    observed: (mask, values), each (n,) or (B, n): where mask is True the token is forced to
              the value instead of sampled (infill); logits still condition on it.
    temperature 0 is greedy; seed makes a run bit-reproducible; progress(done, n) per chunk.
    method: "naive", "cached", "fused", "graph" (CUDA), or "auto" (`default_method`).
    """
    if not (isinstance(n, int) and n >= 0):
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if not (isinstance(batch, int) and batch >= 1):
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    check_sampling_args(temperature, top_k)
    dev = _device(model)
    prime = _batched(prime, batch, "prime", dev) if prime is not None else None
    if prime is not None and prime.shape[1] == 0:
        prime = None
    if observed is not None:
        mask = _batched(observed[0], batch, "observed mask", dev).bool()
        values = _batched(observed[1], batch, "observed values", dev)
        if mask.shape[1] != n or values.shape[1] != n:
            raise ValueError(f"observed mask and values need n={n} columns, got {mask.shape[1]} and {values.shape[1]}")
    cond = _batched_cond(cond, batch)
    stepper = make_stepper(method, model, batch, cond, seed)
    if prime is not None:
        with torch.inference_mode():
            stepper.prime(prime, logits=False)
    done = 0
    while done < n:
        m = min(chunk_size, n - done)
        # Grad mode is thread-local: enter it per chunk, never across a yield.
        with torch.inference_mode():
            obs = (mask[:, done : done + m], values[:, done : done + m]) if observed is not None else None
            chunk = stepper.sample(m, temperature, top_k, obs)
        done += m
        if progress is not None:
            progress(done, n)
        yield chunk.clone()


def generate_all(model: WaveNet, n: int, **kwargs) -> torch.Tensor:
    """`generate` collected into one LongTensor (B, n)."""
    chunks = list(generate(model, n, **kwargs))
    batch = kwargs.get("batch", 1)
    return torch.cat(chunks, dim=1) if chunks else torch.zeros(batch, 0, dtype=torch.long)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


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


def _check_prime(stepper, tokens: torch.Tensor) -> None:
    if stepper.t != 0:
        raise ValueError("prime() must come before the first step()")
    if tokens.dim() != 2 or tokens.shape[0] != stepper.batch or tokens.shape[1] == 0:
        raise ValueError(f"prime tokens must be (B={stepper.batch}, P>0), got {tuple(tokens.shape)}")


def _batched(x, batch: int, name: str, device) -> torch.Tensor:
    """(T,) or (1, T) or (B, T) -> (B, T) on device."""
    x = torch.as_tensor(x, device=device)
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2 or x.shape[0] not in (1, batch):
        raise ValueError(f"{name} must be (T,), (1, T) or (batch={batch}, T), got {tuple(x.shape)}")
    return x.expand(batch, -1).contiguous()


def _batched_cond(cond: Cond | None, batch: int) -> Cond | None:
    if cond is None:
        return None
    classes, local = cond.classes, cond.local
    if classes is not None:
        classes = torch.as_tensor(classes, dtype=torch.long).reshape(-1)
        if classes.shape[0] not in (1, batch):
            raise ValueError(f"Cond.classes must have 1 or batch={batch} entries, got {classes.shape[0]}")
        classes = classes.expand(batch).contiguous()
    if local is not None:
        if local.dim() == 2:
            local = local.unsqueeze(0)
        if local.shape[0] not in (1, batch):
            raise ValueError(f"Cond.local must have batch 1 or {batch}, got {local.shape[0]}")
        local = local.expand(batch, -1, -1).contiguous()
    return Cond(classes=classes, local=local)
