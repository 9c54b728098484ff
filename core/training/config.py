"""The training configuration: one JSON file of four sections, plus `--set key=value` overrides.

    {"model": {"model_type": "wavenet", ...}, "data": {"kind": "tones", ...},
     "objective": {"name": "nll"}, "train": {"lr": ..., ...}}

`model` is the family's config, `data` the data kind's (core.data), `objective` what is
minimised (core.training.objectives; absent = the family's default), `train` the optimiser and
the run (`OptimConfig`). `--set train.lr=3e-4 model.dilations=[1,2,4,8]` parses each value as
JSON and falls back to a plain string. Everything is validated here, before any process starts,
so a bad value is refused with its reason instead of crashing a run.

Configs written before the objective had its own section still load: a `train` section with
`unroll_*` keys becomes the "unroll" objective, and a flat `data` section keeps its kind's keys.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core.config_dicts import dataclass_from_dict
from core.data import data_config, data_config_from_dict, data_config_to_dict
from core.data.registry import KINDS
from core.errors import ConfigError
from core.models import config_from_dict, model_class
from core.training import bound_objective, tbptt  # noqa: F401  (register their objectives)
from core.training.objectives import NllObjective, UnrollObjective, objective_config_from_dict
from core.validation import is_int

SECTIONS = ("model", "data", "objective", "train")
UNROLL_KEYS = {"unroll_steps": "steps", "unroll_weight": "weight", "unroll_tau": "tau", "unroll_hard": "hard"}


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
    init_from: str = ""  # a checkpoint folder whose weights start a new run (fine-tuning); "" = random weights
    # Weight averaging: validation and every checkpoint's weights are an exponential moving average of the trained
    # weights, each step moving it by (1 - ema) towards them (0.999: about the last 1,000 steps); 0 = off.
    ema: float = 0.0
    # The rate rises linearly to lr over the first N steps (step i uses lr * i / N); 0 = off. A run that starts
    # from init_from starts Adam afresh, whose first steps move every weight by about lr, whatever its gradient.
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        def number(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        positive = ("lr", "decay_rate", "batch_size", "max_steps", "valid_every", "log_every", "keep_checkpoints")
        for name in positive:
            v = getattr(self, name)
            if not number(v) or v <= 0:
                raise ConfigError(f"train.{name} must be a number > 0, got {v!r}")
        for name in ("weight_decay", "clip_norm", "decay_patience", "valid_batches", "seed", "keep_every",
                     "warmup_steps"):
            v = getattr(self, name)
            if not number(v) or v < 0:
                raise ConfigError(f"train.{name} must be a number >= 0, got {v!r}")
        for name in ("batch_size", "max_steps", "valid_every", "log_every", "keep_checkpoints",
                     "decay_patience", "valid_batches", "seed", "keep_every", "warmup_steps"):
            if not is_int(getattr(self, name)):
                raise ConfigError(f"train.{name} must be an integer, got {getattr(self, name)!r}")
        if not isinstance(self.init_from, str):
            raise ConfigError(f"train.init_from must be a checkpoint folder's path, got {self.init_from!r}")
        if not isinstance(self.keep_best, bool):
            raise ConfigError(f"train.keep_best must be true or false, got {self.keep_best!r}")
        if not number(self.ema) or not 0 <= self.ema < 1:
            raise ConfigError(f"train.ema must be in [0, 1) (0 = off; 0.999 averages about 1,000 steps), "
                              f"got {self.ema!r}")
        if self.decay_rate > 1:
            raise ConfigError(f"train.decay_rate must be in (0, 1], got {self.decay_rate!r}")


@dataclass
class TrainConfig:
    model: dict = field(default_factory=lambda: {"model_type": "wavenet"})
    data: object = field(default_factory=data_config)  # a data kind's config (core.data)
    objective: object = field(default_factory=NllObjective)  # an objective's config (core.training.objectives)
    train: OptimConfig = field(default_factory=OptimConfig)

    def model_config(self):
        return config_from_dict(self.model)

    def to_dict(self) -> dict:
        return {"model": dict(self.model), "data": data_config_to_dict(self.data),
                "objective": {"name": self.objective.name, **asdict(self.objective)}, "train": asdict(self.train)}


def from_dict(d: dict) -> TrainConfig:
    """Build and validate a TrainConfig; ConfigError names the bad section or key."""
    if not isinstance(d, dict):
        raise ConfigError("a training config must be a JSON object with 'model', 'data', 'objective' and 'train'")
    unknown = sorted(set(d) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown config sections: {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    model = dict(d.get("model") or {"model_type": "wavenet"})
    model.setdefault("model_type", "wavenet")
    train, objective = _migrate_unroll(dict(d.get("train") or {}), d.get("objective"))
    family = model_class(model["model_type"])
    data = data_config_from_dict(d.get("data"))
    # The data fixes model settings left at their defaults (the Train page's form sends every field).
    defaults = asdict(family.config_class())
    given = {k: v for k, v in model.items() if k == "model_type" or v != defaults.get(k)}
    model = {**model, **{k: v for k, v in data.model_settings(given).items() if k in defaults and k not in given}}
    cfg = TrainConfig(model=model, data=data,
                      objective=objective_config_from_dict(objective, family.default_objective),
                      train=dataclass_from_dict(OptimConfig, train, "train"))
    # Normalise the model section through its dataclass (fills defaults, validates).
    cfg.model = {"model_type": model["model_type"], **asdict(cfg.model_config())}
    return cfg


def _migrate_unroll(train: dict, objective: dict | None) -> tuple[dict, dict | None]:
    """Old configs kept train unrolling in four `train.unroll_*` keys: move them to an objective section."""
    old = {new: train.pop(key) for key, new in UNROLL_KEYS.items() if key in train}
    if not old or objective is not None:
        return train, objective
    if old.get("steps", 0) == 0:  # unroll_steps 0 meant off
        return train, None
    defaults = asdict(UnrollObjective())
    return train, {"name": "unroll", **defaults, **old}


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
    """Apply `section.key=value` strings to a nested dict (values parsed as JSON if they can be).

    `data.kind=K` that changes the kind keeps only the data settings kind K has (a tones config
    run with `--set data.kind=audio_folder --set data.root=DIR` drops the tone settings).
    """
    d = json.loads(json.dumps(d))
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or parts[0] not in SECTIONS or not parts[1]:
            raise ConfigError(f"--set takes section.key=value with section {', '.join(SECTIONS)}; got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        section = d.setdefault(parts[0], {})
        if parts == ["data", "kind"] and value != section.get("kind", "tones") and value in KINDS:
            known = {f.name for f in fields(KINDS[value])}
            d["data"] = section = {k: v for k, v in section.items() if k in known}
        section[parts[1]] = value
    return d
