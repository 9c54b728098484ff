"""torchrun --nproc_per_node=2 (gloo, CPU) for the bound objective (VRNN, SRNN, GHMM) and truncated backprop.

One torchrun launch runs the real Trainer four times in a row, in the same two processes: a VRNN on
JSB with FIVO (latent 16, so through the fused filter) for two steps and then resumed from its
checkpoint for two more, an SRNN with IWAE, a learned-proposal GHMM with FIVO, and a wayback model
with the tbptt objective (each rank carrying the state of its own streams). For every run each rank
reports the first training batch it drew and the digest of its weights: the ranks must draw different
data and end with identical weights (DDP averaged their gradients), equal to the checkpoint rank 0
wrote, and changed by training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.checkpoints import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
CONFIGS = ROOT / "configs"
RUNS = {  # name: (config, overrides)
    "vrnn": ("vrnn_jsb_fivo.json", ["model.latent_size=16", "train.valid_batches=1"]),  # 16: the fused filter
    "srnn": ("srnn_jsb_fivo.json", ["model.latent_size=8", "train.valid_batches=1", "objective.bound=iwae"]),
    "ghmm": ("ghmm_learned.json", ["data.sequences=64", "train.batch_size=8"]),
    "wayback": ("wayback_small.json", ["model.layer_sizes=[8,8,8]", "model.io_sizes=[8]", "model.periods=[1,1,2]",
                                       "model.boundaries=[4,4,2]", "model.chunk_size=2", "model.segment_length=16",
                                       "data.clips=6", "data.seconds=0.2", "train.batch_size=2",
                                       "train.valid_batches=1"]),
}
COMMON = ["train.max_steps=2", "train.valid_every=2", "train.log_every=1"]

SCRIPT = """
import hashlib, json, os, sys
import torch
import torch.distributed as dist
from core.checkpoints import latest_checkpoint, load_checkpoint
from core.training import config as train_config
from core.training.loop import Trainer

root, runs = sys.argv[1], json.loads(sys.argv[2])

def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])

def train(name, config, overrides, resume=False):
    cfg = train_config.load(config, overrides)
    trainer = Trainer(cfg, os.path.join(root, name), resume=resume, show_progress=False)
    first = next(iter(trainer.train_set.loader(cfg.train.batch_size, world=trainer.world, rank=trainer.rank,
                                               seed=cfg.train.seed, epoch=trainer.epoch)))
    before = weights(trainer.model).clone()
    trainer.run()
    after = weights(trainer.model)
    gathered = [torch.empty_like(after) for _ in range(trainer.world)]
    dist.all_gather(gathered, after)
    saved = torch.cat([p.flatten() for p in load_checkpoint(latest_checkpoint(trainer.run_dir)).parameters()])
    return {"first_batch": hashlib.sha256(first.x.numpy().tobytes()).hexdigest(),
            "changed": (after - before).abs().max().item(),
            "disagreement": (gathered[0] - gathered[1]).abs().max().item(),
            "checkpoint_differs": (saved - after).abs().max().item(), "step": trainer.step}

report = {}
for name, (config, overrides) in runs.items():
    report[name] = train(name, config, overrides)
    if name == "vrnn":
        more = [o for o in overrides if not o.startswith("train.max_steps")] + ["train.max_steps=4"]
        report["vrnn_resumed"] = train(name, config, more, resume=True)
reports = [None] * dist.get_world_size()
dist.all_gather_object(reports, report)
if dist.get_rank() == 0:
    print("REPORT " + json.dumps(reports))
dist.destroy_process_group()
"""


def test_two_torchrun_processes_train_and_resume_the_bound_and_tbptt_families_in_step(tmp_path: Path) -> None:
    script = tmp_path / "runs.py"
    script.write_text(SCRIPT)
    runs = {name: (str(CONFIGS / config), [*overrides, *COMMON]) for name, (config, overrides) in RUNS.items()}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(script), str(tmp_path),
                             json.dumps(runs)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))[7:])
    for name in (*RUNS, "vrnn_resumed"):
        mine, theirs = rank0[name], rank1[name]
        assert mine["first_batch"] != theirs["first_batch"], f"{name}: the ranks train on different data"
        assert mine["disagreement"] == 0.0, f"{name}: DDP keeps both ranks' weights identical"
        assert mine["changed"] > 0 and theirs["changed"] > 0, f"{name}: training changed the weights"
        assert mine["checkpoint_differs"] == 0.0 == theirs["checkpoint_differs"], f"{name}: the checkpoint holds them"
        assert mine["step"] == theirs["step"] == (4 if name == "vrnn_resumed" else 2)
    vrnn = tmp_path / "vrnn"
    assert latest_checkpoint(vrnn).name == "step_00000004"
    rows = [json.loads(line) for line in (vrnn / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4], "only rank 0 logs, resumed in order"
    assert all(r["fivo_nats"] == -r["nll_nats"] < 0 for r in rows if r["split"] == "train")
    valid = [r for r in rows if r["split"] == "valid"]
    assert [r["items"] for r in valid] == [8, 8], "validation pools both ranks' batches (4 sequences each)"
    for name in RUNS:
        status = json.loads((tmp_path / name / "status.json").read_text())
        assert status["state"] == "finished" and status["world_size"] == 2
