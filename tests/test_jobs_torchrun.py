"""Several processes: torchrun --nproc_per_node=2 on CPU (gloo), directly and through core.jobs.

The rank-agreement check runs the real Trainer under torchrun in a small script: both ranks
start from the same seed, train one step on disjoint shards of the data, and must end with
identical weights that differ from the initial ones (so DDP averaged their gradients). A Python
audit hook in each rank records every file it creates, writes, renames or deletes inside the
run folder: rank 1 must touch nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_jobs import ROOT, TINY, TONE, kill_runs, tiny_config, train_steps, wait_for_state, wait_for_status

from core.checkpoints import latest_checkpoint, load_checkpoint
from core.jobs import JobManager

TORCHRUN = Path(sys.executable).with_name("torchrun")

ONE_STEP = """
import json, os, sys
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler
from core.training import config as train_config
from core.training.loop import Trainer

run_dir, config, overrides = os.path.abspath(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
touched = []

def audit(event, args):
    path = None
    if event == "open" and isinstance(args[0], str):
        writing = (isinstance(args[1], str) and any(c in args[1] for c in "wax+")) or (
            args[1] is None and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        path = args[0] if writing else None
    elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree") and isinstance(args[0], str):
        path = args[0]
    if path is not None and os.path.abspath(path).startswith(run_dir):
        touched.append(f"{event} {path}")

sys.addaudithook(audit)
cfg = train_config.load(config, overrides)
trainer = Trainer(cfg, run_dir, show_progress=False)
before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
sampler = DistributedSampler(trainer.train_set, trainer.world, trainer.rank, shuffle=True, seed=cfg.train.seed,
                             drop_last=True)
first_batch = list(sampler)[: cfg.train.batch_size]
trainer.run()
after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
weights = [torch.empty_like(after) for _ in range(trainer.world)]
dist.all_gather(weights, after)
reports = [None] * trainer.world
dist.all_gather_object(reports, {"touched": touched, "first_batch": first_batch,
                                 "changed": (after - before).abs().max().item()})
if trainer.rank == 0:
    print("REPORT " + json.dumps({"reports": reports, "disagreement": (weights[0] - weights[1]).abs().max().item()}))
dist.destroy_process_group()
"""


def test_torchrun_ranks_agree_on_the_weights_after_a_step_and_only_rank_0_writes(tmp_path: Path) -> None:
    script = tmp_path / "one_step.py"
    script.write_text(ONE_STEP)
    run = tmp_path / "run"
    overrides = [*TINY, "train.max_steps=1", "train.valid_every=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(script), str(run), str(TONE),
                             json.dumps(overrides)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))[7:])
    rank0, rank1 = report["reports"]
    assert not set(rank0["first_batch"]) & set(rank1["first_batch"]), "the ranks train on different windows"
    assert rank0["changed"] > 0 and rank1["changed"] > 0, "the step changed the weights"
    assert report["disagreement"] == 0.0, "DDP keeps both ranks' weights identical"
    assert rank0["touched"] and rank1["touched"] == [], "only rank 0 writes the run folder"
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["world_size"] == 2 and status["step"] == 1
    load_checkpoint(latest_checkpoint(run))


def test_a_torchrun_job_trains_and_stops_gracefully_with_a_checkpoint(tmp_path: Path) -> None:
    jobs = JobManager(tmp_path / "runs")
    try:
        name = jobs.start(tiny_config("train.max_steps=100000", "train.valid_every=3"), name="ddp", device="cpu",
                          processes=2)
        running = wait_for_status(jobs, name, lambda s: len(train_steps(s)) >= 2, "two train rows")
        assert running["state"] == "running" and running["world_size"] == 2
        assert "--nproc_per_node=2" in running["command"]
        jobs.stop(name)
        stopped = wait_for_state(jobs, name, ("stopped", "finished", "failed"))
        assert stopped["state"] == "stopped", stopped["error"]
        assert train_steps(stopped) == list(range(1, stopped["step"] + 1)), "one row per step: only rank 0 logs"
        assert stopped["checkpoint"].endswith(f"step_{stopped['step']:08d}")
        load_checkpoint(stopped["checkpoint"])
    finally:
        kill_runs(jobs.runs_root)
        for proc in jobs._procs.values():
            proc.wait(timeout=60)
