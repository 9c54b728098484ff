"""`python -m core.evaluate`: held-out NLL of a checkpoint as one JSON line."""

import json
import math
import shutil
from pathlib import Path

import pytest

from core.checkpoints import latest_checkpoint, load_checkpoint
from core.data import build_split
from core.devices import pick_device
from core.evaluate import main
from core.train import main as train
from core.training import config as train_config
from core.training.evaluation import evaluate

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.dilations=[1,2]", "model.residual_channels=4", "model.dilation_channels=4", "model.skip_channels=4",
        "model.head_channels=4", "data.clips=4", "data.targets=64", "train.batch_size=2", "train.log_every=2",
        "train.valid_every=2", "train.max_steps=2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("eval") / "run"
    assert train(["--config", str(ROOT / "configs/tone500.json"), "--run-dir", str(run), "--no-progress",
                  *sum((["--set", s] for s in TINY), [])]) == 0
    return run


def test_prints_one_json_line_with_bits_per_dim_for_the_test_split(run, capsys):
    ckpt = latest_checkpoint(run)
    assert main(["--checkpoint", str(ckpt), "--split", "test"]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert out["split"] == "test" and out["items"] > 0 and out["dims_per_item"] == 64  # the scored targets
    assert out["bits_per_dim"] == pytest.approx(out["nll_nats_per_dim"] / math.log(2))
    assert out["nll_nats_per_item"] == pytest.approx(out["nll_nats_per_dim"] * 64)
    cfg = train_config.load(run / "config.json")
    model = load_checkpoint(ckpt)
    objective = cfg.objective.build(model, 0, training=False)
    direct = evaluate(model, build_split(cfg.data, "test", model.config), objective, 16, pick_device("cpu"))
    assert out["nll_nats_per_dim"] == pytest.approx(direct["nll_nats"])


def test_a_checkpoint_without_its_training_config_needs_config(run, tmp_path, capsys):
    lone = tmp_path / "lone"
    shutil.copytree(latest_checkpoint(run), lone)
    assert main(["--checkpoint", str(lone)]) == 2
    assert "--config" in capsys.readouterr().err
    assert main(["--checkpoint", str(lone), "--config", str(run / "config.json"), "--split", "valid"]) == 0
