"""Upper bounds on what a run started from the app may ask for, checked before anything is built.

The training CLI takes any config; an app takes configs from whoever reaches it, so each run the
Train page starts (core.jobs.JobManager) is checked against a RunLimits first. `check_limits` is
arithmetic on the config, so a config far over a bound is refused at once, with a message naming
the field and the bound. The model's size needs the model built (on the meta device: shapes, no
tensors, but a module object per layer), so `check_model_size` runs in the bounded child process
of core.data_check, with the data check.

    limits = RunLimits()                          the defaults below
    check_limits(cfg, processes, limits)          ConfigError naming the first field over its bound
    check_model_size(cfg, max_parameters)         ConfigError when the model has more parameters
    parameter_count(cfg)                          the model's parameters, counted without allocating them

The data a kind would hold is estimated by its `footprint(model_config)` (core.data.registry);
kinds read from files have none, and their size is bounded by the data check's own memory limit
(RunLimits.check_bytes, core.data_check).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import ConfigError
from core.models import build_model
from core.training.config import TrainConfig

MIB = 2**20


@dataclass(frozen=True)
class RunLimits:
    max_steps: int = 1_000_000  # train.max_steps
    batch_size: int = 1024  # train.batch_size (per process)
    parameters: int = 50_000_000  # the model's size
    processes: int = 8  # processes per run (and never more than the device has)
    keep_checkpoints: int = 10  # train.keep_checkpoints
    kept_every: int = 20  # checkpoints train.keep_every may keep: max_steps // keep_every
    log_rows: int = 100_000  # train rows in metrics.jsonl: max_steps // log_every
    validations: int = 100_000  # validations (each saves a checkpoint, and a row): max_steps // valid_every
    data_bytes: int = 256 * MIB  # what the data of a synthetic kind (tones, fourier, ghmm) holds in memory
    check_bytes: int = 1024 * MIB  # memory the data check's process may use beyond its imports
    check_seconds: float = 120.0  # time the data check's process may take


def parameter_count(cfg: TrainConfig) -> int:
    """The number of parameters of the config's model, built on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        model = build_model(cfg.model_config())
    return sum(p.numel() for p in model.parameters())


def check_limits(cfg: TrainConfig, processes: int, limits: RunLimits) -> None:
    """ConfigError naming the first field of `cfg` (or `processes`) over its bound in `limits`."""
    t = cfg.train
    _at_most("train.max_steps", t.max_steps, limits.max_steps)
    _at_most("train.batch_size", t.batch_size, limits.batch_size)
    _at_most("processes", processes, limits.processes)
    _at_most("train.keep_checkpoints", t.keep_checkpoints, limits.keep_checkpoints)
    if t.keep_every and t.max_steps // t.keep_every > limits.kept_every:
        raise ConfigError(f"train.keep_every={t.keep_every} would keep {t.max_steps // t.keep_every:,} checkpoints "
                          f"over {t.max_steps:,} steps; at most {limits.kept_every} on this server: set "
                          f"train.keep_every to {-(-t.max_steps // limits.kept_every):,} or more, or 0 (off)")
    for name, every, most in (("log_every", t.log_every, limits.log_rows),
                              ("valid_every", t.valid_every, limits.validations)):
        if t.max_steps // every > most:
            raise ConfigError(f"train.{name}={every} means {t.max_steps // every:,} times over {t.max_steps:,} "
                              f"steps; at most {most:,} on this server: set train.{name} to "
                              f"{-(-t.max_steps // most):,} or more")
    footprint = cfg.data.footprint(cfg.model_config())
    if footprint is not None and footprint[0] > limits.data_bytes:
        nbytes, how = footprint
        raise ConfigError(f"the data would hold {how}, about {nbytes / MIB:,.0f} MiB in memory; at most "
                          f"{limits.data_bytes / MIB:,.0f} MiB on this server: make it smaller")


def check_model_size(cfg: TrainConfig, max_parameters: int) -> None:
    """ConfigError when the config's model has more than `max_parameters` parameters."""
    size = parameter_count(cfg)
    if size > max_parameters:
        raise ConfigError(f"the model has {size:,} parameters; at most {max_parameters:,} on this server: "
                          "make the model config smaller (fewer channels or layers)")


def _at_most(name: str, value: int, most: int) -> None:
    if value > most:
        raise ConfigError(f"{name} must be at most {most:,} on this server, got {value:,}")
