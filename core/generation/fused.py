"""A fused CPU generation loop: the whole cached WaveNet step, sampling included, in compiled C.

The PyTorch cached stepper spends most of each sample in Python and per-op dispatch (a few
dozen tiny ops per layer). `core/generation/fused_kernel.c` runs `n` steps for the whole batch with
preallocated buffers and no allocation per step:

    for each step t:
        h = input tables[tokens]                                   (B, C_res)
        for each layer l:
            z = b + cond + [h_l(t - d_l) .. h_l(t - (K-1) d_l) | h] W_z   (B, 2C)   ring buffer reads
            g = tanh(z_a) * sigmoid(z_b)                               (B, C_dil)
            [h | skip] += g W_out + [b_res | 0]
        logits = head(skip)                                            (B, Q)
        x_t = sample(logits / temperature, top-k) or the observed value

Weights are packed here into 16-column panels, zero-padded to multiples of 16 channels, so
the C micro-kernel keeps its accumulators in AVX2 registers and streams each weight once per
step. Rows run on separate threads; at batch 1 the threads split every product's columns.

The ring-buffer layout is the one of `CachedStepper` (slot = t mod (K-1) d_l), packed into one
array (B, sum_l S_l, C_res). Sampling is inverse-CDF on softmax(logits / T) with a per-row
SplitMix64 generator whose state lives in the stepper, so concurrent generators never share
random state; it draws from the same distribution as core.generation.sampling, not the same numbers.

The C file (with kernel_common.h) is compiled by core.generation.c_kernels the first time it is
needed and kept on disk; `warm_up()` pays that at app start-up. Without a compiler or without
AVX2/FMA, `available()` is False and generation falls back to the PyTorch path.
"""

from __future__ import annotations

import ctypes

import numpy as np
import torch

from core.conditioning import Cond
from core.generation.c_kernels import (
    HERE,
    KernelUnavailable,
    as_numpy,
    cores_for,
    gate_order,
    load,
    pad,
    panels,
    pointer_fields,
    zero_padded,
)
from core.generation.cached import prime_rings
from core.generation.stepper import check_prime, register_stepper
from core.models.wavenet import WaveNet

SOURCE = HERE / "fused_kernel.c"


class _Model(ctypes.Structure):
    _fields_ = ([(n, ctypes.c_int64) for n in ("batch", "n_layers", "kernel", "k_in", "c_res", "c_dil", "c_skip",
                                               "c_head", "q", "q_pad")]
                + pointer_fields("in_tab", "in_b", "w_z", "b_z", "w_out", "b_res", "b_skip", "w1", "b1", "w2", "b2",
                                 "offs", "sizes", "dils", "buf", "scratch", "tokens", "prev", "rng"))


class _Run(ctypes.Structure):
    _fields_ = ([(n, ctypes.c_int64) for n in ("n", "t0", "cond_steps")]
                + pointer_fields("cond", "obs_mask", "obs_val")
                + [("temperature", ctypes.c_double), ("top_k", ctypes.c_int64)]
                + pointer_fields("out", "logits_out") + [("threads", ctypes.c_int64)])


def _library() -> ctypes.CDLL:
    """The compiled kernel, built on first use and cached on disk; KernelUnavailable if impossible."""
    lib = load(SOURCE, "fused")
    lib.fused_run.argtypes = [ctypes.POINTER(_Model), ctypes.POINTER(_Run)]
    lib.fused_run.restype = None
    return lib


def available() -> bool:
    """Whether the kernel is built (or can be) and runs on this CPU."""
    try:
        _library()
    except KernelUnavailable:
        return False
    return True


def supports(model: torch.nn.Module) -> bool:
    """Whether the fused kernel can run this model: a float32 WaveNet on the CPU, with the kernel available."""
    p = next(model.parameters())
    return (getattr(model, "model_type", None) == "wavenet" and p.device.type == "cpu" and p.dtype == torch.float32
            and available())


@register_stepper("wavenet", "fused")
class FusedStepper:
    """The cached stepper's protocol (prime, step) plus `sample(n, ...)`: n steps in one kernel call.

    threads: how many cores one call uses. By default a batch is split by rows over the cores
    that other kernel calls in this process leave free (c_kernels.cores_for), and batch 1 runs on one core: splitting
    its products across two cores costs 43 barriers per sample, which on these shared 2-core
    machines gave 30,000 samples/s in some runs and 15,000 in others, against a steady
    21,000-23,000 on one core (reference config of bench/generation.py).
    """

    rank = 2

    @staticmethod
    def unusable(model: torch.nn.Module) -> str | None:
        if supports(model):
            return None
        return "the fused kernel runs float32 WaveNets on the CPU only, where it is available"

    def __init__(self, model: WaveNet, batch: int, cond: Cond | None = None, seed: int | None = None,
                 threads: int | None = None):
        reason = self.unusable(model)
        if reason is not None:
            raise ValueError(reason)
        self._lib = _library()
        c = model.config
        self.model, self.batch, self.cond, self.t, self.threads = model, batch, cond, 0, threads
        self.q, self.k = c.quantization_levels, c.kernel_size
        n_layers = len(c.dilations)
        cr, cd, cs, chead = (pad(n) for n in (c.residual_channels, c.dilation_channels, c.skip_channels,
                                                c.head_channels))
        qp = pad(self.q)
        self.c_dil, self.c_dil_pad = c.dilation_channels, cd
        self.in_tab = zero_padded(np.stack([as_numpy(model.input_table(k)) for k in range(c.input_kernel_size)]),
                              c.input_kernel_size, self.q + 2, cr)
        self.in_b = zero_padded(as_numpy(model.input_conv.bias), cr)
        w_z, w_out, b_res = [], [], np.zeros((n_layers, cr), np.float32)
        for i, layer in enumerate(model.layers):
            w = as_numpy(layer.conv.weight)  # (2C, C_res, K): tap K-1 is "now", tap K-1-j reads t - j d
            taps = [zero_padded(w[:, :, self.k - 1 - j].T, cr, 2 * self.c_dil) for j in range(1, self.k)]
            stacked = np.concatenate([*taps, zero_padded(w[:, :, -1].T, cr, 2 * self.c_dil)])  # (K C_res, 2C)
            w_z.append(panels(gate_order(stacked, self.c_dil, cd), self.k * cr, 2 * cd))
            wo, bo, r = as_numpy(layer.out.weight)[:, :, 0].T, as_numpy(layer.out.bias), layer.residual_channels
            full = np.zeros((cd, cr + cs), np.float32)  # [residual | skip]; no residual = zero columns
            full[: self.c_dil, :r] = wo[:, :r]
            full[: self.c_dil, cr : cr + c.skip_channels] = wo[:, r:]
            w_out.append(panels(full, cd, cr + cs))
            b_res[i, :r] = bo[:r]
        self.w_z, self.w_out, self.b_res = np.stack(w_z), np.stack(w_out), b_res
        self.b_z = gate_order(np.stack([as_numpy(layer.conv.bias) for layer in model.layers]), self.c_dil, cd)
        self.b_skip = zero_padded(sum(as_numpy(layer.out.bias)[layer.residual_channels:] for layer in model.layers), cs)
        head = [m for m in model.head if isinstance(m, torch.nn.Conv1d)]
        self.w1 = panels(as_numpy(head[0].weight)[:, :, 0].T, cs, chead)
        self.b1 = zero_padded(as_numpy(head[0].bias), chead)
        self.w2 = panels(as_numpy(head[1].weight)[:, :, 0].T, chead, qp)
        self.b2 = zero_padded(as_numpy(head[1].bias), qp)
        self.dils = np.array(c.dilations, np.int64)
        self.sizes = (self.k - 1) * self.dils
        self.offs = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.buf = np.zeros((batch, int(self.sizes.sum()), cr), np.float32)
        self.scratch = np.zeros((batch, 3 * cd + cr + cs + chead + qp), np.float32)
        self.tokens = np.full((batch, c.input_kernel_size), self.q + 1, np.int64)
        self.prev = np.full(batch, self.q, np.int64)
        self.rng = np.random.SeedSequence(seed).generate_state(batch, np.uint64)
        with torch.no_grad():
            classes = model.class_conditioning(cond.classes if cond is not None else None)
        self.class_cond = (as_numpy(classes).reshape(batch, 1, n_layers, -1) if classes is not None
                           else np.zeros((batch, 1, n_layers, 2 * self.c_dil), np.float32))
        self._c_model = _Model(batch, n_layers, self.k, c.input_kernel_size, cr, cd, cs, chead, self.q, qp,
                               *(a.ctypes.data for a in (
                                   self.in_tab, self.in_b, self.w_z, self.b_z, self.w_out, self.b_res, self.b_skip,
                                   self.w1, self.b1, self.w2, self.b2, self.offs, self.sizes, self.dils, self.buf,
                                   self.scratch, self.tokens, self.prev, self.rng)))

    def prime(self, tokens: torch.Tensor, logits: bool = True) -> torch.Tensor | None:
        """tokens (B, P): one conv forward fills the rings -> logits (B, Q, P); without `logits`
        the forward covers only the last R tokens (core.generation.cached.prime_forward) -> None."""
        check_prime(self, tokens)
        primed = prime_rings(self.model, tokens, self.cond, logits)
        for off, (slots, values) in zip(self.offs, primed.rings, strict=True):
            self.buf[:, off + slots.numpy(), : values.shape[2]] = as_numpy(values).transpose(1, 0, 2)
        self.tokens[:, 1:] = primed.input_tokens.numpy()
        self.prev[:] = tokens[:, -1].numpy()
        self.t = tokens.shape[1]
        return primed.logits

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
        mask = np.ascontiguousarray(mask, np.uint8)
        values = np.ascontiguousarray(values, np.int64)
        out = np.empty((b, n), np.int64)
        logits = np.empty((b, n if keep_logits else 0, self.q), np.float32)
        cond = self._cond_chunk(n)
        with cores_for(b, self.threads) as threads:
            run = _Run(n, self.t, cond.shape[1], cond.ctypes.data, mask.ctypes.data, values.ctypes.data,
                       float(temperature), int(top_k or 0), out.ctypes.data,
                       logits.ctypes.data if keep_logits else None, threads)
            self._lib.fused_run(ctypes.byref(self._c_model), ctypes.byref(run))  # ctypes releases the GIL
        self.t += n
        return out, logits

    def _cond_chunk(self, n: int) -> np.ndarray:
        """Conditioning for the next n steps in the kernel's layout: (B, n or 1, L, 2 C_pad)."""
        total = self.class_cond
        if self.model.local_proj is not None:
            with torch.no_grad():
                local = self.model.upsample_local(self.cond.local, n, self.t)  # (B, C_local, n)
                g = self.model.local_proj(local).transpose(1, 2)  # (B, n, L*2C)
            total = as_numpy(g).reshape(self.batch, n, len(self.dils), -1) + total
        return gate_order(total, self.c_dil, self.c_dil_pad)


def warm_up() -> None:
    """Build (or load from the disk cache) the kernel before a user's first request; quiet if impossible."""
    try:
        _library()
    except KernelUnavailable:
        pass
