"""The training CLI (the loop itself is core.training.loop.Trainer).

    python -m core.train --config CONFIG.json --run-dir runs/NAME [--set train.lr=3e-4 ...]
    python -m core.train --run-dir runs/NAME --resume [--set train.max_steps=5000]
    torchrun --nproc_per_node=2 -m core.train --config CONFIG.json --run-dir runs/NAME

The wayback seed's own command line is accepted too (core.models.wayback_hparams), so its README
commands run with only the script name changed:

    python -m core.train --data_dir DIR --base_output_dir runs --basename stack --resume false \
        --max_step_count 1000 --validation_interval 100 --hyperparameters '{layout: stack, ...}'

SIGTERM or Ctrl-C stops gracefully: the current step finishes and a checkpoint is written.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from pathlib import Path

import torch.distributed as dist

from core.errors import ConfigError, StudioError
from core.models.wayback_hparams import seed_train_args
from core.training import config as train_config
from core.training.loop import Trainer

SEED_FLAGS = {"--hyperparameters", "--data_dir", "--base_output_dir", "--basename", "--max_step_count"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a.split("=")[0] in SEED_FLAGS for a in argv):
        return _seed_main(argv)
    p = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON config file with model, data and train sections")
    p.add_argument("--run-dir", required=True, help="the run folder to write (or resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (JSON-parsed), e.g. --set train.lr=3e-4; repeatable")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or mps (default: best available)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = p.parse_args(argv)
    try:
        run_dir = Path(args.run_dir)
        if args.resume:
            cfg = _resumed_config(run_dir, args.overrides)
        else:
            cfg = train_config.load(args.config, args.overrides)
        trainer = Trainer(cfg, run_dir, resume=args.resume, device=args.device,
                          show_progress=not args.no_progress, command=_command(argv))
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _train(trainer)


def _seed_main(argv: list[str]) -> int:
    """The wayback seed's `train` command line: --data_dir, --base_output_dir, --hyperparameters, ..."""
    try:
        seed = seed_train_args(argv)
        run_dir = Path(seed["run_dir"])
        resume = seed["resume"] and (run_dir / "config.json").is_file()
        if resume:  # the run's own config, with the command's step limit and validation interval
            limits = {k: v for k, v in seed["config"]["train"].items() if k in ("max_steps", "valid_every")}
            cfg = _resumed_config(run_dir, [f"train.{k}={v}" for k, v in limits.items()])
        else:
            cfg = train_config.from_dict(seed["config"])
        trainer = Trainer(cfg, run_dir, resume=resume, command=_command(argv))
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _train(trainer)


def _resumed_config(run_dir: Path, overrides: list[str]) -> train_config.TrainConfig:
    if not (run_dir / "config.json").is_file():
        raise ConfigError(f"--resume: {run_dir} has no config.json; start the run without --resume")
    base = json.loads((run_dir / "config.json").read_text())
    return train_config.from_dict(train_config.apply_overrides(base, overrides))


def _command(argv: list[str]) -> str:
    return "python -m core.train " + " ".join(shlex.quote(a) for a in argv)


def _train(trainer: Trainer) -> int:
    """Run to the end or a stop signal; print the last validation metrics as one JSON line."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(trainer, "stop_requested", True))
    try:
        metrics = trainer.run()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if trainer.is_main:
        print(json.dumps({"step": trainer.step, **{f"valid_{k}": v for k, v in metrics.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
