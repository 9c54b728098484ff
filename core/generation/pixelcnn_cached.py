"""The cached PixelCNN stepper (Ramachandran et al. 2017, "Fast generation for convolutional
autoregressive models"): per-layer caches of both stacks, so a pixel costs O(L), not O(image).

In raster order, pixel t = (r, c). Two caches, both per layer l (k_l = 2 s_l + 1):

    vertical:   the layer's input v_{l-1} over the last s_l + 1 rows, (B, s_l + 1, W + 2 s_l, C),
                zero-padded at the sides. When row r - 1 is complete (at c = 0), one pass down the
                layers turns it into v_pre_l(r - 1) (B*W, 2C) and so into what row r gets from
                above, `from_above[l]` = v_to_h(v_pre_l(r - 1)) + class + h_conv's bias (B, W, 2C):
                the whole row's vertical stack at once, batched over its W columns.
    horizontal: the layer's input h_{l-1} along the current row, (B, W + s_l, C), zero-padded on the
                left. The first layer (mask A) reads embedding(x) at columns c - s .. c - 1, all known
                when pixel c is drawn; each later one (mask B) reads h_{l-1} at c - s .. c, where
                h_{l-1}(c) was made by the layer below in this same step.

A step at (r, c): the horizontal layers, each one matmul of its window, its gate and its residual;
then the skips of all layers as one matmul, and the head. The fused stepper
(core.generation.pixelcnn_fused) keeps the same caches in C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.conditioning import Cond
from core.generation.stepper import SamplingLoop, check_prime, model_device, register_stepper
from core.models.pixelcnn import GatedPixelCNN


class VerticalCache:
    """The vertical stack, one completed row at a time; `from_above` is what the next row gets.

    Each layer's conv is one matmul over the whole row: the (s+1) x k window of every column,
    channels last, (B*W, (s+1)*k*C) times the kernel as ((s+1)*k*C, 2C); a conv2d over a
    3-row input is about twice as slow on the CPU.
    """

    def __init__(self, model: GatedPixelCNN, batch: int, cond: Cond | None):
        c = model.config
        self.model, self.batch, self.width = model, batch, c.width
        dev, dtype = model_device(model), next(model.parameters()).dtype
        with torch.no_grad():
            g = model.class_conditioning(cond)  # (B, L*4C, 1, 1) or None
        per_layer = g.flatten(1).chunk(len(model.layers), dim=1) if g is not None else [None] * len(model.layers)
        self.cv, self.ch = [], []  # per layer: the class term of the vertical / horizontal gate, (B, 1, 2C)
        for gl in per_layer:
            cv, ch = gl.chunk(2, dim=1) if gl is not None else (None, None)
            self.cv.append(None if cv is None else cv[:, None, :])
            self.ch.append(None if ch is None else ch[:, None, :])
        self.ks = [layer.v_conv.kernel_size[1] for layer in model.layers]
        # v_conv (2C, C, s+1, k) -> ((s+1)*k*C, 2C); v_to_h (2C, 2C, 1, 1) -> (2C, 2C), its bias plus h_conv's.
        self.w_v = [layer.v_conv.weight.detach().permute(2, 3, 1, 0).reshape(-1, 2 * c.channels).contiguous()
                    for layer in model.layers]
        self.b_v = [layer.v_conv.bias.detach() for layer in model.layers]
        self.w_vh = [layer.v_to_h.weight.detach()[:, :, 0, 0].t().contiguous() for layer in model.layers]
        self.b_vh = [(layer.v_to_h.bias + layer.h_conv.bias).detach() for layer in model.layers]
        # Per layer, its input over the last s+1 rows, channels last and zero-padded at the sides.
        self.rows = [torch.zeros(batch, layer.s + 1, c.width + 2 * layer.s, c.channels, device=dev, dtype=dtype)
                     for layer in model.layers]
        self.from_above = self._from_above([torch.zeros(batch * c.width, 2 * c.channels, device=dev, dtype=dtype)
                                            for _ in model.layers])

    def _from_above(self, v_pre: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per layer: v_pre of the row above (B*W, 2C) -> what this row's horizontal gates add (B, W, 2C)."""
        out = []
        for vp, w, b, ch in zip(v_pre, self.w_vh, self.b_vh, self.ch, strict=True):
            z = torch.addmm(b, vp, w).view(self.batch, self.width, -1)
            out.append(z if ch is None else z + ch)
        return out

    def push(self, tokens: torch.Tensor) -> None:
        """A completed row's tokens (B, W) -> the caches advance one row and `from_above` serves the next."""
        v = self.model.embedding(tokens)  # (B, W, C)
        v_pre = []
        for i, layer in enumerate(self.model.layers):
            s = layer.s
            self.rows[i] = rows = torch.cat([self.rows[i][:, 1:], F.pad(v, (0, 0, s, s)).unsqueeze(1)], dim=1)
            window = rows.unfold(2, self.ks[i], 1).permute(0, 2, 1, 4, 3).reshape(self.batch * self.width, -1)
            vp = torch.addmm(self.b_v[i], window, self.w_v[i])  # (B*W, 2C)
            v_pre.append(vp)
            if not layer.last:
                z = vp.view(self.batch, self.width, -1)
                a, b = (z if self.cv[i] is None else z + self.cv[i]).chunk(2, dim=2)
                v = torch.tanh(a) * torch.sigmoid(b)  # (B, W, C)
        self.from_above = self._from_above(v_pre)


@register_stepper("pixelcnn", "cached")
class CachedPixelStepper(SamplingLoop):
    """Per-layer caches of the vertical and horizontal stacks: O(L) work per pixel (see the module docstring)."""

    rank = 1  # default_method prefers higher ranks among the usable steppers

    @staticmethod
    def unusable(model: torch.nn.Module) -> str | None:
        return None

    def __init__(self, model: GatedPixelCNN, batch: int, cond: Cond | None = None, seed: int | None = None):
        c = model.config
        self.model, self.batch, self.cond, self.t = model, batch, cond, 0
        self.width, self.pixels, self.channels = c.width, c.pixels, c.channels
        dev, dtype = model_device(model), next(model.parameters()).dtype
        self._init_sampling(seed, dev)
        self.vertical = VerticalCache(model, batch, cond)
        self.row = torch.zeros(batch, c.width, dtype=torch.long, device=dev)  # the current row's tokens so far
        self.pads = [layer.s for layer in model.layers]
        self.taps = [layer.h_conv.kernel_size[1] for layer in model.layers]  # s (mask A) or s + 1 (mask B)
        # Per layer, the horizontal input along the current row (B, s + W, C): column j at s + j.
        self.h_rows = [torch.zeros(batch, s + c.width, c.channels, device=dev, dtype=dtype) for s in self.pads]
        # h_conv (2C, C, 1, taps) -> (taps*C, 2C), rows in the window's (tap, channel) order.
        self.w_h = [layer.h_conv.weight.detach()[:, :, 0].permute(2, 1, 0).reshape(-1, 2 * c.channels).contiguous()
                    for layer in model.layers]
        outs = [(layer.h_out.weight.detach()[:, :, 0, 0].t(), layer.h_out.bias.detach(), layer.residual_channels)
                for layer in model.layers]
        self.res = [(w[:, :r].contiguous(), b[:r]) if r else None for w, b, r in outs]  # (C, C)
        self.w_skip = torch.cat([w[:, r:] for w, _, r in outs]).contiguous()  # (L*C, C_skip)
        self.b_skip = sum(b[r:] for _, b, r in outs)
        self.head = [(m.weight.detach()[:, :, 0, 0].t().contiguous(), m.bias.detach())
                     for m in model.head if isinstance(m, torch.nn.Conv2d)]

    def prime(self, tokens: torch.Tensor, logits: bool = True) -> torch.Tensor | None:
        """tokens (B, P) -> logits (B, Q, P) (None if not `logits`); the next step() takes prev = tokens[:, -1]."""
        check_prime(self, tokens)
        p = tokens.shape[1]
        if p > self.pixels:
            raise ValueError(f"prime has {p} tokens but an image has {self.pixels} pixels")
        for i in range(p):  # pixel i's horizontal layers, from x_{i-1}
            self._advance(tokens[:, i - 1] if i else None, head=False)
        self.prev = tokens[:, -1]
        if not logits:
            return None
        return self.model(F.pad(tokens, (0, self.pixels - p)), self.cond)[:, :, :p]

    def step(self, prev: torch.Tensor | None) -> torch.Tensor:
        """prev (B,) = x_{t-1} (None at t=0) -> logits (B, Q) of x_t."""
        return self._advance(prev, head=True)

    def _advance(self, prev: torch.Tensor | None, head: bool) -> torch.Tensor | None:
        """Take x_{t-1} into the caches, run pixel t's horizontal layers; its logits (B, Q) if `head`."""
        t = self.t
        if t >= self.pixels:
            raise ValueError(f"the image has {self.pixels} pixels; there is no pixel {t}")
        c = t % self.width
        if t and c == 0:  # prev completes the row above: its vertical stack, once for the whole row
            self.row[:, -1] = prev
            self.vertical.push(self.row)
            for buf in self.h_rows:
                buf.zero_()
        elif c:
            self.row[:, c - 1] = prev
            self.h_rows[0][:, self.pads[0] + c - 1] = self.model.embedding(prev)
        h, gates = None, []
        for i, (buf, s, taps) in enumerate(zip(self.h_rows, self.pads, self.taps, strict=True)):
            if i:  # mask B: this layer's window ends at column c, made by the layer below just now
                buf[:, s + c] = h
            window = buf[:, c : c + taps].reshape(self.batch, -1)  # columns c-s .. c-s+taps-1: (B, taps*C)
            a, b = torch.addmm(self.vertical.from_above[i][:, c], window, self.w_h[i]).chunk(2, dim=1)
            g = torch.tanh(a) * torch.sigmoid(b)  # (B, C)
            gates.append(g)
            if self.res[i] is not None:
                w_res, b_res = self.res[i]
                out = torch.addmm(b_res, g, w_res)
                h = out if h is None else h + out
        self.t += 1
        if not head:
            return None
        skip = torch.addmm(self.b_skip, torch.cat(gates, dim=1), self.w_skip)  # (B, C_skip)
        (w1, b1), (w2, b2) = self.head
        return torch.addmm(b2, torch.relu(torch.addmm(b1, torch.relu(skip), w1)), w2)
