"""A fused CPU generation loop: the whole cached WaveNet step, sampling included, in one numba kernel.

The PyTorch cached stepper spends most of each sample in Python and per-op dispatch (a few
dozen tiny ops per layer). Here one compiled function runs `n` steps for the whole batch with
preallocated buffers and no allocation per step:

    for each step t:
        h = input tables[tokens]                                  (B, C_res)
        for each layer l:
            z = b + cond + sum_j W_past_j h_l(t - j d_l) + W_now h   (B, 2C)   ring buffer reads
            g = tanh(z_a) * sigmoid(z_b)                             (B, C_dil)
            skip += g W_skip;  h += g W_res + b_res
        logits = head(skip)                                          (B, Q)
        x_t = sample(logits / temperature, top-k) or the observed value

The ring-buffer layout is the one of `CachedStepper` (slot = t mod (K-1) d_l), packed into one
array (B, sum_l S_l, C_res). Sampling is inverse-CDF on softmax(logits / T) with a per-row
SplitMix64 generator whose state lives in the stepper, so concurrent generators never share
random state; it draws from the same distribution as core.sampling, not the same numbers.
Compiled code is cached on disk (numba cache=True); `warm_up()` pays the first compile.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit

from core.generate import _check_prime
from core.models.wavenet import Cond, WaveNet


@njit(cache=True, inline="always")
def _uniform(state, b):
    """SplitMix64 step for row b -> float64 uniform in [0, 1)."""
    state[b] = state[b] + np.uint64(0x9E3779B97F4A7C15)
    z = state[b]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


ROWS_PER_BLOCK = 4  # rows a kernel call works on together: more and their activations fall out of L1
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_CORES, thread_name_prefix="fused")


@njit(cache=True, fastmath=True, nogil=True)
def _run(n, t0, prev, tokens, buf, offs, sizes, dils, kernel, in_tab, in_b, w_now, w_past, b_conv,
         w_res, b_res, has_res, w_skip, b_skip, w1, b1, w2, b2, cond, cond_per_step, obs_mask, obs_val,
         temperature, top_k, rng, out, logits_out, keep_logits):  # pragma: no cover - compiled
    batch, k_in = tokens.shape
    n_layers, c_res, c2 = w_now.shape
    c_dil = c2 // 2
    c_skip = w_skip.shape[2]
    c_head = w1.shape[1]
    q = w2.shape[1]
    h = np.empty((batch, c_res), np.float32)
    z = np.empty((batch, c2), np.float32)
    g = np.empty((batch, c_dil), np.float32)
    skip = np.empty((batch, c_skip), np.float32)
    hid = np.empty((batch, c_head), np.float32)
    logits = np.empty((batch, q), np.float32)
    probs = np.empty(q, np.float64)
    for i in range(n):
        t = t0 + i
        # Input layer: shift the token ring, then sum the K_in lookup-table rows.
        for b in range(batch):
            for k in range(k_in - 1):
                tokens[b, k] = tokens[b, k + 1]
            tokens[b, k_in - 1] = prev[b]
            for c in range(c_res):
                h[b, c] = in_b[c]
            for k in range(k_in):
                row = tokens[b, k]
                for c in range(c_res):
                    h[b, c] += in_tab[k, row, c]
            for c in range(c_skip):
                skip[b, c] = b_skip[c]
        ci = i if cond_per_step else 0
        # Every weight row is read once per step and applied to all B rows while it is in L1.
        for layer in range(n_layers):
            off, size, d = offs[layer], sizes[layer], dils[layer]
            for b in range(batch):
                for o in range(c2):
                    z[b, o] = b_conv[layer, o] + cond[b, ci, layer, o]
            for j in range(1, kernel):
                slot = off + (t - j * d) % size
                base = (j - 1) * c_res
                for c in range(c_res):
                    for b in range(batch):
                        v = buf[b, slot, c]
                        for o in range(c2):
                            z[b, o] += v * w_past[layer, base + c, o]
            for c in range(c_res):
                for b in range(batch):
                    v = h[b, c]
                    for o in range(c2):
                        z[b, o] += v * w_now[layer, c, o]
            # The oldest tap has been read: its slot now takes this step's input.
            slot = off + t % size
            for b in range(batch):
                for c in range(c_res):
                    buf[b, slot, c] = h[b, c]
                for o in range(c_dil):
                    g[b, o] = np.tanh(z[b, o]) / (1.0 + np.exp(-z[b, c_dil + o]))
            for o in range(c_dil):
                for b in range(batch):
                    v = g[b, o]
                    for c in range(c_skip):
                        skip[b, c] += v * w_skip[layer, o, c]
            if has_res[layer]:
                for b in range(batch):
                    for c in range(c_res):
                        h[b, c] += b_res[layer, c]
                for o in range(c_dil):
                    for b in range(batch):
                        v = g[b, o]
                        for c in range(c_res):
                            h[b, c] += v * w_res[layer, o, c]
        for b in range(batch):
            for c in range(c_head):
                hid[b, c] = b1[c]
        for s in range(c_skip):
            for b in range(batch):
                v = max(skip[b, s], 0.0)
                for c in range(c_head):
                    hid[b, c] += v * w1[s, c]
        for b in range(batch):
            for c in range(q):
                logits[b, c] = b2[c]
        for s in range(c_head):
            for b in range(batch):
                v = max(hid[b, s], 0.0)
                for c in range(q):
                    logits[b, c] += v * w2[s, c]
        for b in range(batch):
            if keep_logits:
                for c in range(q):
                    logits_out[b, i, c] = logits[b, c]
            if obs_mask[b, i]:
                x = obs_val[b, i]
            elif temperature == 0.0:
                x = np.argmax(logits[b])
            else:
                cut = -np.inf
                if 0 < top_k < q:
                    cut = np.sort(logits[b])[q - top_k]
                top = logits[b].max()
                total = 0.0
                for c in range(q):
                    p = np.exp((logits[b, c] - top) / temperature) if logits[b, c] >= cut else 0.0
                    probs[c] = p
                    total += p
                u = _uniform(rng, b) * total
                x = q - 1
                acc = 0.0
                for c in range(q):
                    acc += probs[c]
                    if u < acc and probs[c] > 0.0:
                        x = c
                        break
                while probs[x] == 0.0:  # u landed past the end by rounding: take the last allowed level
                    x -= 1
            out[b, i] = x
            prev[b] = x


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def supports(model: torch.nn.Module) -> bool:
    """Whether the fused kernel can run this model (a float32 WaveNet on the CPU)."""
    p = next(model.parameters())
    return getattr(model, "model_type", None) == "wavenet" and p.device.type == "cpu" and p.dtype == torch.float32


class FusedStepper:
    """The cached stepper's protocol (prime, step) plus `sample(n, ...)`: n steps in one kernel call."""

    def __init__(self, model: WaveNet, batch: int, cond: Cond | None = None, seed: int | None = None):
        if not supports(model):
            raise ValueError("the fused kernel runs float32 WaveNets on the CPU only")
        c = model.config
        self.model, self.batch, self.cond, self.t = model, batch, cond, 0
        self.q, self.k = c.quantization_levels, c.kernel_size
        n_layers, c_res, c_dil = len(c.dilations), c.residual_channels, c.dilation_channels
        self.in_tab = np.stack([_np(model.input_table(k)) for k in range(c.input_kernel_size)])
        self.in_b = _np(model.input_conv.bias)
        convs = [layer.conv.weight.detach() for layer in model.layers]  # (2C, C_res, K)
        self.w_now = np.stack([_np(w[:, :, -1].t()) for w in convs])  # (L, C_res, 2C)
        self.w_past = np.stack([  # (L, (K-1)*C_res, 2C); block j-1 reads t - j*d
            _np(torch.cat([w[:, :, self.k - 1 - j].t() for j in range(1, self.k)])) for w in convs
        ]) if self.k > 1 else np.zeros((n_layers, 0, 2 * c_dil), np.float32)
        self.b_conv = np.stack([_np(layer.conv.bias) for layer in model.layers])
        self.has_res = np.array([layer.residual_channels > 0 for layer in model.layers])
        self.w_res = np.zeros((n_layers, c_dil, c_res), np.float32)
        self.b_res = np.zeros((n_layers, c_res), np.float32)
        w_skip = []
        for i, layer in enumerate(model.layers):
            w, b, r = layer.out.weight.detach()[:, :, 0].t(), layer.out.bias.detach(), layer.residual_channels
            if r:
                self.w_res[i], self.b_res[i] = _np(w[:, :r]), _np(b[:r])
            w_skip.append(_np(w[:, r:]))
        self.w_skip = np.stack(w_skip)  # (L, C_dil, C_skip)
        self.b_skip = sum(_np(layer.out.bias[layer.residual_channels:]) for layer in model.layers)
        convs_head = [m for m in model.head if isinstance(m, torch.nn.Conv1d)]
        self.w1, self.b1 = _np(convs_head[0].weight[:, :, 0].t()), _np(convs_head[0].bias)
        self.w2, self.b2 = _np(convs_head[1].weight[:, :, 0].t()), _np(convs_head[1].bias)
        self.dils = np.array(c.dilations, np.int64)
        self.sizes = (self.k - 1) * self.dils
        self.offs = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.buf = np.zeros((batch, int(self.sizes.sum()), c_res), np.float32)
        self.tokens = np.full((batch, c.input_kernel_size), self.q + 1, np.int64)
        self.prev = np.full(batch, self.q, np.int64)
        with torch.no_grad():
            classes = model.class_conditioning(cond.classes if cond is not None else None)
        self.class_cond = (_np(classes).reshape(batch, 1, n_layers, -1) if classes is not None
                           else np.zeros((batch, 1, n_layers, 2 * c_dil), np.float32))
        self.rng = np.random.SeedSequence(seed).generate_state(batch, np.uint64)

    def prime(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, P): one conv forward fills the rings -> logits (B, Q, P)."""
        _check_prime(self, tokens)
        p = tokens.shape[1]
        with torch.no_grad():
            skip, inputs = self.model.trunk(tokens, self.cond, keep_inputs=True)
            logits = self.model.head(skip)
        for off, size, h in zip(self.offs, self.sizes, inputs, strict=True):
            for pos in range(max(0, p - size), p):
                self.buf[:, off + pos % size] = _np(h[:, :, pos])
        shifted = torch.cat([torch.full_like(tokens[:, :1], self.q), tokens[:, :-1]], dim=1).numpy()
        k_in = self.tokens.shape[1]
        for j in range(1, k_in):
            pos = p - k_in + j
            if pos >= 0:
                self.tokens[:, j] = shifted[:, pos]
        self.prev[:] = tokens[:, -1].numpy()
        self.t = p
        return logits

    def step(self, prev: torch.Tensor | None) -> torch.Tensor:
        """prev (B,) = x_{t-1} (None at t=0) -> logits (B, Q) of x_t."""
        self.prev[:] = self.q if prev is None else prev.cpu().numpy()
        # x_t is forced to 0 here; the caller passes the real x_t as the next prev.
        forced = (np.ones((self.batch, 1), bool), np.zeros((self.batch, 1), np.int64))
        _, logits = self._kernel(1, 1.0, None, forced, keep_logits=True)
        return torch.from_numpy(logits[:, 0])

    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None,
               observed: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The next n tokens, LongTensor (B, n); observed = (mask (B, n) bool, values (B, n))."""
        if observed is not None:
            observed = (observed[0].cpu().numpy(), observed[1].cpu().numpy())
        tokens, _ = self._kernel(n, temperature, top_k, observed, keep_logits=False)
        return torch.from_numpy(tokens)

    def _kernel(self, n: int, temperature: float, top_k: int | None, observed: tuple[np.ndarray, np.ndarray] | None,
                keep_logits: bool) -> tuple[np.ndarray, np.ndarray]:
        """Run n steps -> (tokens int64 (B, n), logits float32 (B, n or 0, Q))."""
        b = self.batch
        mask, values = observed if observed is not None else (np.zeros((b, n), bool), np.zeros((b, n), np.int64))
        out = np.empty((b, n), np.int64)
        logits = np.empty((b, n if keep_logits else 0, self.q), np.float32)
        cond, per_step = self._cond_chunk(n)
        mask, values = np.ascontiguousarray(mask, bool), np.ascontiguousarray(values, np.int64)

        def rows(lo: int, hi: int) -> None:  # rows never interact, so row blocks can run side by side
            _run(n, self.t, self.prev[lo:hi], self.tokens[lo:hi], self.buf[lo:hi], self.offs, self.sizes, self.dils,
                 self.k, self.in_tab, self.in_b, self.w_now, self.w_past, self.b_conv, self.w_res, self.b_res,
                 self.has_res, self.w_skip, self.b_skip, self.w1, self.b1, self.w2, self.b2, cond[lo:hi], per_step,
                 mask[lo:hi], values[lo:hi], float(temperature), int(top_k or 0), self.rng[lo:hi], out[lo:hi],
                 logits[lo:hi], keep_logits)

        blocks = np.array_split(np.arange(b), max(min(b, _CORES), -(-b // ROWS_PER_BLOCK)))
        if len(blocks) == 1:
            rows(0, b)
        else:  # the kernel releases the GIL: one thread per core, each on its own rows
            list(_pool().map(lambda r: rows(int(r[0]), int(r[-1]) + 1), blocks))
        self.t += n
        return out, logits

    def _cond_chunk(self, n: int) -> tuple[np.ndarray, bool]:
        """Conditioning for the next n steps: (B, n or 1, L, 2C) and whether it varies per step."""
        if self.model.local_proj is None:
            return self.class_cond, False
        with torch.no_grad():
            local = self.model.upsample_local(self.cond.local, n, self.t)  # (B, C_local, n)
            g = self.model.local_proj(local).transpose(1, 2)  # (B, n, L*2C)
        return _np(g).reshape(self.batch, n, len(self.dils), -1) + self.class_cond, True


def warm_up() -> None:
    """Compile (or load from the on-disk cache) the kernel before a user's first request."""
    from core.models.wavenet import WaveNetConfig

    tiny = WaveNet(WaveNetConfig(quantization_levels=4, dilations=[1], residual_channels=2, dilation_channels=2,
                                 skip_channels=2, head_channels=2))
    FusedStepper(tiny, 1, seed=0).sample(2)
    FusedStepper(tiny, 1, seed=0).step(None)
