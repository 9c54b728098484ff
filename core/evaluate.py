"""Held-out NLL of a checkpoint: the evaluation CLI (the scoring is core.training.evaluation's,
through the checkpoint's own objective, as in training).

    python -m core.evaluate --checkpoint DIR [--split test] [--batch-size 16] [--max-batches 0]

prints one JSON line: {"split", "items", "dims_per_item", "nll_nats_per_dim", "bits_per_dim",
"nll_nats_per_item", "accuracy"}; for the sequence models (vrnn, srnn, ghmm) the FIVO seed's two
lines come first ("test elbo ll/t: X, iwae ll/t: Y fivo ll/t: Z" and the same per sequence) and
the JSON adds elbo_per_t, iwae_per_t, fivo_per_t, the per-sequence values and the particle count.
A "dim" is one scored token: an audio sample or an image
pixel, so bits_per_dim is bits per sample for audio. The data comes from the training config
saved with the checkpoint: `train_config.json` in a bundle, or the run folder's `config.json`
two levels up from `checkpoints/step_N`; `--config` names another.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from core.checkpoints import load_checkpoint, train_config_path
from core.data import build_split
from core.devices import pick_device
from core.errors import ConfigError, StudioError
from core.inference.bounds import BOUNDS
from core.training import config as train_config
from core.training.evaluation import evaluate


def find_train_config(checkpoint: Path) -> Path:
    """The training config saved with a bundle or a run checkpoint (ConfigError if none)."""
    path = train_config_path(checkpoint)
    if path is not None:
        return path
    raise ConfigError(f"{checkpoint} has no training config next to it (train_config.json, or a run folder's "
                      "config.json); pass --config with the data section to evaluate on")


def evaluate_checkpoint(checkpoint: str | Path, split: str = "test", config: str | Path | None = None,
                        overrides: list[str] = (), batch_size: int = 16, max_batches: int = 0,
                        device: str | None = None) -> dict:
    """The report `python -m core.evaluate` prints, as a dict: split, items, dims_per_item,
    nll_nats_per_dim, bits_per_dim, nll_nats_per_item, accuracy. StudioError if it cannot run."""
    checkpoint = Path(checkpoint)
    dev = pick_device(device)
    model = load_checkpoint(checkpoint, dev)
    cfg = train_config.load(config or find_train_config(checkpoint), list(overrides))
    objective = cfg.objective.build(model, cfg.train.seed, training=False)
    torch.manual_seed(cfg.train.seed)  # the bounds draw particles: the same report every time
    m = evaluate(model, build_split(cfg.data, split, model.config), objective, batch_size, dev, max_batches)
    report = {"split": split, "items": m["items"], "dims_per_item": m["dims_per_item"],
              "nll_nats_per_dim": m["nll_nats"], "bits_per_dim": m["bits"],
              "nll_nats_per_item": m["nll_nats"] * m["dims_per_item"]}
    if "acc" in m:
        report["accuracy"] = m["acc"]
    for bound in BOUNDS:  # the sequence models' bounds, per timestep and per sequence (the seed's report)
        if f"{bound}_nats" in m:
            report[f"{bound}_per_t"] = m[f"{bound}_nats"]
            report[f"{bound}_per_seq"] = m[f"{bound}_nats"] * m["dims_per_item"]
    if "fivo_per_t" in report:
        report["particles"] = cfg.objective.particles
    return report


def seed_lines(report: dict) -> list[str]:
    """The FIVO seed's two evaluation lines, when the report has its bounds."""
    if "fivo_per_t" not in report:
        return []
    split = report["split"]
    return [f"{split} elbo ll/t: {report['elbo_per_t']}, iwae ll/t: {report['iwae_per_t']} "
            f"fivo ll/t: {report['fivo_per_t']}",
            f"{split} elbo ll/seq: {report['elbo_per_seq']}, iwae ll/seq: {report['iwae_per_seq']} "
            f"fivo ll/seq: {report['fivo_per_seq']}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--config", default=None, help="training config whose data section to use")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set data.root=elsewhere")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-batches", type=int, default=0, help="evaluate only this many batches (0 = all)")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    try:
        report = evaluate_checkpoint(args.checkpoint, args.split, args.config, args.overrides, args.batch_size,
                                     args.max_batches, args.device)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in seed_lines(report):
        print(line)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
