"""Generation speed of each method on the reference WaveNet, side by side in one run.

    python bench/generation.py [--steps 2000] [--naive-steps 100] [--batches 1 16] [--repeats 1] [--device cuda]
    python bench/generation.py --checkpoint checkpoints/speech-wavenet --methods fused fused-bf16 --batches 1

Reference config: Q=256, dilations 1..512 twice (20 layers), K=2, residual = dilation = 64,
skip = 128, head = 128 (random weights: speed does not depend on them). The last line printed
is one JSON object: {"config", "receptive_field", "results": [{"method", "batch", "threads",
"samples_per_s", "ratio_to_cached", "ratio_to_fused"}, ...]}. `threads` is the fused kernel's core count (rows
split at batch > 1); at batch 1 it also reports the opt-in split of each product over all cores
(`FusedStepper(threads=N)`), which is fast or slow by how the host places the two vCPUs.
With `--device cuda` the methods are cached and graph (the cached step replayed from a CUDA graph).
`--checkpoint` times that audio model instead of the reference (its own weights) and adds each row's
`real_time`: samples per second over the model's sample rate (over 1: faster than it plays).

The fused kernel's reduced-precision methods (fused-bf16, fused-int8: bfloat16 or int8 weights on
AVX-512; bf16 on AMX tiles from batch 4 where the CPU has them, with a "fused-bf16-avx512" row beside
it that hides the tiles) run where the CPU has them, beside float32 "fused"; `ratio_to_fused` is each row's speed
over that float32 fused row of the same batch. `--repeats N` measures every method but naive N
times, interleaved (fused, fused-bf16, fused-int8, fused, ...), and keeps the median: on a shared
machine a neighbour's load then falls on all methods alike. For batch 1 on one core, run it under
`taskset -c 0` with OMP_NUM_THREADS=1.

The report's "recurrent" rows time the wayback family's stepper on the CPU presets
(configs/wayback_small.json, configs/stack_small.json, random weights) at each batch size: the
state is carried one chunk at a time, O(1) per sample, but each chunk costs one update of every
layer that ticks plus a small autoregressive head per sample, all as PyTorch ops from Python.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.checkpoints import load_checkpoint  # noqa: E402
from core.conditioning import Cond  # noqa: E402
from core.generation import METHODS, generate  # noqa: E402
from core.generation.c_kernels import cores_for  # noqa: E402
from core.generation.factory import family_steppers  # noqa: E402
from core.generation.fused import FusedStepper, bf16_engine  # noqa: E402
from core.models import build_model  # noqa: E402
from core.models.wavenet import WaveNet, WaveNetConfig  # noqa: E402
from core.training import config as train_config  # noqa: E402

REFERENCE = WaveNetConfig(quantization_levels=256, dilations=[2**i for i in range(10)] * 2, kernel_size=2,
                          residual_channels=64, dilation_channels=64, skip_channels=128, head_channels=128)


VECTORS = "fused-bf16-avx512"  # fused-bf16 with the AMX tiles hidden (STUDIO_FUSED_ISA=avx512): vdpbf16ps only


def samples_per_s(model: torch.nn.Module, method: str, batch: int, steps: int) -> float:
    """Generated samples (steps x batch) per second of wall time, after a short warm-up."""
    if method == VECTORS:
        before = os.environ.get("STUDIO_FUSED_ISA")
        os.environ["STUDIO_FUSED_ISA"] = "avx512"
        try:
            return samples_per_s(model, "fused-bf16", batch, steps)
        finally:
            os.environ.pop("STUDIO_FUSED_ISA") if before is None else os.environ.update(STUDIO_FUSED_ISA=before)
    cond = first_class(model, batch)
    for _ in generate(model, min(steps, 20), batch=batch, method=method, seed=0, cond=cond):
        pass
    start = time.perf_counter()
    for _ in generate(model, steps, batch=batch, method=method, seed=0, chunk_size=steps, cond=cond):
        pass
    return steps * batch / (time.perf_counter() - start)


def first_class(model: torch.nn.Module, batch: int) -> Cond | None:
    """Class 0 for every row of a class-conditional model (the speech model's lowest register), else None."""
    n_classes = getattr(getattr(model, "config", None), "n_classes", 0)
    return Cond(classes=torch.zeros(batch, dtype=torch.long)) if n_classes else None


def kernel_threads(batch: int) -> int:
    """The cores a fused-kernel call takes at this batch when it is the only one in flight (its own rule)."""
    with cores_for(batch, None) as threads:
        return threads


def split_samples_per_s(model: WaveNet, threads: int, steps: int) -> float:
    """Batch 1 with every product's columns split over `threads` cores."""
    stepper = FusedStepper(model, 1, cond=first_class(model, 1), seed=0, threads=threads)
    stepper.sample(20)
    start = time.perf_counter()
    stepper.sample(steps)
    return steps / (time.perf_counter() - start)


def recurrent_rows(batches: list[int], steps: int) -> list[dict]:
    """samples/s of the recurrent stepper on each CPU wayback preset, at each batch size."""
    rows = []
    for preset in ("wayback_small", "stack_small"):
        torch.manual_seed(0)
        model = build_model(train_config.load(ROOT / "configs" / f"{preset}.json").model_config()).eval()
        for batch in batches:
            rate = samples_per_s(model, "recurrent", batch, steps)
            print(f"{preset:>14} batch {batch:>3}: {rate:10.1f} samples/s", file=sys.stderr)
            rows.append({"preset": preset, "batch": batch, "samples_per_s": round(rate, 1)})
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="samples per sequence for fast methods")
    p.add_argument("--naive-steps", type=int, default=100, help="samples per sequence for the naive method")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--methods", nargs="+", choices=[*METHODS, VECTORS],
                   help="default: naive, cached and fused on the CPU; cached and graph on CUDA; "
                        f"{VECTORS}: fused-bf16 without AMX tiles, beside it where the CPU has them")
    p.add_argument("--repeats", type=int, default=1, help="interleaved measurements per method; the median is kept")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--checkpoint", default=None, help="time this WaveNet checkpoint instead of the reference config")
    args = p.parse_args(argv)
    on_cuda = torch.device(args.device).type == "cuda"
    torch.manual_seed(0)
    model = (load_checkpoint(args.checkpoint, args.device) if args.checkpoint else WaveNet(REFERENCE)).eval()
    model = model.to(args.device)
    rate_hz = getattr(model.config, "sample_rate", None) if args.checkpoint else None
    usable = [m for m, cls in family_steppers(model).items() if cls.unusable(model) is None]
    methods = args.methods or (["cached", "graph"] if on_cuda else [m for m in usable if m != "graph"])
    if not args.methods and "fused-bf16" in methods and bf16_engine() == "amx":
        methods.insert(methods.index("fused-bf16") + 1, VECTORS)
    results = []
    cores = len(os.sched_getaffinity(0))
    for batch in args.batches:
        runs: dict[tuple[str, int | None], list[float]] = {}
        for i in range(max(1, args.repeats)):
            for method in methods:
                if method == "naive" and i > 0:
                    continue
                steps = args.naive_steps if method == "naive" else args.steps
                threads = kernel_threads(batch) if method.startswith("fused") else None
                runs.setdefault((method, threads), []).append(samples_per_s(model, method, batch, steps))
                if method == "fused" and batch == 1 and cores > 1 and not on_cuda:
                    runs.setdefault((method, cores), []).append(split_samples_per_s(model, cores, steps))
        row = {key: statistics.median(rates) for key, rates in runs.items()}
        own = kernel_threads(batch) if "fused" in methods else None
        for (method, threads), rate in row.items():
            ratio = rate / row["cached", None] if ("cached", None) in row else None
            base = row.get(("fused", own))  # today's float32 fused path, with its own thread count
            print(f"{method:>10} batch {batch:>3} threads {threads or '-'}: {rate:10.1f} samples/s", file=sys.stderr)
            results.append({"method": method, "batch": batch, "threads": threads, "samples_per_s": round(rate, 1),
                            "ratio_to_cached": None if ratio is None else round(ratio, 3),
                            "ratio_to_fused": None if base is None or not method.startswith("fused")
                            else round(rate / base, 3),
                            **({"real_time": round(rate / rate_hz, 2)} if rate_hz else {})})
    report = {
        "checkpoint": args.checkpoint,
        "config": asdict(model.config),
        "receptive_field": model.config.receptive_field,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "device": torch.cuda.get_device_name() if on_cuda else platform.processor() or platform.machine(),
        "results": results,
        "recurrent": [] if on_cuda or args.checkpoint else recurrent_rows(args.batches, args.steps),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
