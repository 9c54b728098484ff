"""Speed of the sequence latent-variable models on JSB chorales, through the training objective itself.

    python bench/sequences.py [--steps 20] [--batch 4] [--particles 4] [--threads 1]

For VRNN and SRNN (filtering proposals, latent 64) and each bound (ELBO, IWAE, FIVO at --particles
particles, core.training.bound_objective, the same code `python -m core.train` runs): optimiser steps
per second at --batch whole training chorales per step, and evaluation sequences per second (all three
bounds at once, as validation computes them). Then how a FIVO training step's time grows with the
particle count, 1 to 256 (VRNN). Each is measured both ways in the same run, "path": "fused" (one C
call per pass, core.inference.fused_filter, the default) and "pytorch" (the engine's loop, objective.fused
false), the fused row carrying `fused_over_pytorch`, the ratio of the two (above fused_filter.MAX_ROWS
rows both rows run the loop). On a shared machine compare the *_per_cpu_s figures: this process's
CPU time, which other processes hardly change. For context, Pyro's Deep Markov Model example trains on
JSB at about 8 steps/s at batch 4 on one thread (its cost is per-timestep Python overhead).

The last line printed is one JSON object: {"threads", "batch", "particles", "training": [...],
"evaluation": [...], "particle_scaling": [...]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data.batch import Batch  # noqa: E402
from core.data.pianorolls import load_pianorolls, train_mean  # noqa: E402
from core.data.sequences import pad_sequences  # noqa: E402
from core.models import build_model, config_from_dict  # noqa: E402
from core.training.bound_objective import BoundObjective  # noqa: E402


def timed(work, repeats: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `repeats` calls of work(i), after one warm-up call."""
    work(0)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(repeats):
        work(i)
    return time.perf_counter() - start, time.process_time() - cpu


PATHS = {"fused": True, "pytorch": False}  # core.inference.fused_filter's one C call, or the engine's loop


def with_ratio(rows: dict[str, dict], key: str) -> list[dict]:
    """The rows of one setting, the fused one (when measured) given `fused_over_pytorch`: its `key` over the loop's."""
    if "fused" in rows:
        rows["fused"]["fused_over_pytorch"] = round(rows["fused"][key] / rows["pytorch"][key], 2)
    return list(rows.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rolls = load_pianorolls("jsb")
    mean = train_mean(rolls["train"]).tolist()
    train = [torch.from_numpy(r) for r in rolls["train"]]
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(args.steps + 1):
        x, lengths = pad_sequences([train[i] for i in torch.randint(len(train), (args.batch,), generator=g)])
        batches.append(Batch(x, lengths=lengths))
    timesteps = sum(int(b.lengths.sum()) for b in batches[1:])

    def model_for(family: str):
        torch.manual_seed(0)
        return build_model(config_from_dict({"model_type": family, "train_mean": mean}))

    def step(model, objective, optimizer):
        def work(i: int) -> None:
            out = objective(model, batches[i % len(batches)], None)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
        return work

    training, evaluation, scaling = [], [], []
    for family in ("vrnn", "srnn"):
        for bound in ("elbo", "iwae", "fivo"):
            rows = {}
            for path, fused in PATHS.items():
                model = model_for(family)
                objective = BoundObjective(bound=bound, particles=args.particles, fused=fused).build(model, 0)
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
                wall, cpu = timed(step(model, objective, optimizer), args.steps)
                rows[path] = {"model": family, "bound": bound, "path": path, "steps_per_s": round(args.steps / wall, 2),
                              "steps_per_cpu_s": round(args.steps / cpu, 2),
                              "us_per_timestep": round(1e6 * cpu / timesteps, 1)}
                print(rows[path], flush=True)
            training += with_ratio(rows, "steps_per_cpu_s")
        rows = {}
        for path, fused in PATHS.items():
            model = model_for(family).eval()
            evaluate = BoundObjective(particles=args.particles, fused=fused).build(model, 0, training=False)
            with torch.no_grad():
                wall, cpu = timed(lambda i, m=model, e=evaluate: e(m, batches[i % len(batches)], None), args.steps)
            rows[path] = {"model": family, "path": path, "sequences_per_s": round(args.steps * args.batch / wall, 2),
                          "sequences_per_cpu_s": round(args.steps * args.batch / cpu, 2)}
            print(rows[path], flush=True)
        evaluation += with_ratio(rows, "sequences_per_cpu_s")
    for particles in (1, 4, 16, 64, 256):
        rows = {}
        for path, fused in PATHS.items():
            model = model_for("vrnn")
            objective = BoundObjective(bound="fivo", particles=particles, fused=fused).build(model, 0)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
            repeats = max(2, args.steps * 4 // max(particles, 4))
            wall, cpu = timed(step(model, objective, optimizer), repeats)
            steps = sum(int(batches[i % len(batches)].lengths.sum()) for i in range(repeats))
            rows[path] = {"particles": particles, "path": path, "steps_per_cpu_s": round(repeats / cpu, 3),
                          "us_per_timestep": round(1e6 * cpu / steps, 1)}
            print(rows[path], flush=True)
        scaling += with_ratio(rows, "steps_per_cpu_s")
    print(json.dumps({"threads": args.threads, "batch": args.batch, "particles": args.particles,
                      "training": training, "evaluation": evaluation, "particle_scaling": scaling}))


if __name__ == "__main__":
    main()
