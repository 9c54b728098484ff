"""Stack against wayback on the same audio, at matched parameter count and matched memory per step.

    python scripts/wayback_experiment.py [--datasets melodies tones] [--phase all|train|report]

Two layouts of one recurrent model (3 GRU layers of 64 units, chunks of 4 samples, the same
input/output nets: the same parameters, so the same count) trained by truncated backprop on the same
data for the same number of training samples:

    wayback  periods 1, 4, 4 and boundaries 16 per layer (own clock), bottom-layer blocks recomputed in
             the backward: the top layer's gradient spans 16 x 16 steps x 4 = 1,024 samples
    stack    every layer every step, boundaries 64: a gradient spans 64 x 4 = 256 samples; 64 is
             the boundary whose measured peak memory per step is closest to the wayback layout's

For each data set and layout this trains a resumable run in runs/wayback_experiment/<set>-<layout>
(a run already there is resumed to its budget), measures the peak memory of one training step in a
fresh process (the rise of the resident set over the step, after a warm-up step: /proc's VmHWM reset
through clear_refs; median of 3), evaluates the best-validation checkpoint on the whole test split,
and writes the table to docs/wayback_experiment.json. Training time is the run's wall time as a model
card counts it (scripts/bundle.py), on whatever share of a CPU the run got. --phase report only
re-reads the runs.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUNS = ROOT / "runs" / "wayback_experiment"
RESULTS = ROOT / "docs" / "wayback_experiment.json"
BATCH = 16

DATASETS = {
    "melodies": {"data": {"kind": "audio_folder", "root": "data/melodies8k", "seed": 0},
                 "sampling_frequency": 8000, "samples": 1_500_000,
                 "about": "Bach chorale melodies rendered at 8 kHz (data/melodies8k, scripts/render_chorales.py)"},
    "tones": {"data": {"kind": "tones", "clips": 256, "seconds": 2.0, "seed": 0},
              "sampling_frequency": 16000, "samples": 750_000,
              "about": "256 seeded synthetic 2 s clips at 16 kHz: sines, chords, chirps (core.data.tones)"},
}
SHARED = {"model_type": "wayback", "bit_depth": 8, "cell": "gru", "activation": "elu", "use_bn": False,
          "vskip": True, "chunk_size": 4, "layer_sizes": [64, 64, 64], "io_sizes": [64], "carry": True}
LAYOUTS = {
    "wayback": ({"layout": "wayback", "periods": [1, 4, 4], "boundaries": [16, 16, 16]}, True),
    "stack": ({"layout": "stack", "boundaries": [64, 64, 64]}, False),
}  # layout -> (its model settings, whether bottom-layer blocks are recomputed in the backward)
TRAIN = {"lr": 0.002, "batch_size": BATCH, "decay_rate": 0.5, "decay_patience": 4, "clip_norm": 1.0,
         "valid_batches": 20, "log_every": 25}
VALIDATIONS = 10  # per run: validation every budget / 10 samples picks the best checkpoint


def experiment_config(dataset: str, layout: str) -> dict:
    """The training config of one cell of the table."""
    spec, checkpointed = LAYOUTS[layout]
    model = {**SHARED, **spec, "sampling_frequency": DATASETS[dataset]["sampling_frequency"]}
    segment = model["chunk_size"] * max(model["boundaries"]) * _product(model.get("periods", [1]))
    steps = DATASETS[dataset]["samples"] // (BATCH * segment)
    train = {**TRAIN, "max_steps": steps, "valid_every": max(1, steps // VALIDATIONS)}
    return {"model": model, "data": DATASETS[dataset]["data"],
            "objective": {"name": "tbptt", "checkpointed": checkpointed}, "train": train}


def _product(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def step_memory_mib(config_path: Path, repeats: int = 3) -> float:
    """Median peak memory (MiB) of one training step of the config, each measured in a fresh process."""
    peaks = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, __file__, "--measure-step", str(config_path)], check=True,
                             capture_output=True, text=True, cwd=ROOT)
        peaks.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(peaks)


def _status_mib(key: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) / 1024


def measure_step(config_path: Path) -> float:
    """The rise of this process's resident set over one training step on random tokens (MiB).

    Transparent huge pages are off for this process: with them the kernel backs a large allocation with
    2 MiB pages when and where it chooses, and the same step measured 20 MiB in one process and 69 in another.
    """
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE
    import torch

    from core.models import build_model
    from core.training import config as train_config
    from core.training.tbptt import tbptt_objective

    cfg = train_config.load(config_path)
    model_cfg = cfg.model_config()
    torch.manual_seed(0)
    model = build_model(model_cfg).train()
    x = torch.randint(0, model_cfg.quantization_levels, (cfg.train.batch_size, model_cfg.segment_length))
    for _ in range(2):  # the first step warms the allocator; the second is measured
        before = _status_mib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
        out = tbptt_objective(model, x, None, checkpointed=cfg.objective.checkpointed)
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        peak = _status_mib("VmHWM")
    return peak - before


def train(dataset: str, layout: str) -> Path:
    """Train (or resume) the run of one cell to its budget; its folder."""
    run = RUNS / f"{dataset}-{layout}"
    config_path = RUNS / f"{dataset}-{layout}.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config = experiment_config(dataset, layout)
    config_path.write_text(json.dumps(config, indent=1))
    command = [sys.executable, "-m", "core.train", "--config", str(config_path), "--run-dir", str(run),
               "--no-progress"]
    if (run / "latest").exists():  # the run's own config, with this budget (raised budgets go on from there)
        command += ["--resume", *[f"--set=train.{key}={config['train'][key]}" for key in ("max_steps", "valid_every")]]
    subprocess.run(command, check=True, cwd=ROOT)
    return run


def report_cell(dataset: str, layout: str) -> dict:
    """One row of the table, from the run's files, a fresh memory measurement and a test evaluation."""
    from core.evaluate import evaluate_checkpoint
    from core.models import build_model
    from core.training import config as train_config
    from scripts.bundle import training_seconds

    run = RUNS / f"{dataset}-{layout}"
    config_path = RUNS / f"{dataset}-{layout}.json"
    model_cfg = train_config.load(config_path).model_config()
    checkpoint = run / "checkpoints" / (run / "best").read_text().strip()  # `best` names the best-validation step
    test = evaluate_checkpoint(checkpoint, "test", batch_size=BATCH)
    step = json.loads((checkpoint / "trainer_state.json").read_text()).get("step")
    params = sum(p.numel() for p in build_model(model_cfg).parameters())
    seconds = training_seconds(run)
    return {"dataset": dataset, "layout": layout, "parameters": params,
            "test_bits_per_sample": round(test["bits_per_dim"], 4),
            "test_samples": round(test["items"] * test["dims_per_item"]),
            "best_step": step, "training_samples": DATASETS[dataset]["samples"], "training_seconds": round(seconds),
            "peak_step_memory_mib": round(step_memory_mib(config_path), 1),
            "gradient_span_samples": model_cfg.longest_gradient_span,
            "gradient_span_ms": round(1000 * model_cfg.longest_gradient_span / model_cfg.sampling_frequency, 1),
            "segment_samples": model_cfg.segment_length, "config": experiment_config(dataset, layout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--phase", choices=["all", "train", "report"], default="all")
    parser.add_argument("--measure-step", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_step:
        print(f"{measure_step(args.measure_step):.2f}")
        return
    if args.phase in ("all", "train"):
        for dataset in args.datasets:
            for layout in args.layouts:
                train(dataset, layout)
    if args.phase in ("all", "report"):
        from pages.recurrence_experiment import table_markdown

        rows = json.loads(RESULTS.read_text())["rows"] if RESULTS.exists() else []
        old = {(r["dataset"], r["layout"]): r for r in rows}
        for dataset in args.datasets:
            for layout in args.layouts:
                old[dataset, layout] = report_cell(dataset, layout)
        rows = [old[key] for key in sorted(old)]
        RESULTS.write_text(json.dumps({"datasets": {k: v["about"] for k, v in DATASETS.items()}, "rows": rows},
                                      indent=1) + "\n")
        print(table_markdown(rows, {k: v["about"] for k, v in DATASETS.items()}))


if __name__ == "__main__":
    main()
