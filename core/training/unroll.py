"""Train unrolling: an n-step loss through the model's own rolled-out, differentiable samples.

The one-step (teacher-forced) loss never shows the model its own mistakes, so errors drift
during generation (seed 003, "Train Unrolling"). Here, from an origin o, the model predicts
x_o from the true past, draws a Gumbel-softmax sample y_o (a soft one-hot; straight-through
makes it hard in the forward pass and soft in the backward pass), feeds y_o back in place of
x_o, predicts x_{o+1}, and so on for n steps. The loss is the mean cross-entropy of the n
predictions against the true values; gradients flow through every sample into the weights.

Each step runs the model on the crop [o - R, o + n) only: R is all the past a prediction sees.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.conditioning import Cond
from core.generation.sampling import gumbel_noise


def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool, generator: torch.Generator | None) -> torch.Tensor:
    """logits (B, Q) -> a relaxed one-hot sample (B, Q); hard = straight-through one-hot."""
    y = torch.softmax((logits + gumbel_noise(logits, generator)) / tau, dim=-1)
    if not hard:
        return y
    one_hot = F.one_hot(y.argmax(-1), y.shape[-1]).to(y)
    return one_hot + y - y.detach()


def unrolled_nll(model, x: torch.Tensor, cond: Cond | None, origin: int, steps: int, tau: float = 1.0,
                 hard: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-step cross-entropy (steps,) in nats of an n-step roll-out from `origin`.

    x: LongTensor (B, T) true tokens; origin + steps <= T. Entry h is the loss at x_{origin+h}
    predicted from the true past before `origin` and the model's own samples after it.
    """
    t = x.shape[1]
    if not (0 <= origin and steps >= 1 and origin + steps <= t):
        raise ValueError(f"need 0 <= origin and origin + steps <= T={t}, got origin={origin}, steps={steps}")
    q = model.config.quantization_levels
    start = max(0, origin - model.receptive_field)
    crop = F.one_hot(x[:, start : origin + steps], q).to(torch.float32).transpose(1, 2)  # (B, Q, T')
    losses = []
    for h in range(steps):
        p = origin - start + h  # position in the crop
        logits = model(crop, cond, offset=start)[:, :, p]  # (B, Q): sees crop[:, :, :p] only
        losses.append(F.cross_entropy(logits, x[:, origin + h]))
        if h + 1 < steps:
            y = gumbel_softmax(logits, tau, hard, generator)
            crop = torch.cat([crop[:, :, :p], y.unsqueeze(-1), crop[:, :, p + 1 :]], dim=2)
    return torch.stack(losses)
