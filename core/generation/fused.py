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

Weights are packed (core.generation.c_kernels; fused_pack.py at reduced precision) into
16-column panels, zero-padded to multiples of 16 channels, so the C micro-kernel keeps its
accumulators in registers and streams each weight once per step. Rows run on separate threads;
at batch 1 the threads split every product's columns.

The ring-buffer layout is the one of `CachedStepper` (slot = t mod (K-1) d_l), packed into one
array (B, sum_l S_l, C_res). Sampling is inverse-CDF on softmax(logits / T) with a per-row
SplitMix64 generator whose state lives in the stepper, so concurrent generators never share
random state; it draws from the same distribution as core.generation.sampling, not the same numbers.

Precision: the "fused" method streams float32 weights (AVX2/FMA). "fused-bf16" packs them as
bfloat16 and "fused-int8" as int8 with a scale per output column; their products run on AVX-512
(`vdpbf16ps`, VNNI `vpdpbusd`) with float32 sums, and each needs the CPU to have it
(`precisions()`; STUDIO_FUSED_ISA=avx2 hides the AVX-512 paths, to test the fallback). On a CPU with
AMX-BF16, bf16 products of 4 rows or more (batch 4 and up) run on the tile unit instead, with the
same operands (`bf16_engine()`; STUDIO_FUSED_ISA=avx512 hides it). Halving or
quartering the weights matters because a batch-1 step streams all of them: 2.5 MB at float32 on
the reference config, more than a core's L2. `nll()` teacher-forces a sequence through the same
arithmetic, to measure what a precision costs.

The C file (with kernel_common.h) is compiled by core.generation.c_kernels the first time it is
needed and kept on disk; `warm_up()` pays that at app start-up. A compiler that cannot target
AMX builds it without tiles (-DFUSED_NO_AMX), one that cannot target AVX-512 BF16/VNNI float32 only
(-DFUSED_NO_AVX512). Without a compiler or without
AVX2/FMA, `available()` is False and generation falls back to the PyTorch path.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import torch

from core.conditioning import Cond
from core.generation.c_kernels import (
    HERE,
    KernelUnavailable,
    as_numpy,
    buildable,
    cores_for,
    gate_order,
    load,
    pad,
    pointer_fields,
    zero_padded,
)
from core.generation.cached import prime_rings
from core.generation.fused_pack import PRECISIONS, weight_panels
from core.generation.stepper import check_prime, register_stepper
from core.models.wavenet import WaveNet

SOURCE = HERE / "fused_kernel.c"


class _Model(ctypes.Structure):
    _fields_ = ([(n, ctypes.c_int64) for n in ("batch", "n_layers", "kernel", "k_in", "c_res", "c_dil", "c_skip",
                                               "c_head", "q", "q_pad", "precision")]
                + pointer_fields("in_tab", "in_b", "w_z", "b_z", "w_out", "b_res", "b_skip", "w1", "b1", "w2", "b2",
                                 "offs", "sizes", "dils", "buf", "scratch", "tokens", "prev", "rng",
                                 "s_z", "c_z", "s_out", "c_out", "s1", "c1", "s2", "c2")
                + [("tiles", ctypes.c_int64)])


class _Run(ctypes.Structure):
    _fields_ = ([(n, ctypes.c_int64) for n in ("n", "t0", "cond_steps")]
                + pointer_fields("cond", "obs_mask", "obs_val")
                + [("temperature", ctypes.c_double), ("top_k", ctypes.c_int64)]
                + pointer_fields("out", "logits_out") + [("threads", ctypes.c_int64)])


def _library() -> ctypes.CDLL:
    """The compiled kernel, built on first use and cached on disk; KernelUnavailable if impossible.
    A compiler that cannot target AMX builds it without the tile path (-DFUSED_NO_AMX), one that cannot
    target AVX-512 BF16 and VNNI float32 only (-DFUSED_NO_AVX512)."""
    lib = load(SOURCE, "fused", (("-DFUSED_NO_AMX",), ("-DFUSED_NO_AVX512",)))
    lib.fused_run.argtypes = [ctypes.POINTER(_Model), ctypes.POINTER(_Run)]
    lib.fused_run.restype = None
    lib.fused_cpu_features.restype = ctypes.c_int
    return lib


def available() -> bool:
    """Whether the kernel is built (or can be) and runs on this CPU."""
    return buildable(_library)


def _features() -> int:
    """The kernel's fused_cpu_features(): 1 bf16, 2 int8, 4 bf16 on AMX tiles; STUDIO_FUSED_ISA=avx2 hides
    all three and STUDIO_FUSED_ISA=avx512 hides the tiles, to test each fallback on a CPU that has more."""
    isa = os.environ.get("STUDIO_FUSED_ISA", "").lower()
    if isa == "avx2":
        return 0
    features = _library().fused_cpu_features()
    return features & ~4 if isa == "avx512" else features


def precisions() -> tuple[str, ...]:
    """The weight precisions the kernel runs on this CPU: fp32 wherever it is available, bf16 with
    AVX-512 BF16, int8 with AVX-512 VNNI; only fp32 under STUDIO_FUSED_ISA=avx2."""
    if not available():
        return ()
    features = _features()
    return ("fp32", *(("bf16",) if features & 1 else ()), *(("int8",) if features & 2 else ()))


def bf16_engine() -> str | None:
    """What runs the bf16 products of 4 rows or more: "amx" (tiles), "avx512" (vdpbf16ps), None (no bf16)."""
    if "bf16" not in precisions():
        return None
    return "amx" if _features() & 4 else "avx512"


def supports(model: torch.nn.Module) -> bool:
    """Whether the fused kernel can run this model: a float32 WaveNet on the CPU, with the kernel available."""
    p = next(model.parameters())
    return (getattr(model, "model_type", None) == "wavenet" and p.device.type == "cpu" and p.dtype == torch.float32
            and available())


@register_stepper("wavenet", "fused")
class FusedStepper:
    """The cached stepper's protocol (prime, step) plus `sample(n, ...)`: n steps in one kernel call,
    with float32 weights; the subclasses below stream bfloat16 or int8 ones.

    threads: how many cores one call uses. By default a batch is split by rows over the cores
    that other kernel calls in this process leave free (c_kernels.cores_for), and batch 1 runs on one core: splitting
    its products across two cores costs 43 barriers per sample, which on these shared 2-core
    machines gave 30,000 samples/s in some runs and 15,000 in others, against a steady
    21,000-23,000 on one core (reference config of bench/generation.py).
    """

    rank = 2
    precision = "fp32"

    @classmethod
    def unusable(cls, model: torch.nn.Module) -> str | None:
        if not supports(model):
            return "the fused kernel runs float32 WaveNets on the CPU only, where it is available"
        if cls.precision not in precisions():
            need = {"bf16": "AVX-512 BF16", "int8": "AVX-512 VNNI"}[cls.precision]
            return f"the fused kernel's {cls.precision} weights need a CPU with {need}; use method 'fused'"
        return None

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
            w_z.append(weight_panels(gate_order(stacked, self.c_dil, cd), self.k * cr, 2 * cd, self.precision))
            wo, bo, r = as_numpy(layer.out.weight)[:, :, 0].T, as_numpy(layer.out.bias), layer.residual_channels
            full = np.zeros((cd, cr + cs), np.float32)  # [residual | skip]; no residual = zero columns
            full[: self.c_dil, :r] = wo[:, :r]
            full[: self.c_dil, cr : cr + c.skip_channels] = wo[:, r:]
            w_out.append(weight_panels(full, cd, cr + cs, self.precision))
            b_res[i, :r] = bo[:r]
        # Each layer gave (panels, column scales, column sums): stack each over the layers.
        (self.w_z, self.s_z, self.c_z), (self.w_out, self.s_out, self.c_out) = (
            tuple(np.stack(parts) for parts in zip(*packed, strict=True)) for packed in (w_z, w_out))
        self.b_res = b_res
        self.b_z = gate_order(np.stack([as_numpy(layer.conv.bias) for layer in model.layers]), self.c_dil, cd)
        self.b_skip = zero_padded(sum(as_numpy(layer.out.bias)[layer.residual_channels:] for layer in model.layers), cs)
        head = [m for m in model.head if isinstance(m, torch.nn.Conv1d)]
        self.w1, self.s1, self.c1 = weight_panels(as_numpy(head[0].weight)[:, :, 0].T, cs, chead, self.precision)
        self.b1 = zero_padded(as_numpy(head[0].bias), chead)
        self.w2, self.s2, self.c2 = weight_panels(as_numpy(head[1].weight)[:, :, 0].T, chead, qp, self.precision)
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
                               PRECISIONS.index(self.precision),
                               *(a.ctypes.data for a in (
                                   self.in_tab, self.in_b, self.w_z, self.b_z, self.w_out, self.b_res, self.b_skip,
                                   self.w1, self.b1, self.w2, self.b2, self.offs, self.sizes, self.dils, self.buf,
                                   self.scratch, self.tokens, self.prev, self.rng, self.s_z, self.c_z, self.s_out,
                                   self.c_out, self.s1, self.c1, self.s2, self.c2)),
                               int(self.precision == "bf16" and bf16_engine() == "amx"))

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

    def nll(self, tokens: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """-ln p(x_t | x_<t) in nats, float64 (B, n), of tokens (B, n) after what the stepper has seen:
        every token is forced (teacher forcing) and scored by the logits of this kernel's arithmetic."""
        if tokens.dim() != 2 or tokens.shape[0] != self.batch:
            raise ValueError(f"tokens must be (B={self.batch}, n), got {tuple(tokens.shape)}")
        x = tokens.cpu().numpy()
        out = []
        for i in range(0, x.shape[1], chunk):
            values = x[:, i : i + chunk]
            _, logits = self._kernel(values.shape[1], 1.0, None, (np.ones(values.shape, bool), values),
                                     keep_logits=True)
            logp = torch.log_softmax(torch.from_numpy(logits).double(), dim=-1)  # (B, m, Q)
            out.append(-logp.gather(2, torch.from_numpy(values).unsqueeze(2))[:, :, 0])
        return torch.cat(out, 1) if out else torch.zeros(self.batch, 0, dtype=torch.float64)

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


@register_stepper("wavenet", "fused-bf16")
class FusedBf16Stepper(FusedStepper):
    """The fused kernel with bfloat16 weights and product inputs, float32 sums (AVX-512 BF16).
    The default where the CPU has it: it changes the bundled audio models' test NLL by under 0.01
    bits per sample (bench/precision.py) at about twice the speed of float32 at batch 1."""

    rank = 2.5  # above float32 "fused": it passed the rule above, so `method="auto"` takes it where it runs
    precision = "bf16"


@register_stepper("wavenet", "fused-int8")
class FusedInt8Stepper(FusedStepper):
    """The fused kernel with int8 weights (a scale per output column) and uint8 product inputs (a
    scale and offset per vector), int32 sums (AVX-512 VNNI). Opt-in only (rank below every other
    method): what it costs in NLL is in bench/precision.py and the README (Sampling)."""

    rank = -1
    precision = "int8"
