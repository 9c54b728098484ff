"""Training speed of the VRNN and SRNN on JSB chorales: optimiser steps per second on one CPU thread.

    python bench/latent_rnn.py [--steps 30] [--batch 4] [--particles 4]

Each step draws `batch` whole training chorales, runs `particles` particles per chorale through
`propose_and_weight` (particles folded into the batch), takes the IWAE bound (FIVO without
resampling: the SMC engine is not needed to time the model) and an Adam step, the FIVO paper's
defaults. The reference to beat: Pyro's DMM trains on JSB at about 8 steps/s at batch 4 on one
thread. On a shared machine compare `steps_per_cpu_s` (steps per second of this process's CPU
time), which other processes hardly change. The last line printed is one JSON object: {"threads",
"batch", "particles", "results": [{"model", "proposal", "steps_per_s", "steps_per_cpu_s",
"ms_per_timestep", "bound_per_timestep"}, ...]}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data.pianorolls import load_pianorolls, train_mean  # noqa: E402
from core.data.sequences import pad_sequences  # noqa: E402
from core.latent_generation import tile  # noqa: E402
from core.models.srnn import SRNN, SRNNConfig  # noqa: E402
from core.models.vrnn import VRNN, VRNNConfig  # noqa: E402


def iwae_step(model, optimizer, x: torch.Tensor, lengths: torch.Tensor, particles: int) -> float:
    """One Adam step on -IWAE per timestep; returns the bound in nats per timestep."""
    b, t_len = x.shape[:2]
    context = tile(model.encode(x, lengths), particles)
    state = model.zero_state(particles * b)
    valid = torch.arange(t_len).unsqueeze(1) < lengths.repeat(particles)  # (T, N * B)
    total = x.new_zeros(particles * b)
    for t in range(t_len):
        state, log_w = model.propose_and_weight(state, context, t)
        total = total + torch.where(valid[t], log_w, torch.zeros_like(log_w))
    bound = torch.logsumexp(total.view(particles, b), 0) - math.log(particles)  # (B,)
    optimizer.zero_grad()
    (-(bound / lengths).mean()).backward()
    optimizer.step()
    return float(bound.detach().sum() / lengths.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--particles", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rolls = load_pianorolls("jsb")
    mean = train_mean(rolls["train"]).tolist()
    train = [torch.from_numpy(r) for r in rolls["train"]]
    g = torch.Generator().manual_seed(0)
    batches = [pad_sequences([train[i] for i in torch.randint(len(train), (args.batch,), generator=g).tolist()])
               for _ in range(args.steps + 2)]
    results = []
    for name, cls, config_cls in (("vrnn", VRNN, VRNNConfig), ("srnn", SRNN, SRNNConfig)):
        for proposal in ("filtering", "smoothing"):
            torch.manual_seed(0)
            model = cls(config_cls(train_mean=mean, proposal=proposal))
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
            for x, lengths in batches[:2]:  # warm-up
                iwae_step(model, optimizer, x, lengths, args.particles)
            start, cpu_start = time.perf_counter(), time.process_time()
            bounds = [iwae_step(model, optimizer, x, lengths, args.particles) for x, lengths in batches[2:]]
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            timesteps = sum(x.shape[1] for x, _ in batches[2:])
            results.append({"model": name, "proposal": proposal, "steps_per_s": round(args.steps / seconds, 2),
                            "steps_per_cpu_s": round(args.steps / cpu_seconds, 2),
                            "ms_per_timestep": round(1000 * seconds / timesteps, 3),
                            "bound_per_timestep": round(sum(bounds) / len(bounds), 3)})
            print(results[-1], flush=True)
    print(json.dumps({"threads": 1, "batch": args.batch, "particles": args.particles, "results": results}))


if __name__ == "__main__":
    main()
