"""The training configuration: one JSON file of three sections, plus `--set key=value` overrides.

    {"model": {"model_type": "wavenet", ...}, "data": {...}, "train": {...}}

`--set train.lr=3e-4 model.dilations=[1,2,4,8]` parses each value as JSON and falls back to
a plain string. Everything is validated here, before any process starts, so a bad value is
refused with its reason instead of crashing a run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.config_dicts import dataclass_from_dict
from core.data import DataConfig
from core.errors import ConfigError
from core.models import config_from_dict


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_norm: float = 1.0  # global gradient-norm clip; 0 = off
    decay_rate: float = 0.5  # lr *= decay_rate after decay_patience validations without improvement
    decay_patience: int = 3
    batch_size: int = 8  # windows per step (per process under torchrun)
    max_steps: int = 1000
    valid_every: int = 100  # validate and checkpoint every N steps
    valid_batches: int = 0  # 0 = the whole validation split
    log_every: int = 10
    keep_checkpoints: int = 2  # the newest N checkpoints are kept, plus the two kinds below
    keep_best: bool = True  # also keep the one with the lowest validation NLL (named in the run's `best` file)
    keep_every: int = 0  # also keep every checkpoint whose step is a multiple of N, to compare later; 0 = off
    seed: int = 0
    # Train unrolling (core/unroll.py): add unroll_weight x the mean n-step loss through the model's
    # own Gumbel-softmax samples from a random origin per step; 0 steps = off.
    unroll_steps: int = 0
    unroll_weight: float = 0.5
    unroll_tau: float = 1.0  # Gumbel-softmax temperature
    unroll_hard: bool = False  # straight-through: hard one-hot forward, soft gradient

    def __post_init__(self) -> None:
        positive = ("lr", "decay_rate", "batch_size", "max_steps", "valid_every", "log_every", "keep_checkpoints")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"train.{name} must be a number > 0, got {v!r}")
        for name in ("weight_decay", "clip_norm", "decay_patience", "valid_batches", "seed", "keep_every"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"train.{name} must be a number >= 0, got {v!r}")
        for name in ("batch_size", "max_steps", "valid_every", "log_every", "keep_checkpoints",
                     "decay_patience", "valid_batches", "seed", "keep_every"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"train.{name} must be an integer, got {getattr(self, name)!r}")
        if not (isinstance(self.unroll_steps, int) and self.unroll_steps >= 0):
            raise ConfigError(f"train.unroll_steps must be an integer >= 0, got {self.unroll_steps!r}")
        for name in ("unroll_weight", "unroll_tau"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"train.{name} must be a number > 0, got {v!r}")
        for name in ("unroll_hard", "keep_best"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"train.{name} must be true or false, got {getattr(self, name)!r}")
        if self.decay_rate > 1:
            raise ConfigError(f"train.decay_rate must be in (0, 1], got {self.decay_rate!r}")


@dataclass
class TrainConfig:
    model: dict = field(default_factory=lambda: {"model_type": "wavenet"})
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)

    def model_config(self):
        return config_from_dict(self.model)

    def to_dict(self) -> dict:
        return {"model": dict(self.model), "data": asdict(self.data), "train": asdict(self.train)}


def from_dict(d: dict) -> TrainConfig:
    """Build and validate a TrainConfig; ConfigError names the bad section or key."""
    if not isinstance(d, dict):
        raise ConfigError("a training config must be a JSON object with 'model', 'data' and 'train'")
    unknown = sorted(set(d) - {"model", "data", "train"})
    if unknown:
        raise ConfigError(f"unknown config sections: {', '.join(unknown)}; known: model, data, train")
    model = dict(d.get("model") or {"model_type": "wavenet"})
    model.setdefault("model_type", "wavenet")
    cfg = TrainConfig(model=model, data=dataclass_from_dict(DataConfig, d.get("data"), "data"),
                      train=dataclass_from_dict(OptimConfig, d.get("train"), "train"))
    # Normalise the model section through its dataclass (fills defaults, validates).
    cfg.model = {"model_type": model["model_type"], **asdict(cfg.model_config())}
    return cfg


def load(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a JSON config file (or start from defaults when path is None) and apply overrides."""
    d: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from e
    return from_dict(apply_overrides(d, overrides))


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings to a nested dict (values parsed as JSON if they can be)."""
    d = json.loads(json.dumps(d))
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or parts[0] not in ("model", "data", "train") or not parts[1]:
            raise ConfigError(f"--set takes section.key=value with section model, data or train; got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        d.setdefault(parts[0], {})[parts[1]] = value
    return d
