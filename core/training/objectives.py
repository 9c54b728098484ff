"""Objectives: what a training step minimises and what evaluation reports, in one home per kind.

    objective = cfg.objective.build(model, seed, training=True)   # or training=False to evaluate
    out = objective(net, batch, state)      # ObjectiveOutput(loss, sums, count, state)

`sums` are additive over batches (so evaluation and logging pool them across batches and
processes), each divided by `count` for reporting: "nll_nats" is required (the sum of -log p,
or of -bound, in nats); "acc" (the count of correct argmax predictions) and others are
optional. `state` is carried into the next batch of the same stream (truncated backprop) and is
None for objectives that need none. The training loop and `core.evaluate` both call an
objective, so what is trained and what is reported can never drift.

An objective is a config dataclass registered by name (the `objective` section of a training
config, `{"name": "unroll", "steps": 8, ...}`) whose `build(model, seed, training)` returns the
callable (for training, or for evaluation, which may score differently: unrolling is a training
device, evaluated by teacher forcing), and whose `check(model, dataset, world)` refuses a run it
cannot serve before training starts.

An objective reaches the model through `through(net, fn)`: under torchrun `net` is a
DistributedDataParallel of `Through(model)`, and DDP synchronises the gradients of work done inside
the forward of the module it wraps only. The SMC engine (encode, propose_and_weight) and truncated
backprop (nll, zero_state) call a model's other methods, so that work runs as `Through`'s forward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from core.config_dicts import dataclass_from_dict
from core.data.batch import Batch
from core.errors import ConfigError
from core.registries import registrar
from core.training.unroll import unrolled_nll
from core.validation import check_int, is_number, need

LN2 = math.log(2.0)
OBJECTIVES: dict[str, type] = {}


class ObjectiveOutput(NamedTuple):
    loss: torch.Tensor  # scalar to minimise
    sums: dict[str, float]  # additive statistics; "nll_nats" always
    count: float  # what the sums are divided by: scored tokens, or timesteps
    state: object = None  # carried to the next batch of the same streams


register_objective = registrar(OBJECTIVES, "name", "objective")  # @register_objective("name") on a config class


class Through(nn.Module):
    """The module DDP wraps under torchrun: its forward runs fn(model), whatever methods of the model fn calls."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[[nn.Module], object]) -> object:
        return fn(self.model)


def through(net: nn.Module, fn: Callable[[nn.Module], object]) -> object:
    """fn(model): inside DDP's forward when `net` is a DistributedDataParallel of a Through, else fn(net)."""
    return net(fn) if isinstance(net, DistributedDataParallel) else fn(net)


def teacher_forced(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, float], float]:
    """Cross-entropy of logits (B, Q, T) against batch.x (B, T) from batch.score_from on:
    (mean loss, {"nll_nats": sum, "acc": correct count}, scored tokens)."""
    start = batch.score_from
    scored, target = logits[:, :, start:], batch.x[:, start:]
    nll = F.cross_entropy(scored, target)
    count = float(target.numel())
    with torch.no_grad():
        correct = (scored.argmax(1) == target).sum().item()
    return nll, {"nll_nats": nll.item() * count, "acc": float(correct)}, count


def _teacher_forcing(net: torch.nn.Module, batch: Batch, state: object = None) -> ObjectiveOutput:
    loss, sums, count = teacher_forced(through(net, lambda model: model(batch.x, batch.cond)), batch)
    return ObjectiveOutput(loss, sums, count)


@register_objective("nll")
@dataclass
class NllObjective:
    """Teacher forcing: the mean cross-entropy of every scored token given the true past."""

    def check(self, model: torch.nn.Module, dataset, world: int) -> None:
        """Every autoregressive family can be trained this way."""

    def build(self, model: torch.nn.Module, seed: int, training: bool = True) -> Callable[..., ObjectiveOutput]:
        return _teacher_forcing


@register_objective("unroll")
@dataclass
class UnrollObjective:
    """Train unrolling (core.training.unroll): teacher forcing plus `weight` x the mean n-step loss
    through the model's own Gumbel-softmax samples, from a random origin per step."""

    steps: int = 8  # n: the roll-out length
    weight: float = 0.5  # of the unrolled loss, added to the teacher-forced one
    tau: float = 1.0  # Gumbel-softmax temperature
    hard: bool = False  # straight-through: hard one-hot forward, soft gradient

    def __post_init__(self) -> None:
        check_int("objective.steps", self.steps, 1)
        for name in ("weight", "tau"):
            value = getattr(self, name)
            need(is_number(value) and value > 0, f"objective.{name} must be a number > 0, got {value!r}")
        need(isinstance(self.hard, bool), f"objective.hard must be true or false, got {self.hard!r}")

    def check(self, model: torch.nn.Module, dataset, world: int) -> None:
        if model.model_type != "wavenet" or world > 1:
            raise ConfigError("the unroll objective works with a single-process WaveNet run only")
        scored = dataset.collate([dataset[0]]).x.shape[1] - dataset.score_from
        if self.steps > scored:
            raise ConfigError(f"objective.steps={self.steps} is longer than the {scored} scored positions "
                              "of a training window")

    def build(self, model: torch.nn.Module, seed: int, training: bool = True) -> Callable[..., ObjectiveOutput]:
        if not training:
            return _teacher_forcing
        generator = torch.Generator().manual_seed(seed + 1)

        def objective(net: torch.nn.Module, batch: Batch, state: object = None) -> ObjectiveOutput:
            nll, sums, count = teacher_forced(net(batch.x, batch.cond), batch)
            last = batch.x.shape[1] - self.steps
            origin = int(torch.randint(batch.score_from, last + 1, (1,), generator=generator))
            unrolled = unrolled_nll(net, batch.x, batch.cond, origin, self.steps, self.tau, self.hard,
                                    generator).mean()
            sums["unroll_nll_nats"] = unrolled.item() * count  # reported as its mean, like the others
            return ObjectiveOutput(nll + self.weight * unrolled, sums, count)

        return objective


def objective_config_from_dict(d: dict | None, default: str):
    """The objective's config from an `objective` section {"name": ..., **settings} (`default` if absent)."""
    d = dict(d or {})
    name = d.pop("name", default)
    if name not in OBJECTIVES:
        raise ConfigError(f"objective.name must be one of {tuple(OBJECTIVES)}, got {name!r}")
    return dataclass_from_dict(OBJECTIVES[name], d, f"{name} objective")
