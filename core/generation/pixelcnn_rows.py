"""The row-by-row PixelCNN stepper: the model's own `row_context` / `row_logits`, no cache of its own.

At the start of each row, one vertical pass over all the rows above it (`row_context`); then per
pixel, one horizontal pass over the whole row (`row_logits`). So a pixel costs O(W) and a row
O(r), against O(1) for the cached stepper (core.generation.pixelcnn_cached) that replaces it as
the default; kept as the slow reference it is tested and benchmarked against (bench/digits.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.conditioning import Cond
from core.generation.stepper import SamplingLoop, check_prime, model_device, register_stepper
from core.models.pixelcnn import GatedPixelCNN


@register_stepper("pixelcnn", "rows")
class RowStepper(SamplingLoop):
    """`x` (B, H*W) holds the pixels known so far (zeros after them); `context` is the current row's."""

    rank = 0

    @staticmethod
    def unusable(model: torch.nn.Module) -> str | None:
        return None

    def __init__(self, model: GatedPixelCNN, batch: int, cond: Cond | None = None, seed: int | None = None):
        self.model, self.batch, self.cond, self.t = model, batch, cond, 0
        self.width, self.pixels = model.config.width, model.config.pixels
        self.x = torch.zeros(batch, self.pixels, dtype=torch.long, device=model_device(model))
        self.context: list[torch.Tensor] = []
        self._init_sampling(seed, model_device(model))

    def prime(self, tokens: torch.Tensor, logits: bool = True) -> torch.Tensor | None:
        """tokens (B, P) -> logits (B, Q, P) (None if not `logits`); the next step() takes prev = tokens[:, -1]."""
        check_prime(self, tokens)
        p = tokens.shape[1]
        if p > self.pixels:
            raise ValueError(f"prime has {p} tokens but an image has {self.pixels} pixels")
        self.x[:, : p - 1] = tokens[:, :-1]
        self.t, self.prev = p, tokens[:, -1]
        if p % self.width:  # the next step continues this row
            self.context = self.model.row_context(self.x, self.cond, p // self.width)
        return self.model(F.pad(tokens, (0, self.pixels - p)), self.cond)[:, :, :p] if logits else None

    def step(self, prev: torch.Tensor | None) -> torch.Tensor:
        """prev (B,) = x_{t-1} (None at t=0) -> logits (B, Q) of x_t."""
        t = self.t
        if t >= self.pixels:
            raise ValueError(f"the image has {self.pixels} pixels; there is no pixel {t}")
        if t:
            self.x[:, t - 1] = prev
        r, c = divmod(t, self.width)
        if c == 0:
            self.context = self.model.row_context(self.x, self.cond, r)
        self.t += 1
        return self.model.row_logits(self.x[:, r * self.width : (r + 1) * self.width], self.context)[:, :, c]
