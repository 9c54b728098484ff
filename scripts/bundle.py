"""Bundle a run's checkpoint into checkpoints/, and turn a bundle back into a run to train on.

    python scripts/bundle.py export runs/chorales checkpoints/chorales-wavenet --data "..." [--step N]
    python scripts/bundle.py restore checkpoints/chorales-wavenet runs/chorales
    python -m core.train --run-dir runs/chorales --resume --set train.max_steps=20000

A bundle is a normal checkpoint folder (config.json, model.safetensors, README.md, metrics.json)
plus the run's train_config.json and, where the checkpoint has them, what resuming needs:
optimizer.safetensors and trainer_state.json (and, for a run with train.ema, the trained weights beside the
averaged ones the bundle is sampled with: trained.safetensors). Its model card records the command, data,
training time (up to the bundled step) and the validation NLL in the model's unit (bits per sample for
audio, per dim for images: core.checkpoints.nll_unit), all read
from the run folder. `--step` bundles an earlier checkpoint than the latest.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import checkpoints  # noqa: E402
from core.evaluate import evaluate_checkpoint  # noqa: E402
from core.run_files import metrics_rows  # noqa: E402
from core.training.loop import TRAINED  # noqa: E402

RESUME_FILES = ("optimizer.safetensors", "trainer_state.json")


STOPPED_GAP_S = 600.0  # rows come every few seconds to minutes; a longer gap is time the run was stopped


def training_seconds(run: Path, up_to_step: int | None = None) -> float:
    """Wall time the run trained (to `up_to_step` if given): the gaps between its metrics rows, less
    those over STOPPED_GAP_S (between a stop and a resume: sessions apart)."""
    rows = metrics_rows(run)
    times = sorted(r["time"] for r in rows if up_to_step is None or r["step"] <= up_to_step)
    return sum(b - a for a, b in itertools.pairwise(times) if b - a <= STOPPED_GAP_S)


def _resumable(folder: Path) -> bool:
    """Whether `folder` holds the training state resuming needs (RESUME_FILES)."""
    return all((folder / name).is_file() for name in RESUME_FILES)


def _checkpoint(run: Path, step: int | None) -> Path:
    if step is None:
        ckpt = checkpoints.latest_checkpoint(run)
        if ckpt is None:
            raise SystemExit(f"{run} has no checkpoint yet")
        return ckpt
    ckpt = run / "checkpoints" / f"step_{step:08d}"
    if not (ckpt / "model.safetensors").is_file():
        raise SystemExit(f"{run} has no checkpoint of step {step} (looked for {ckpt})")
    return ckpt


def export(run: Path, dest: Path, data: str, command: str, test: bool = False, notes_file: Path | None = None,
           step: int | None = None, hardware: str = "a 2-core CPU", title: str = "") -> Path:
    """Write the bundle of the checkpoint of `step` (default: the latest); `test` adds the whole test
    split's NLL (core.evaluate), `notes_file` more Markdown, `hardware` what it trained on."""
    ckpt = _checkpoint(run, step)
    model = checkpoints.load_checkpoint(ckpt)
    metrics = checkpoints.read_metrics(ckpt)
    unit = f"bits per {checkpoints.nll_unit(checkpoints.config_dict(model))}"  # audio: sample; images: dim
    test_lines = []
    if test:
        report = evaluate_checkpoint(ckpt, "test")
        metrics = {**metrics, "test_bits_per_dim": round(report["bits_per_dim"], 5),
                   "test_nll_nats_per_item": round(report["nll_nats_per_item"], 3)}
        test_lines = [f"- Test NLL: **{report['bits_per_dim']:.4f} {unit}** "
                      f"({report['nll_nats_per_item']:.2f} nats per item, {report['items']:,} items), from "
                      f"`python -m core.evaluate --checkpoint {dest} --split test`"]
        if "fivo_per_t" in report:  # a sequence model: its three bounds, the FIVO seed's Table 1 columns
            bounds = {f"test_{b}_per_t": round(report[f"{b}_per_t"], 4) for b in ("elbo", "iwae", "fivo")}
            metrics = {**metrics, **bounds, "test_particles": report["particles"]}
            test_lines = [f"- Test bounds ({report['particles']} particles, nats per timestep, "
                          f"{report['items']:,} sequences): ELBO **{bounds['test_elbo_per_t']}**, IWAE "
                          f"**{bounds['test_iwae_per_t']}**, FIVO **{bounds['test_fivo_per_t']}**, from "
                          f"`python -m core.evaluate --checkpoint {dest} --split test`"]
    hours = training_seconds(run, metrics.get("step")) / 3600
    train_cfg = json.loads((run / "config.json").read_text())
    resumable = _resumable(ckpt)
    notes = "\n".join([
        "## How it was made", "",
        f"- Command: `{command}`",
        f"- Data: {data}",
        f"- Training: {metrics.get('step', '?')} steps, {hours:.2f} h on {hardware}",
        f"- Validation bounds (nats per timestep): ELBO {metrics['valid_elbo_nats']}, "
        f"IWAE {metrics['valid_iwae_nats']}, FIVO {metrics['valid_fivo_nats']}" if "valid_fivo_nats" in metrics else
        f"- Validation NLL: {metrics.get('valid_bits_per_sample', '?')} {unit} "
        f"({metrics.get('valid_nll_nats', '?')} nats)",
        *test_lines,
        "- Continue: `python scripts/bundle.py restore <this folder> runs/NAME`, then "
        "`python -m core.train --run-dir runs/NAME --resume --set train.max_steps=N`." if resumable else
        "- Weights only (the run kept no optimizer state for this step): rebuild with the command above.",
    ])
    if notes_file is not None:
        notes += "\n\n" + notes_file.read_text().strip()
    checkpoints.save_checkpoint(
        model, dest, overwrite=True, metrics=metrics, card=checkpoints.model_card(model, metrics, notes, title),
        extra_files={"train_config.json": json.dumps(train_cfg, indent=2).encode(),
                     **{name: (ckpt / name).read_bytes() for name in (*RESUME_FILES, TRAINED)
                        if resumable and (ckpt / name).is_file()}},
    )
    return dest


def restore(bundle: Path, run: Path) -> Path:
    if not _resumable(bundle):
        raise SystemExit(f"{bundle} holds weights only, no optimizer state to resume from; "
                         "rebuild it with the command in its README.md")
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
    e.add_argument("--test", action="store_true", help="also measure the test split's NLL for the card")
    e.add_argument("--notes", type=Path, default=None, help="a Markdown file to append to the card")
    e.add_argument("--step", type=int, default=None, help="bundle this step's checkpoint (default: the latest)")
    e.add_argument("--hardware", default="a 2-core CPU", help="what it trained on, for the card")
    e.add_argument("--title", default="", help='what the model is, e.g. "Bach melodies, 8 kHz": the app lists '
                                               "it by this name")
    r = sub.add_parser("restore", help="make a run folder from a bundle, to resume training")
    r.add_argument("bundle", type=Path)
    r.add_argument("run", type=Path)
    args = p.parse_args()
    print(export(args.run, args.dest, args.data, args.command, args.test, args.notes, args.step, args.hardware,
                 args.title)
          if args.verb == "export"
          else restore(args.bundle, args.run))


if __name__ == "__main__":
    main()
