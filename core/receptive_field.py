"""Receptive fields, analytic and measured by gradients.

The analytic field of a WaveNet is R = sum_l (K-1) d_l + K_in (WaveNetConfig.receptive_field):
the logits at t depend on x_{t-R} .. x_{t-1}. The measured field takes the gradient of the
logits at t with respect to a one-hot input and reports which positions it reaches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.conditioning import Cond
from core.models.wavenet import WaveNet


def input_gradient(model: WaveNet, t: int, length: int | None = None, cond: Cond | None = None,
                   seed: int = 0) -> torch.Tensor:
    """|d logits[:, :, t] / d onehot(x)| summed over channels: FloatTensor (length,).

    A random token sequence of `length` (default t + 1) is fed as a one-hot float tensor so
    the input is differentiable; entry j is the gradient magnitude at input position j.
    """
    length = t + 1 if length is None else length
    if not 0 <= t < length:
        raise ValueError(f"t must be in [0, length={length}), got {t}")
    q = model.config.quantization_levels
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    tokens = torch.randint(0, q, (1, length), generator=g).to(device)
    x = F.one_hot(tokens, q).float().transpose(1, 2).requires_grad_(True)  # (1, Q, length)
    logits = model(x, cond)  # (1, Q, length)
    # A random projection of the logits at t: nonzero gradient wherever any logit depends on x_j.
    w = torch.randn(q, generator=g).to(device)
    (logits[0, :, t] * w).sum().backward()
    return x.grad[0].abs().sum(0).detach().cpu()


def measured_receptive_field(model: WaveNet, cond: Cond | None = None) -> tuple[int, int]:
    """(first, last) input offsets j >= 1 with nonzero gradient of the logits at t w.r.t. x_{t-j}.

    For a correct model this is (1, R): nothing at or after t, everything back to t - R.
    """
    r = model.receptive_field
    t = r + 4  # far enough from the start that the start symbol and padding are out of reach
    grad = input_gradient(model, t, length=t + 3, cond=cond)
    nonzero = (grad > 0).nonzero().flatten().tolist()
    if not nonzero:
        raise ValueError("the logits do not depend on any input")
    offsets = [t - j for j in nonzero]
    return min(offsets), max(offsets)
