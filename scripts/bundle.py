"""Bundle a run's latest checkpoint into checkpoints/, and turn a bundle back into a run to train on.

    python scripts/bundle.py export runs/chorales checkpoints/chorales-wavenet --data "..."
    python scripts/bundle.py restore checkpoints/chorales-wavenet runs/chorales
    python -m core.train --run-dir runs/chorales --resume --set train.max_steps=20000

A bundle is a normal checkpoint folder (config.json, model.safetensors, README.md, metrics.json)
plus what resuming needs: the run's train_config.json, optimizer.safetensors and
trainer_state.json. Its model card records the command, data, training time and the
validation NLL in bits per sample, all read from the run folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import checkpoints  # noqa: E402

RESUME_FILES = ("optimizer.safetensors", "trainer_state.json")


def training_seconds(run: Path) -> float:
    """Wall time covered by the run's metrics rows (first to last)."""
    times = [json.loads(line)["time"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return max(times) - min(times) if times else 0.0


def export(run: Path, dest: Path, data: str, command: str) -> Path:
    ckpt = checkpoints.latest_checkpoint(run)
    if ckpt is None:
        raise SystemExit(f"{run} has no checkpoint yet")
    model = checkpoints.load_checkpoint(ckpt)
    metrics = checkpoints.read_metrics(ckpt)
    hours = training_seconds(run) / 3600
    train_cfg = json.loads((run / "config.json").read_text())
    notes = "\n".join([
        "## How it was made", "",
        f"- Command: `{command}`",
        f"- Data: {data}",
        f"- Training: {metrics.get('step', '?')} steps, {hours:.2f} h on a 2-core CPU",
        f"- Validation NLL: {metrics.get('valid_bits_per_sample', '?')} bits per sample "
        f"({metrics.get('valid_nll_nats', '?')} nats)",
        "- Rebuild or continue: `python scripts/bundle.py restore <this folder> runs/NAME`, then "
        "`python -m core.train --run-dir runs/NAME --resume --set train.max_steps=N`.",
    ])
    checkpoints.save_checkpoint(
        model, dest, overwrite=True, metrics=metrics, card=checkpoints.model_card(model, metrics, notes),
        extra_files={"train_config.json": json.dumps(train_cfg, indent=2).encode(),
                     **{name: (ckpt / name).read_bytes() for name in RESUME_FILES}},
    )
    return dest


def restore(bundle: Path, run: Path) -> Path:
    state = json.loads((bundle / "trainer_state.json").read_text())
    if (run / "config.json").exists():
        raise SystemExit(f"{run} already holds a run")
    target = run / "checkpoints" / f"step_{state['step']:08d}"
    shutil.copytree(bundle, target)
    shutil.copy(bundle / "train_config.json", run / "config.json")
    (run / "latest").write_text(target.name)
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    e = sub.add_parser("export", help="copy a run's latest checkpoint into a bundle folder")
    e.add_argument("run", type=Path)
    e.add_argument("dest", type=Path)
    e.add_argument("--data", required=True, help="what the model was trained on, for the model card")
    e.add_argument("--command", required=True, help="the training command, for the model card")
    r = sub.add_parser("restore", help="make a run folder from a bundle, to resume training")
    r.add_argument("bundle", type=Path)
    r.add_argument("run", type=Path)
    args = p.parse_args()
    print(export(args.run, args.dest, args.data, args.command) if args.verb == "export"
          else restore(args.bundle, args.run))


if __name__ == "__main__":
    main()
