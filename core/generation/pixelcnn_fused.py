"""The fused PixelCNN stepper: the cached stepper's horizontal stack, sampling included, in compiled C.

The PyTorch cached stepper (core.generation.pixelcnn_cached) spends most of each pixel in
Python and per-op dispatch: about ten tiny ops per layer and pixel. `pixelcnn_kernel.c` keeps
the same caches (its docstring gives the layout) and runs a row's pixels in one call: the
vertical stack of the row above when the row starts, then per pixel all horizontal layers, the
head and the draw, with no allocation per pixel and no PyTorch op (whose thread pool, on a
shared machine, can cost more than the arithmetic). Weights are packed as for the fused WaveNet
(core.generation.c_kernels).

Sampling is inverse-CDF on softmax(logits / T) with a per-row SplitMix64 generator whose state
lives in the stepper: it draws from the same distribution as core.generation.sampling, not the
same numbers. Without a C compiler or AVX2/FMA the kernel is unavailable and `default_method`
falls back to the PyTorch cached stepper.
"""

from __future__ import annotations

import ctypes

import numpy as np
import torch
import torch.nn.functional as F

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
    panels,
    pointer_fields,
    zero_padded,
)
from core.generation.stepper import check_prime, register_stepper
from core.models.pixelcnn import GatedPixelCNN

SOURCE = HERE / "pixelcnn_kernel.c"


class _Model(ctypes.Structure):
    _fields_ = ([(n, ctypes.c_int64) for n in ("batch", "n_layers", "width", "c", "c_skip", "c_head", "q", "q_pad")]
                + pointer_fields("pads", "taps", "buf_off") + [("buf_len", ctypes.c_int64)]
                + pointer_fields("w_off", "emb", "w_h", "w_out", "b_res", "b_skip", "w1", "b1", "w2", "b2",
                                 "ring_off") + [("ring_len", ctypes.c_int64)]
                + pointer_fields("wv_off", "w_v", "b_v", "w_vh", "b_vh", "cls", "buf", "rings", "from_above", "row",
                                 "rng"))


class _Run(ctypes.Structure):
    _fields_ = ([(n, ctypes.c_int64) for n in ("c0", "n", "push", "above")]
                + pointer_fields("obs_mask", "obs_val")
                + [("temperature", ctypes.c_double), ("top_k", ctypes.c_int64)]
                + pointer_fields("out", "logits_out") + [("threads", ctypes.c_int64)])


def _library() -> ctypes.CDLL:
    """The compiled kernel, built on first use and cached on disk; KernelUnavailable if impossible."""
    lib = load(SOURCE, "pixelcnn")
    lib.pixelcnn_run.argtypes = [ctypes.POINTER(_Model), ctypes.POINTER(_Run)]
    lib.pixelcnn_run.restype = None
    return lib


def available() -> bool:
    """Whether the kernel is built (or can be) and runs on this CPU."""
    return buildable(_library)


def _offsets(sizes: np.ndarray) -> np.ndarray:
    """Where each of consecutive blocks of these sizes starts: int64 (n,)."""
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _pointers(*arrays: np.ndarray) -> list[int]:
    return [a.ctypes.data for a in arrays]


def pack(model: GatedPixelCNN) -> dict[str, np.ndarray]:
    """The model's weights in the kernel's layout (pixelcnn_kernel.c's Model): channels padded to 16,
    matrices panelled, gate pre-activations (and v_pre, which feeds v_to_h) gate-ordered."""
    c = model.config
    n, q = c.channels, c.quantization_levels
    cp, cs, ch, qp = pad(n), pad(c.skip_channels), pad(c.head_channels), pad(q)
    w_h, w_v, w_out, w_vh = [], [], [], []
    b_res = np.zeros((len(model.layers), cp), np.float32)
    for i, layer in enumerate(model.layers):
        taps, k = layer.h_conv.kernel_size[1], layer.v_conv.kernel_size[1]
        wh = zero_padded(as_numpy(layer.h_conv.weight)[:, :, 0].transpose(2, 1, 0), taps, cp, 2 * n)  # (taps, C, 2C)
        w_h.append(panels(gate_order(wh.reshape(taps * cp, 2 * n), n, cp), taps * cp, 2 * cp))
        wv = zero_padded(as_numpy(layer.v_conv.weight).transpose(2, 3, 1, 0), layer.s + 1, k, cp, 2 * n)  # dy dx C 2C
        w_v.append(np.concatenate([panels(gate_order(d.reshape(k * cp, 2 * n), n, cp), k * cp, 2 * cp) for d in wv]))
        vh = gate_order(as_numpy(layer.v_to_h.weight)[:, :, 0, 0], n, cp)  # (2C out, 2C_pad in), inputs gate-ordered
        w_vh.append(panels(gate_order(vh.T, n, cp), 2 * cp, 2 * cp))
        wo, bo, r = as_numpy(layer.h_out.weight)[:, :, 0, 0].T, as_numpy(layer.h_out.bias), layer.residual_channels
        full = np.zeros((cp, cp + cs), np.float32)  # [residual | skip]; no residual = zero columns
        full[:n, :r] = wo[:, :r]
        full[:n, cp : cp + c.skip_channels] = wo[:, r:]
        w_out.append(panels(full, cp, cp + cs))
        b_res[i, :r] = bo[:r]
    head = [m for m in model.head if isinstance(m, torch.nn.Conv2d)]
    return {
        "emb": zero_padded(as_numpy(model.embedding.weight), q, cp),
        "w_h": np.concatenate(w_h), "w_off": _offsets([len(w) for w in w_h]),
        "w_out": np.stack(w_out), "b_res": b_res,
        "b_skip": zero_padded(sum(as_numpy(layer.h_out.bias)[layer.residual_channels:] for layer in model.layers), cs),
        "w_v": np.concatenate(w_v), "wv_off": _offsets([len(w) for w in w_v]),
        "b_v": gate_order(np.stack([as_numpy(layer.v_conv.bias) for layer in model.layers]), n, cp),
        "w_vh": np.stack(w_vh),
        "b_vh": gate_order(np.stack([as_numpy(layer.v_to_h.bias + layer.h_conv.bias) for layer in model.layers]), n,
                           cp),
        "w1": panels(as_numpy(head[0].weight)[:, :, 0, 0].T, cs, ch), "b1": zero_padded(as_numpy(head[0].bias), ch),
        "w2": panels(as_numpy(head[1].weight)[:, :, 0, 0].T, ch, qp), "b2": zero_padded(as_numpy(head[1].bias), qp),
    }


@register_stepper("pixelcnn", "fused")
class FusedPixelStepper:
    """The cached PixelCNN stepper's protocol (prime, step, sample) with the pixels of a row run in C.

    threads: how many cores one call uses, each running its share of the batch rows; by default
    those that other kernel calls in this process leave free (core.generation.c_kernels.cores_for),
    and one at batch 1.
    """

    rank = 2

    @staticmethod
    def unusable(model: torch.nn.Module) -> str | None:
        p = next(model.parameters())
        if p.device.type == "cpu" and p.dtype == torch.float32 and available():
            return None
        return "the fused kernel runs float32 PixelCNNs on the CPU only, where it is available"

    def __init__(self, model: GatedPixelCNN, batch: int, cond: Cond | None = None, seed: int | None = None,
                 threads: int | None = None):
        reason = self.unusable(model)
        if reason is not None:
            raise ValueError(reason)
        self._lib = _library()
        c = model.config
        self.model, self.batch, self.cond, self.t, self.threads = model, batch, cond, 0, threads
        self.width, self.pixels, self.q = c.width, c.pixels, c.quantization_levels
        cp, n_layers = pad(c.channels), len(model.layers)
        self.w = pack(model)
        self.pads = np.array([layer.s for layer in model.layers], np.int64)
        self.taps = np.array([layer.h_conv.kernel_size[1] for layer in model.layers], np.int64)
        self.c_pad, self.emb = cp, self.w["emb"]
        sizes = (c.width + self.pads) * cp  # per layer: the row buffer of the horizontal stack
        self.buf_off = _offsets(sizes)
        self.buf = np.zeros((batch, int(sizes.sum())), np.float32)
        ring_sizes = (self.pads + 1) * (c.width + 2 * self.pads) * cp  # per layer: the vertical stack's ring
        self.ring_off = _offsets(ring_sizes)
        self.rings = np.zeros((batch, int(ring_sizes.sum())), np.float32)
        with torch.no_grad():
            g = model.class_conditioning(cond)  # (B, L*4C, 1, 1): per layer [vertical 2C | horizontal 2C]
        self.cls = (gate_order(as_numpy(g).reshape(batch, n_layers, 2, 2 * c.channels), c.channels, cp)
                    if g is not None else np.zeros((batch, n_layers, 2, 2 * cp), np.float32))
        # Row 0 sees only zero padding above: v_pre = 0.
        self.from_above = np.ascontiguousarray(np.broadcast_to(
            (self.w["b_vh"] + self.cls[:, :, 1])[:, None], (batch, c.width, n_layers, 2 * cp)))
        self.rng = np.random.SeedSequence(seed).generate_state(batch, np.uint64)
        self.row = np.zeros((batch, c.width), np.int64)  # the current row's tokens so far
        self.prev = np.zeros(batch, np.int64)  # x_{t-1}
        w = self.w
        self._c_model = _Model(
            batch, n_layers, c.width, cp, pad(c.skip_channels), pad(c.head_channels), self.q, pad(self.q),
            *_pointers(self.pads, self.taps, self.buf_off), self.buf.shape[1],
            *_pointers(w["w_off"], w["emb"], w["w_h"], w["w_out"], w["b_res"], w["b_skip"], w["w1"], w["b1"],
                       w["w2"], w["b2"], self.ring_off), self.rings.shape[1],
            *_pointers(w["wv_off"], w["w_v"], w["b_v"], w["w_vh"], w["b_vh"], self.cls, self.buf, self.rings,
                       self.from_above, self.row, self.rng))

    def prime(self, tokens: torch.Tensor, logits: bool = True) -> torch.Tensor | None:
        """tokens (B, P) -> logits (B, Q, P) (None if not `logits`); the next step() takes prev = tokens[:, -1]."""
        check_prime(self, tokens)
        p = tokens.shape[1]
        if p > self.pixels:
            raise ValueError(f"prime has {p} tokens but an image has {self.pixels} pixels")
        self.sample(p, observed=(torch.ones_like(tokens, dtype=torch.bool), tokens))  # every head skipped
        if not logits:
            return None
        with torch.no_grad():
            return self.model(F.pad(tokens, (0, self.pixels - p)), self.cond)[:, :, :p]

    def step(self, prev: torch.Tensor | None) -> torch.Tensor:
        """prev (B,) = x_{t-1} (None at t=0) -> logits (B, Q) of x_t."""
        if prev is not None:
            self.prev[:] = prev.cpu().numpy()
        # x_t is forced to 0 here; the caller passes the real x_t as the next prev.
        forced = (np.ones((self.batch, 1), bool), np.zeros((self.batch, 1), np.int64))
        _, logits = self._run(1, 1.0, None, forced, keep_logits=True)
        return torch.from_numpy(logits[:, 0])

    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None,
               observed: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The next n tokens, LongTensor (B, n); observed = (mask (B, n) bool, values (B, n))."""
        b = self.batch
        mask, values = ((observed[0].cpu().numpy(), observed[1].cpu().numpy()) if observed is not None
                        else (np.zeros((b, n), bool), np.zeros((b, n), np.int64)))
        if mask.any() and not (0 <= values[mask].min() and values[mask].max() < self.q):
            raise ValueError(f"observed values must be levels in [0, {self.q})")
        out, done = np.empty((b, n), np.int64), 0
        while done < n:  # one kernel call per row
            m = min(n - done, self.width - self.t % self.width)
            part = (mask[:, done : done + m], values[:, done : done + m])
            out[:, done : done + m], _ = self._run(m, temperature, top_k, part, keep_logits=False)
            done += m
        return torch.from_numpy(out)

    def _run(self, n: int, temperature: float, top_k: int | None, observed: tuple[np.ndarray, np.ndarray],
             keep_logits: bool) -> tuple[np.ndarray, np.ndarray]:
        """Pixels t .. t+n-1, all in the current row -> (tokens int64 (B, n), logits float32 (B, n or 0, Q))."""
        if self.t + n > self.pixels:
            raise ValueError(f"the image has {self.pixels} pixels; there is no pixel {self.t + n - 1}")
        c0 = self.t % self.width
        push = bool(self.t and c0 == 0)  # prev completes the row above: the kernel runs its vertical stack
        if push:
            self.row[:, -1] = self.prev
        elif c0:  # layer 0's window ends at x_{t-1}
            self.row[:, c0 - 1] = self.prev
            at = self.buf_off[0] + (self.pads[0] + c0 - 1) * self.c_pad
            self.buf[:, at : at + self.c_pad] = self.emb[self.prev]
        b = self.batch
        mask = np.ascontiguousarray(observed[0], np.uint8)
        values = np.ascontiguousarray(observed[1], np.int64)
        out = np.empty((b, n), np.int64)
        logits = np.empty((b, n if keep_logits else 0, self.q), np.float32)
        with cores_for(b, self.threads) as threads:
            run = _Run(c0, n, push, self.t // self.width - 1, mask.ctypes.data, values.ctypes.data, float(temperature),
                       int(top_k or 0), out.ctypes.data, logits.ctypes.data if keep_logits else None, threads)
            self._lib.pixelcnn_run(ctypes.byref(self._c_model), ctypes.byref(run))  # ctypes releases the GIL
        self.prev[:] = out[:, -1]
        self.t += n
        return out, logits


def warm_up() -> None:
    """Build (or load from the disk cache) the kernel before a user's first request; quiet if impossible."""
    try:
        _library()
    except KernelUnavailable:
        pass
