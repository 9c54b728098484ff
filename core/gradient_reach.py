"""How far back the gradient of one step's loss reaches in a wayback-family model, measured by autograd.

    lag_gradients(model, steps)   LagGradients: |d loss_t / d e_k| for the input embedding of every step k,
                                  and |d loss_t / d h_i(k)| for every update of every layer i

The loss is the NLL of the last step's chunk (t = steps - 1) on random tokens from a stream's start,
with the running statistics (no batch statistics, nothing in the model changes). The model's forward
cuts each layer's gradient where its schedule says (core/models/wayback_schedule.py), so these norms
are exactly zero where `Schedule.reach(t)` says no gradient arrives, and non-zero within.

An input embedding e_k is what step k reads: the chunk before it (the start symbols at k = 0). Its
distance from the loss is counted in samples: the chunk it carries starts (t - k + 1) * chunk_size
samples before the chunk the loss scores, so the nearest input is chunk_size samples back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.models.wayback import Wayback


@dataclass
class LagGradients:
    """The gradient norms of the loss at `loss_step`, averaged over the random sequences.

    samples_back: LongTensor (K,), entry k: (loss_step - k + 1) * chunk_size
    input:        FloatTensor (K,), entry k: |d loss / d e_k| (L2 over the embedding)
    layers:       per layer, {step: |d loss / d h_i(step)|} for every step the layer updates at
    """

    loss_step: int
    samples_back: torch.Tensor
    input: torch.Tensor
    layers: list[dict[int, float]]


def lag_gradients(model: Wayback, steps: int, sequences: int = 2, seed: int = 0) -> LagGradients:
    """The gradient of the loss at step t = steps - 1 with respect to every earlier input and layer update.

    `sequences` random token sequences (seeded by `seed`) of steps * chunk_size samples, from a stream's start.
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not (isinstance(sequences, int) and sequences >= 1):
        raise ValueError(f"sequences must be an integer >= 1, got {sequences!r}")
    c = model.config
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, c.quantization_levels, (sequences, steps * c.chunk_size), generator=g).to(device)
    state = model.zero_state(sequences)
    chunks = x.view(sequences, steps, c.chunk_size)
    # Same as Wayback._chunks: the chunk each step reads, start symbols first. Kept apart because the
    # embedding of these chunks must be a tensor of its own here, to differentiate with respect to it.
    reads = torch.cat([state.last.unsqueeze(1), chunks[:, :-1]], dim=1)
    with torch.enable_grad():
        e = model.embed(reads, False).detach().requires_grad_(True)  # (B, K, E)
        trace: list = []
        h, _, _ = model.recur(e, state, False, trace)
        logits = model.readout(h[:, -1:], chunks[:, -1:], False)  # (B, 1, c, Q)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunks[:, -1].reshape(-1), reduction="sum")
        grads = torch.autograd.grad(loss / sequences, [e, *[out for _, _, out in trace]], allow_unused=True)
    layers: list[dict[int, float]] = [{} for _ in model.cells]
    for (layer, step, _), grad in zip(trace, grads[1:], strict=True):
        layers[layer][step] = 0.0 if grad is None else float(grad.detach().norm(dim=-1).mean())
    t = steps - 1
    return LagGradients(
        loss_step=t,
        samples_back=(t - torch.arange(steps) + 1) * c.chunk_size,
        input=grads[0].detach().norm(dim=-1).mean(0).cpu(),
        layers=layers,
    )
