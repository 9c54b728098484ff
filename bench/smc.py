"""Per-timestep cost of the SMC engine, on the Gaussian HMM (the cheapest model: the time is mostly the engine's).

    python bench/smc.py [--steps 160] [--batch 4] [--particles 4] [--repeats 5] [--threads 1]

One training step = the bound's forward and backward over a (batch, steps, 1) sequence with a
learned_filtering proposal. The issue's yardstick: Pyro's DMM trains at about 8 steps/s at batch 4
on one thread, so an engine whose own overhead costs a few ms per training step leaves the time to
the model. The last line printed is one JSON object: {"steps", "batch", "particles", "threads",
"results": [{"bound", "resampling", "relaxed", "us_per_timestep", "train_steps_per_s"}, ...]}.
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

from core.inference.bounds import bound_loss  # noqa: E402
from core.models.ghmm import GaussianHMM, GHMMConfig  # noqa: E402

SETTINGS = [("elbo", "multinomial", False), ("iwae", "multinomial", False), ("fivo", "multinomial", False),
            ("fivo", "systematic", False), ("fivo", "multinomial", True)]


def best_seconds(model: GaussianHMM, x: torch.Tensor, bound: str, resampling: str, relaxed: bool, particles: int,
                 repeats: int) -> float:
    """Best wall time of one forward + backward, after one untimed warm-up."""
    best = float("inf")
    for i in range(repeats + 1):
        start = time.perf_counter()
        loss, _, _ = bound_loss(model, x, None, bound, particles, resampling=resampling, relaxed=relaxed)
        loss.backward()
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GaussianHMM(GHMMConfig(num_timesteps=args.steps, proposal="learned_filtering"))
    x = torch.randn(args.batch, args.steps, 1)
    results = []
    for bound, resampling, relaxed in SETTINGS:
        seconds = best_seconds(model, x, bound, resampling, relaxed, args.particles, args.repeats)
        results.append({"bound": bound, "resampling": resampling, "relaxed": relaxed,
                        "us_per_timestep": round(seconds / args.steps * 1e6, 1),
                        "train_steps_per_s": round(1 / seconds, 1)})
        print(results[-1], flush=True)
    print(json.dumps({"steps": args.steps, "batch": args.batch, "particles": args.particles, "threads": args.threads,
                      "results": results}))


if __name__ == "__main__":
    main()
