"""What each fused-kernel precision costs in test NLL on the bundled WaveNets (teacher forcing).

    python bench/precision.py [--max-batches 0] [--batch-size 16] [--checkpoints DIR ...]

For each checkpoint, its test split is forced through the float32, bfloat16 and int8 kernels
(core.precision_cost) and scored as core.evaluate scores it. The rule for a default precision:
it moves the test NLL of every bundled audio model (melodies-wavenet, tones-wavenet) by less
than core.precision_cost.DEFAULT_MAX_CHANGE = 0.01 bits per sample; the fourier models
(signals, not audio) are reported beside them. The last line printed is one JSON object:
{"rule_bits", "results": [{"checkpoint", "audio", "tokens", "pytorch", "fused", "fused-bf16",
"fused-int8", "change_fused-bf16", "change_fused-int8", "seconds"}, ...], "default_ok": {method:
bool}, "default_in_code": {method: bool}} (the second: whether the stepper's rank puts the
method above "fused", so `method="auto"` takes it; the two should agree). The reduced precisions
need a CPU with AVX-512 BF16 and VNNI; where it lacks one, that method is left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.generation.factory import STEPPERS  # noqa: E402
from core.generation.fused import precisions  # noqa: E402
from core.generation.fused_pack import PRECISIONS  # noqa: E402
from core.precision_cost import DEFAULT_MAX_CHANGE, FUSED_METHODS, checkpoint_precision_cost  # noqa: E402

AUDIO = ("melodies-wavenet", "tones-wavenet")
SIGNALS = ("fourier-wavenet", "fourier-wavenet-unrolled")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", nargs="+", default=[str(ROOT / "checkpoints" / n) for n in AUDIO + SIGNALS])
    p.add_argument("--max-batches", type=int, default=0, help="test batches per checkpoint (0 = the whole split)")
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)
    here = precisions()
    methods = [m for m, precision in zip(FUSED_METHODS, PRECISIONS, strict=True) if precision in here]
    results = []
    for checkpoint in args.checkpoints:
        start = time.perf_counter()
        row = checkpoint_precision_cost(checkpoint, methods, batch_size=args.batch_size, max_batches=args.max_batches)
        row["checkpoint"], row["audio"] = Path(checkpoint).name, Path(checkpoint).name in AUDIO
        row["seconds"] = round(time.perf_counter() - start, 1)
        print(" ".join(f"{k}={v:.5f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), file=sys.stderr)
        results.append(row)
    audio = [r for r in results if r["audio"]]
    default_ok = {m: bool(audio) and all(abs(r[f"change_{m}"]) < DEFAULT_MAX_CHANGE for r in audio)
                  for m in methods if m != "fused"}
    steppers = family_steppers_of_wavenet()
    report = {"rule_bits": DEFAULT_MAX_CHANGE, "kernel_precisions": list(here), "results": results,
              "default_ok": default_ok,
              "default_in_code": {m: steppers[m].rank > steppers["fused"].rank for m in default_ok}}
    print(json.dumps(report))
    return report


def family_steppers_of_wavenet() -> dict[str, type]:
    """The WaveNet steppers by method (their ranks say which precision `method="auto"` takes)."""
    return STEPPERS["wavenet"]


if __name__ == "__main__":
    main()
