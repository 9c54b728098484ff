"""The training CLI (the loop itself is core.training.loop.Trainer).

    python -m core.train --config CONFIG.json --run-dir runs/NAME [--set train.lr=3e-4 ...]
    python -m core.train --run-dir runs/NAME --resume [--set train.max_steps=5000]
    torchrun --nproc_per_node=2 -m core.train --config CONFIG.json --run-dir runs/NAME

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
from core.training import config as train_config
from core.training.loop import Trainer


def main(argv: list[str] | None = None) -> int:
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
    command = "python -m core.train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        run_dir = Path(args.run_dir)
        if args.resume:
            if not (run_dir / "config.json").is_file():
                raise ConfigError(f"--resume: {run_dir} has no config.json; start the run without --resume")
            base = json.loads((run_dir / "config.json").read_text())
            cfg = train_config.from_dict(train_config.apply_overrides(base, args.overrides))
        else:
            cfg = train_config.load(args.config, args.overrides)
        trainer = Trainer(cfg, run_dir, resume=args.resume, device=args.device,
                          show_progress=not args.no_progress, command=command)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
