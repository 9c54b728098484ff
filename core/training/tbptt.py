"""Truncated backprop through time for the wayback family: the loss of one segment, the state carried on.

    loss, sums, count, state = tbptt_objective(model, x, state, lengths, reset)
    loss.backward()            # truncated: the model's forward cut each layer's gradient (wayback_schedule)
    ... the next batch of the same streams continues from `state` (already detached)

One home for the loss, for training and evaluation alike: the mean negative log-likelihood in nats of
the scored samples, and additive sums for reporting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from core.data.batch import Batch
from core.errors import ConfigError
from core.models.wayback import RecurrentState, Wayback
from core.training.objectives import ObjectiveOutput, register_objective, through
from core.validation import need


class TBPTTOutput(NamedTuple):
    loss: torch.Tensor  # scalar: mean -log p over the scored samples (nats)
    sums: dict[str, float]  # "nll_nats" (sum of -log p) and "correct" (argmax hits), over scored samples
    count: float  # scored samples
    state: RecurrentState  # the state after the segment, detached, for the next batch of the same streams


def tbptt_objective(model: Wayback, x: torch.Tensor, state: RecurrentState | None,
                    lengths: torch.Tensor | None = None, reset: torch.Tensor | None = None,
                    checkpointed: bool | None = None) -> TBPTTOutput:
    """x (B, T) tokens of the next segment of B streams; state from the previous segment (None: all streams start).

    lengths (B,): valid samples per row (padding after them is not scored; default all T).
    reset (B,) bool: rows where a new sequence starts, whose state restarts from zero.
    checkpointed: recompute each bottom-layer block in the backward (Wayback.nll): about constant memory
    for 1.5-2x the time; None = on an accelerator only.
    """
    b, t = x.shape
    if state is None:
        state = model.zero_state(b)
    elif reset is not None and bool(reset.any()):
        state = state.where(reset.to(x.device), model.zero_state(b))
    nll, hit, new_state = model.nll(x, state, checkpointed)  # (B, T) each
    if lengths is None:
        mask = torch.ones_like(nll, dtype=torch.bool)
    else:
        mask = torch.arange(t, device=x.device).view(1, -1) < lengths.to(x.device).view(-1, 1)
    count = int(mask.sum())
    total = (nll * mask).sum()
    loss = total / max(count, 1)
    correct = (hit & mask).sum()
    return TBPTTOutput(loss, {"nll_nats": float(total.detach()), "correct": float(correct)}, float(count),
                       new_state.detach())


@register_objective("tbptt")
@dataclass
class TbpttObjective:
    """Truncated backprop through time: each batch continues the streams of the one before, the state
    carried on (core.data.segments); the model cuts each layer's gradient after its own boundary.
    Under torchrun each process carries the state of its own streams (rows) only."""

    checkpointed: bool | None = None  # recompute bottom-layer blocks in the backward; None = on an accelerator

    def __post_init__(self) -> None:
        need(self.checkpointed is None or isinstance(self.checkpointed, bool),
             f"objective.checkpointed must be true, false or null, got {self.checkpointed!r}")

    def check(self, model: torch.nn.Module, dataset, world: int) -> None:
        if model.model_type != "wayback":
            raise ConfigError(f"the tbptt objective trains wayback models, not {model.model_type!r}")

    def build(self, model: torch.nn.Module, seed: int, training: bool = True) -> Callable[..., ObjectiveOutput]:
        def objective(net: torch.nn.Module, batch: Batch, state: object = None) -> ObjectiveOutput:
            checkpointed = self.checkpointed if training else False
            out = through(net, lambda model: tbptt_objective(model, batch.x, state, batch.lengths, batch.reset,
                                                             checkpointed))
            sums = {"nll_nats": out.sums["nll_nats"], "acc": out.sums["correct"]}
            return ObjectiveOutput(out.loss, sums, out.count, out.state)

        return objective
