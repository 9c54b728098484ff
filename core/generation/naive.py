"""The naive stepper: each step runs the full forward over the last R tokens, O(R) work per sample.

The reference every fast stepper is tested against, step by step (tests/test_wavenet.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.conditioning import Cond
from core.generation.stepper import SamplingLoop, check_prime, model_device, register_stepper
from core.models.wavenet import WaveNet


@register_stepper("wavenet", "naive")
class NaiveStepper(SamplingLoop):
    """Each step runs the full forward over the last R+1 tokens: O(R) work per sample.

    `history` keeps only the last R known tokens, x_{t-R} .. x_{t-1}.
    """

    def __init__(self, model: WaveNet, batch: int, cond: Cond | None = None, seed: int | None = None):
        self.model, self.batch, self.cond = model, batch, cond
        self.history = torch.zeros(batch, 0, dtype=torch.long, device=model_device(model))
        self.t = 0
        self._init_sampling(seed, model_device(model))

    rank = 0

    @staticmethod
    def unusable(model: torch.nn.Module) -> str | None:
        return None

    def prime(self, tokens: torch.Tensor, logits: bool = True) -> torch.Tensor | None:
        """tokens (B, P) -> logits (B, Q, P) (None if not `logits`); the next step() takes prev = tokens[:, -1]."""
        check_prime(self, tokens)
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
