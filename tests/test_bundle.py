"""scripts/bundle.py: a bundled checkpoint loads, documents itself, and resumes as a run."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from core.checkpoints import load_checkpoint, load_state
from core.evaluate import evaluate_checkpoint
from core.train import main as train
from core.training import config as train_config
from core.training.loop import TRAINED, Trainer
from scripts.bundle import training_seconds

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.dilations=[1,2]", "model.residual_channels=4", "model.dilation_channels=4", "model.skip_channels=4",
        "model.head_channels=4", "data.clips=2", "data.targets=64", "train.batch_size=2", "train.log_every=2",
        "train.valid_every=2", "train.max_steps=4"]


def bundle(*args: str) -> None:
    subprocess.run([sys.executable, "scripts/bundle.py", *args], cwd=ROOT, check=True, capture_output=True)


def test_export_then_restore_resumes_training_where_the_bundle_stopped(tmp_path):
    run = tmp_path / "run"
    assert train(["--config", str(ROOT / "configs/tone500.json"), "--run-dir", str(run), "--no-progress",
                  *sum((["--set", s] for s in TINY), [])]) == 0
    dest = tmp_path / "bundled"
    bundle("export", str(run), str(dest), "--data", "a 500 Hz tone", "--command", "python -m core.train ...")
    card = (dest / "README.md").read_text()
    assert "a 500 Hz tone" in card and "bits per sample" in card and "python -m core.train" in card
    load_checkpoint(dest)
    again = tmp_path / "again"
    bundle("restore", str(dest), str(again))
    assert train(["--run-dir", str(again), "--resume", "--no-progress", "--set", "train.max_steps=6"]) == 0
    assert json.loads((again / "status.json").read_text())["step"] == 6


def test_a_bundle_of_an_averaged_run_is_sampled_with_the_average_and_restores_with_the_trained_weights(tmp_path):
    run = tmp_path / "run"
    assert train(["--config", str(ROOT / "configs/tone500.json"), "--run-dir", str(run), "--no-progress",
                  *sum((["--set", s] for s in [*TINY, "train.ema=0.9"]), [])]) == 0
    dest = tmp_path / "bundled"
    bundle("export", str(run), str(dest), "--data", "a 500 Hz tone", "--command", "python -m core.train ...")
    ckpt = run / "checkpoints" / "step_00000004"
    for name in ("model.safetensors", TRAINED):
        assert (dest / name).read_bytes() == (ckpt / name).read_bytes(), name
    again = tmp_path / "again"
    bundle("restore", str(dest), str(again))
    trainer = Trainer(train_config.load(again / "config.json", ["train.max_steps=6"]), again, resume=True,
                      show_progress=False)
    trained = load_state(ckpt, TRAINED)
    assert all(torch.equal(v, trained[k]) for k, v in trainer.model.state_dict().items())


def test_export_with_test_puts_the_test_nll_in_bits_per_sample_and_notes_in_the_card(tmp_path):
    run = tmp_path / "run"
    assert train(["--config", str(ROOT / "configs/tone500.json"), "--run-dir", str(run), "--no-progress",
                  *sum((["--set", s] for s in TINY), [])]) == 0
    notes = tmp_path / "notes.md"
    notes.write_text("## Extra\n\nforecast table here\n")
    dest = tmp_path / "bundled"
    bundle("export", str(run), str(dest), "--data", "tone", "--command", "c", "--test", "--notes", str(notes))
    measured = evaluate_checkpoint(dest, "test")  # the bundle's own train_config.json names the data
    metrics = json.loads((dest / "metrics.json").read_text())
    assert metrics["test_bits_per_dim"] == round(measured["bits_per_dim"], 5)
    card = (dest / "README.md").read_text()
    assert f"{measured['bits_per_dim']:.4f} bits per sample" in card and "forecast table here" in card
    assert "bits per dim" not in card  # an audio model's card says bits per sample throughout


def test_export_of_an_earlier_step_without_optimizer_state_is_weights_only(tmp_path):
    run = tmp_path / "run"
    assert train(["--config", str(ROOT / "configs/tone500.json"), "--run-dir", str(run), "--no-progress",
                  *sum((["--set", s] for s in TINY), []), "--set", "train.keep_checkpoints=3"]) == 0
    (run / "checkpoints/step_00000002/optimizer.safetensors").unlink()
    dest = tmp_path / "bundled"
    bundle("export", str(run), str(dest), "--data", "tone", "--command", "c", "--step", "2",
           "--hardware", "one H100 GPU")
    assert json.loads((dest / "metrics.json").read_text())["step"] == 2
    bundled, saved = load_checkpoint(dest).state_dict(), load_checkpoint(run / "checkpoints/step_00000002").state_dict()
    assert all(bundled[k].equal(saved[k]) for k in saved)
    card = (dest / "README.md").read_text()
    assert "2 steps" in card and "on one H100 GPU" in card and "Weights only" in card
    assert not (dest / "optimizer.safetensors").exists() and not (dest / "trainer_state.json").exists()
    restored = subprocess.run([sys.executable, "scripts/bundle.py", "restore", str(dest), str(tmp_path / "again")],
                              cwd=ROOT, capture_output=True, text=True)
    assert restored.returncode != 0 and "weights only" in restored.stderr
    missing = subprocess.run([sys.executable, "scripts/bundle.py", "export", str(run), str(tmp_path / "x"), "--data",
                              "d", "--command", "c", "--step", "3"], cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode != 0 and "no checkpoint of step 3" in missing.stderr


def test_training_time_leaves_out_the_gaps_while_the_run_was_stopped(tmp_path):
    rows = [{"split": "train", "step": i, "time": t} for i, t in enumerate([0, 30, 60, 5000, 5030, 5100])]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert training_seconds(tmp_path) == 60 + 30 + 70  # the 4940 s gap is between a stop and a resume


def test_training_time_up_to_a_step_counts_only_the_rows_before_it(tmp_path):
    rows = [{"split": "train", "step": i, "time": 10.0 * i} for i in range(10)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert training_seconds(tmp_path, up_to_step=4) == 40
