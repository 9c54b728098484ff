"""Pure functions from logits to samples. No state but the torch.Generator passed in."""

from __future__ import annotations

import torch


def check_sampling_args(temperature: float, top_k: int | None) -> None:
    """ValueError naming the argument when temperature or top_k is out of range."""
    if not (isinstance(temperature, (int, float)) and temperature >= 0 and temperature == temperature):
        raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and not (isinstance(top_k, int) and top_k >= 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """(B, Q) -> (B, Q) with all but the k largest logits of each row set to -inf."""
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one category per row: logits (B, Q) -> LongTensor (B,).

    temperature 0 is greedy (argmax); otherwise Gumbel-max on logits / temperature,
    which draws exactly from softmax(logits / temperature) restricted to the top k.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = top_k_filter(logits, top_k)
    return (logits / temperature + gumbel_noise(logits, generator)).argmax(dim=-1)


def gumbel_noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gumbel noise -log(-log U) of `like`'s shape, device and dtype."""
    u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    return -torch.log(-torch.log(u.clamp_(min=torch.finfo(u.dtype).tiny)))
