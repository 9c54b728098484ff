"""What a model is conditioned on, shared by every family: `Cond` and the class embedding check."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Cond:
    """Conditioning for one batch.

    classes: LongTensor (B,) — a global class / speaker id per sequence.
    local:   FloatTensor (B, C_local, T_local) — features at 1/local_hop of the sample rate;
             frame j covers samples [j*hop, (j+1)*hop).
    """

    classes: torch.Tensor | None = None
    local: torch.Tensor | None = None


def embed_classes(embedding: nn.Embedding | None, n_classes: int, classes: torch.Tensor | None) -> torch.Tensor | None:
    """classes (B,) -> embedding(classes) (B, D), after checking they fit a model with n_classes (0 = none)."""
    if not n_classes:
        if classes is not None:
            raise ValueError("this model has no classes (n_classes=0) but Cond.classes was given")
        return None
    if classes is None:
        raise ValueError(f"this model is class-conditional: pass Cond(classes=...) with ids in [0, {n_classes})")
    if classes.min() < 0 or classes.max() >= n_classes:
        raise ValueError(f"class ids must be in [0, {n_classes}), got {classes.tolist()}")
    return embedding(classes)
