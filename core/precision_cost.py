"""What a reduced-precision fused kernel costs in held-out NLL: teacher forcing through its arithmetic.

    bits = teacher_forced_bits(model, batches, ("fused", "fused-bf16"))   # {"pytorch": b, "fused": b, ...}
    report = checkpoint_precision_cost("checkpoints/melodies-wavenet")   # the test split, every precision

Each batch's tokens are forced one step at a time through each fused method (FusedStepper.nll:
the kernel's own logits, its own bfloat16 or int8 products), and scored from the batch's
`score_from` on, as core.evaluate scores them; "pytorch" is the model's float32 forward on the
same tokens. A precision is the default only where it moves every bundled audio model's test
NLL by less than DEFAULT_MAX_CHANGE bits per sample (bench/precision.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

from core.checkpoints import load_checkpoint
from core.data import build_split
from core.data.batch import Batch
from core.evaluate import find_train_config
from core.generation import make_stepper
from core.training import config as train_config
from core.training.objectives import LN2

FUSED_METHODS = ("fused", "fused-bf16", "fused-int8")
DEFAULT_MAX_CHANGE = 0.01  # bits per sample: the most a default precision may move a bundled model's test NLL


@torch.no_grad()
def teacher_forced_bits(model: torch.nn.Module, batches: Iterable[Batch], methods: Iterable[str]) -> dict:
    """Mean -log2 p(x_t | x_<t) over every scored token of `batches`, by "pytorch" (the model's
    forward) and by each fused method in `methods`: {name: bits per token, "tokens": count}."""
    methods = tuple(methods)
    sums = dict.fromkeys(("pytorch", *methods), 0.0)
    count = 0
    for batch in batches:
        x, start = batch.x, batch.score_from
        logits = model(x, batch.cond).double()  # (B, Q, T)
        sums["pytorch"] += F.cross_entropy(logits[:, :, start:], x[:, start:], reduction="sum").item()
        for method in methods:
            stepper = make_stepper(method, model, x.shape[0], batch.cond, seed=0)
            sums[method] += stepper.nll(x)[:, start:].sum().item()  # (B, T) nats
        count += x[:, start:].numel()
    if count == 0:
        raise ValueError("no scored tokens: every batch is shorter than its score_from")
    return {**{name: total / count / LN2 for name, total in sums.items()}, "tokens": count}


def checkpoint_precision_cost(checkpoint: str | Path, methods: Iterable[str] = FUSED_METHODS, split: str = "test",
                              batch_size: int = 16, max_batches: int = 0) -> dict:
    """`teacher_forced_bits` on a checkpoint's `split` (its first `max_batches` batches if > 0), plus
    "change_<method>": bits per sample relative to the float32 kernel ("fused")."""
    model = load_checkpoint(checkpoint, "cpu")
    cfg = train_config.load(find_train_config(Path(checkpoint)))
    loader = build_split(cfg.data, split, model.config).loader(batch_size, train=False)
    batches = (b for i, b in enumerate(loader) if not max_batches or i < max_batches)
    methods = tuple(dict.fromkeys(("fused", *methods)))
    bits = teacher_forced_bits(model, batches, methods)
    changes = {f"change_{m}": bits[m] - bits["fused"] for m in methods if m != "fused"}
    return {"checkpoint": str(checkpoint), "split": split, **bits, **changes}
