"""Held-out scores of a model on a split, through its objective (the one training minimises).

    evaluate(model, dataset, objective, batch_size, device) -> {"nll_nats", "bits", "acc", ..., "items",
                                                               "dims_per_item"}

Every statistic the objective sums is pooled over all batches (and all processes under
torchrun) and divided by the pooled count: per scored token for the autoregressive families,
per timestep for the bounds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from core.data.batch import SplitDataset
from core.errors import ConfigError
from core.training.objectives import LN2, ObjectiveOutput


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: SplitDataset, objective: Callable[..., ObjectiveOutput],
             batch_size: int, device: torch.device, max_batches: int = 0, world: int = 1, rank: int = 0) -> dict:
    """The objective's statistics per scored unit over `dataset` (its first `max_batches` batches if > 0),
    plus "bits" (nll_nats / ln 2), "items" and "dims_per_item" (scored units per item)."""
    model.eval()
    sums: dict[str, float] = {}
    count, items, state = 0.0, 0, None
    for i, batch in enumerate(dataset.loader(batch_size, world=world, rank=rank, train=False)):
        if max_batches and i >= max_batches:
            break
        out = objective(model, batch.to(device), state)
        for key, value in out.sums.items():
            sums[key] = sums.get(key, 0.0) + value
        count, items, state = count + out.count, items + batch.x.shape[0], out.state
    keys = sorted(sums)
    totals = torch.tensor([sums[k] for k in keys] + [count, float(items)], dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(totals)
    count, items = totals[-2].item(), int(totals[-1].item())
    if count == 0:
        raise ConfigError("the split has no items to evaluate")
    report = {k: totals[i].item() / count for i, k in enumerate(keys)}
    report["bits"] = report["nll_nats"] / LN2
    return {**report, "items": items, "dims_per_item": count / items}
