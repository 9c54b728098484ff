"""Forecast RMSE against horizon for Fourier checkpoints, on the Signals page's held-out curves.

    python scripts/fourier_horizons.py checkpoints/fourier-wavenet checkpoints/fourier-wavenet-unrolled \
        [--curves 64] [--observe 250] [--horizon 200] [--trajectories 8] [--markdown notes.md]

Each model observes the first N points of the same held-out curves (the test split of data
seed 0, which no training split draws) and forecasts H more with K trajectories; the RMSE of the
trajectory mean at each step ahead is core.forecast.horizon_error. Prints one JSON line
{"curves", "observe", "horizon", "trajectories", "models": {path: [rmse per step]}}; --markdown
also writes a table of the RMSE at a few horizons (for a model card).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoints import load_checkpoint  # noqa: E402
from core.data.fourier import SAMPLE_RATE_HZ, split_curves  # noqa: E402
from core.forecast import horizon_error  # noqa: E402

MARKS = (1, 10, 25, 50, 100, 150, 200)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--curves", type=int, default=64)
    p.add_argument("--observe", type=int, default=250)
    p.add_argument("--horizon", type=int, default=200)
    p.add_argument("--trajectories", type=int, default=8)
    p.add_argument("--markdown", type=Path, default=None, help="also write a Markdown table here")
    args = p.parse_args(argv)
    curves, periods = split_curves("test", args.curves, 500, seed=0)
    errors = {str(path): horizon_error(load_checkpoint(path), curves, periods, args.observe, args.horizon,
                                       args.trajectories, seed=0).tolist() for path in args.checkpoints}
    report = {"curves": args.curves, "observe": args.observe, "horizon": args.horizon,
              "trajectories": args.trajectories, "models": errors}
    if args.markdown:
        marks = [h for h in MARKS if h <= args.horizon]
        lines = ["## Forecast error against horizon", "",
                 f"RMSE of the mean of {args.trajectories} trajectories against the truth, over {args.curves} "
                 f"held-out curves observed for {args.observe} points ({args.observe / SAMPLE_RATE_HZ:g} s); "
                 f"`python scripts/fourier_horizons.py` (also on the Signals page).", "",
                 "| model | " + " | ".join(f"h = {h}" for h in marks) + " | mean |",
                 "|---|" + "---|" * (len(marks) + 1)]
        lines += [f"| {Path(path).name} | " + " | ".join(f"{rmse[h - 1]:.3f}" for h in marks)
                  + f" | {sum(rmse) / len(rmse):.3f} |" for path, rmse in errors.items()]
        args.markdown.write_text("\n".join(lines) + "\n")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
