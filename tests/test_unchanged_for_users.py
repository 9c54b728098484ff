"""Nothing changes for a user when core/ is reshaped: tiny runs reproduce values recorded before.

`tests/data/golden_runs.json` was written by this file (`python tests/test_unchanged_for_users.py
--record`) before the layout of issue #13 moved any code: the training losses, the validation NLL
and a seeded sample of a tiny WaveNet (plain and with train unrolling) and of a tiny PixelCNN,
each trained for a few steps from a fixed seed through the training CLI. Every later layout must
give the same numbers (float tolerance 1e-6 relative; samples exactly).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden_runs.json"
SMALL_WAVENET = ["model.dilations=[1,2,4]", "model.residual_channels=8", "model.dilation_channels=8",
                 "model.skip_channels=8", "model.head_channels=8", "data.clips=4", "data.targets=64",
                 "train.batch_size=4", "train.log_every=1", "train.max_steps=6", "train.valid_every=3"]
RUNS = {
    "wavenet": ["--config", "configs/tone500.json", *(a for s in SMALL_WAVENET for a in ("--set", s))],
    "wavenet_unrolled": ["--config", "configs/tone500.json",
                         *(a for s in [*SMALL_WAVENET, "train.unroll_steps=3"] for a in ("--set", s))],
    "pixelcnn": ["--config", "configs/digits_pixelcnn.json",
                 *(a for s in ["model.channels=8", "model.layers=3", "model.skip_channels=8",
                               "model.head_channels=8", "train.batch_size=4", "train.max_steps=4",
                               "train.valid_every=2", "train.log_every=1", "train.valid_batches=0"]
                   for a in ("--set", s))],
}


def run_once(name: str, tmp: Path) -> dict:
    """Train run `name` in tmp; its train losses, validation NLLs and the first 24 tokens of a seeded sample."""
    from core import digits
    from core.checkpoints import latest_checkpoint, load_checkpoint
    from core.generation import generate_all
    from core.train import main
    from tests.test_mnist import small_splits

    args = list(RUNS[name])
    if name == "pixelcnn":
        npz = tmp / "mnist.npz"
        np.savez(npz, **small_splits(n_train=8, n_valid=4, n_test=4))
        args += ["--set", f"data.mnist_path={npz}"]
    torch.manual_seed(0)
    assert main([*args, "--run-dir", str(tmp / name), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (tmp / name / "metrics.jsonl").read_text().splitlines()]
    model = load_checkpoint(latest_checkpoint(tmp / name))
    if name == "pixelcnn":
        sample = digits.sample(model, torch.tensor([3]), seed=7, method="rows")[:, :24]  # as it was recorded
    else:
        sample = generate_all(model, 24, seed=7, method="cached")
    return {
        "train_nll": [r["nll_nats"] for r in rows if r["split"] == "train"],
        "unroll_nll": [r["unroll_nll_nats"] for r in rows if "unroll_nll_nats" in r],
        "valid_nll": [r["nll_nats"] for r in rows if r["split"] == "valid"],
        "sample": sample[0].tolist(),
    }


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_tiny_run_gives_the_losses_nll_and_sample_recorded_before_the_reshaping(name, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    expected = json.loads(GOLDEN.read_text())[name]
    got = run_once(name, tmp_path)
    for key in ("train_nll", "unroll_nll", "valid_nll"):
        assert got[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-7), key
    assert got["sample"] == expected["sample"]


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile

    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps({n: run_once(n, Path(tmp)) for n in sorted(RUNS)}, indent=1) + "\n")
    print(f"recorded {GOLDEN}")
