"""Memory and time of one truncated-backprop step of a wayback preset, with and without block checkpointing.

    python bench/wayback_memory.py [--config configs/wayback_seed.json] [--batch 100] [--device cuda]

The seed's claim: a wayback model's gradient spans boundaries[-1] x product(periods) x chunk_size samples
(4,000 for configs/wayback_seed.json) while memory stays about constant per layer. `Wayback.nll` earns
it by recomputing one bottom-layer block at a time in the backward; this measures what that costs and
saves on random tokens (weights random: memory and speed do not depend on them). Memory is the peak
CUDA allocation (null on a CPU). The last line printed is one JSON object: {"config", "device",
"batch", "segment_samples", "longest_span_samples", "results": [{"checkpointed", "seconds" (best of 3),
"peak_mib"}, ...]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.models import build_model  # noqa: E402
from core.training import config as train_config  # noqa: E402
from core.training.tbptt import tbptt_objective  # noqa: E402


def measure(model: torch.nn.Module, x: torch.Tensor, checkpointed: bool) -> dict:
    """Best time of 3 steps (after a warm-up) and the peak CUDA memory of one."""
    cuda = x.device.type == "cuda"
    best = float("inf")
    for i in range(4):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = tbptt_objective(model, x, None, checkpointed=checkpointed)
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if i:
            best = min(best, time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return {"checkpointed": checkpointed, "seconds": round(best, 4), "peak_mib": peak and round(peak, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "wayback_seed.json"))
    parser.add_argument("--batch", type=int, default=None, help="rows (default: the config's train.batch_size)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the seed's unroll_layer_count
        cfg = train_config.load(args.config)
        model_cfg = cfg.model_config()
    model = build_model(model_cfg).to(args.device).train()
    batch = args.batch or cfg.train.batch_size
    x = torch.randint(0, model_cfg.quantization_levels, (batch, model_cfg.segment_length), device=args.device)
    results = [measure(model, x, c) for c in (False, True)]
    print(json.dumps({"config": Path(args.config).name, "device": args.device, "batch": batch,
                      "segment_samples": model_cfg.segment_length,
                      "longest_span_samples": model_cfg.longest_gradient_span, "results": results}))


if __name__ == "__main__":
    main()
