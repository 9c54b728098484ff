"""Training: learning a tone end to end, resuming, graceful stop, bad configs, torchrun DDP."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoints import latest_checkpoint, load_checkpoint, load_state
from core.continuation import continue_audio
from core.errors import ConfigError
from core.train import main
from core.training import config as train_config
from core.training.loop import TRAINED, Trainer

ROOT = Path(__file__).resolve().parents[1]
TONE = ROOT / "configs" / "tone500.json"
TINY = [
    "model.dilations=[1,2,4]", "model.residual_channels=8", "model.dilation_channels=8",
    "model.skip_channels=8", "model.head_channels=8", "data.clips=4", "data.targets=128",
    "train.batch_size=4", "train.log_every=2",
]


def rows(run_dir: Path, split: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def spectral_peak_hz(audio: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sample_rate)[spectrum.argmax()])


@pytest.fixture
def one_thread():
    """One intra-op thread: with two, a loaded machine gave another float path and a 296 Hz model."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_model_trained_on_a_500hz_tone_generates_a_500hz_tone(tmp_path, one_thread):
    # The seed's first sanity check (002_e6172073bae3cf09.txt): overfit a 500 Hz tone at 8 kHz.
    cfg = train_config.load(TONE)
    metrics = Trainer(cfg, tmp_path / "run", show_progress=False).run()
    valid = rows(tmp_path / "run", "valid")
    assert valid[-1]["bits"] < valid[0]["bits"] - 1.0, "validation NLL must fall"
    assert metrics["bits"] == pytest.approx(valid[-1]["bits"])
    model = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    audio = np.concatenate(list(continue_audio(model, None, 0.5, temperature=1.0, seed=0)), axis=1)[0]
    assert len(audio) == 4000
    assert abs(spectral_peak_hz(audio, 8000) - 500.0) <= 10.0


def test_metrics_rows_have_nll_in_nats_and_bits_accuracy_lr_and_throughput(tmp_path):
    cfg = train_config.load(TONE, TINY + ["train.max_steps=4", "train.valid_every=2"])
    Trainer(cfg, tmp_path / "run", show_progress=False).run()
    train, valid = rows(tmp_path / "run", "train"), rows(tmp_path / "run", "valid")
    assert [r["step"] for r in train] == [2, 4] and [r["step"] for r in valid] == [2, 4]
    for r in train:
        assert {"nll_nats", "bits", "acc", "lr", "samples_per_s"} <= set(r)
        assert r["bits"] == pytest.approx(r["nll_nats"] / np.log(2))
    assert {"nll_nats", "bits", "acc"} <= set(valid[0])
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "finished"


def test_resume_continues_the_step_count_and_optimizer(tmp_path):
    run = tmp_path / "run"
    assert main(["--config", str(TONE), "--run-dir", str(run), "--no-progress", *sum((["--set", s] for s in TINY), []),
                 "--set", "train.max_steps=6", "--set", "train.valid_every=3"]) == 0
    first = load_checkpoint(latest_checkpoint(run))
    stale = run / "checkpoints" / ".step_00000007.tmp"  # a save killed before its rename
    stale.mkdir()
    assert main(["--run-dir", str(run), "--resume", "--no-progress", "--set", "train.max_steps=10"]) == 0
    assert not stale.exists(), "resuming clears what a killed save left"
    steps = [r["step"] for r in rows(run, "train")]
    assert steps == [2, 4, 6, 8, 10]
    assert latest_checkpoint(run).name == "step_00000010"
    state = json.loads((latest_checkpoint(run) / "trainer_state.json").read_text())
    assert state["step"] == 10
    resumed = load_checkpoint(latest_checkpoint(run))
    assert any((a != b).any() for a, b in zip(first.state_dict().values(), resumed.state_dict().values(), strict=True))


def test_with_ema_checkpoints_hold_the_moving_average_and_a_resume_trains_on_from_the_trained_weights(tmp_path):
    """train.ema = d: after step 1 the average is the trained weights; each later step moves it by (1 - d) towards
    them. The average is what is validated and saved (model.safetensors); trained.safetensors holds the trained
    weights, which a resume trains on from while the average goes on from the saved one."""
    run = tmp_path / "run"
    args = [*sum((["--set", s] for s in TINY), []), "--set", "train.ema=0.75", "--set", "train.valid_every=1",
            "--set", "train.keep_checkpoints=10"]
    assert main(["--config", str(TONE), "--run-dir", str(run), "--no-progress", *args,
                 "--set", "train.max_steps=2"]) == 0

    def weights(step: int, name: str = "model.safetensors") -> dict:
        return load_state(run / "checkpoints" / f"step_{step:08d}", name)

    resumed = Trainer(train_config.load(run / "config.json", ["train.max_steps=3"]), run, resume=True,
                      show_progress=False)
    for k, v in resumed.model.state_dict().items():
        torch.testing.assert_close(v, weights(2, TRAINED)[k])
        torch.testing.assert_close(resumed.averaged.module.state_dict()[k], weights(2)[k])
    resumed.run()
    (first, second, third), trained = ([weights(k, name) for k in (1, 2, 3)] for name in ("model.safetensors",
                                                                                             TRAINED))
    for k in first:
        torch.testing.assert_close(first[k], trained[0][k])
        torch.testing.assert_close(second[k], 0.75 * first[k] + 0.25 * trained[1][k])
        torch.testing.assert_close(third[k], 0.75 * second[k] + 0.25 * trained[2][k])
    assert any(not torch.equal(third[k], trained[2][k]) for k in third)
    with pytest.raises(ConfigError, match="train.ema must be in"):
        train_config.load(TONE, ["train.ema=1"])


def test_a_resume_that_names_a_new_learning_rate_restarts_the_optimizer_there_and_later_resumes_keep_it(tmp_path):
    run = tmp_path / "run"
    assert main(["--config", str(TONE), "--run-dir", str(run), "--no-progress", *sum((["--set", s] for s in TINY), []),
                 "--set", "train.max_steps=4", "--set", "train.lr=0.001"]) == 0
    assert main(["--run-dir", str(run), "--resume", "--no-progress", "--set", "train.max_steps=8",
                 "--set", "train.lr=0.0002"]) == 0
    assert main(["--run-dir", str(run), "--resume", "--no-progress", "--set", "train.max_steps=10"]) == 0
    assert [(r["step"], r["lr"]) for r in rows(run, "train")] == [(2, 1e-3), (4, 1e-3), (6, 2e-4), (8, 2e-4),
                                                                  (10, 2e-4)]


def test_init_from_starts_a_new_run_from_a_checkpoints_weights_at_step_zero(tmp_path):
    source = tmp_path / "source"
    assert main(["--config", str(TONE), "--run-dir", str(source), "--no-progress",
                 *sum((["--set", s] for s in TINY), []), "--set", "train.max_steps=4"]) == 0
    trained = load_checkpoint(latest_checkpoint(source)).state_dict()
    cfg = train_config.load(TONE, TINY + ["train.max_steps=1", f"train.init_from={latest_checkpoint(source)}",
                                          "train.seed=7"])
    trainer = Trainer(cfg, tmp_path / "tuned", show_progress=False)
    assert trainer.step == 0
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, trained[name]), name
    fresh = Trainer(train_config.load(TONE, TINY + ["train.seed=7"]), tmp_path / "fresh", show_progress=False)
    assert not all(torch.equal(a, trained[k]) for k, a in fresh.model.state_dict().items())


@pytest.mark.parametrize("init, message", [
    ("model.skip_channels=16", "has shape"),  # another architecture: every reshaped tensor is named
    ("model.dilations=[1,2,4,8]", "missing tensor"),
    ("model.residual_channels=4", "cannot be grown into this one: .*cannot be made narrower: residual_channels 8 -> 4"),
    ("model.residual_channels=16 model.head_channels=16", "can only be widened in .*head_channels 8 -> 16"),
])
def test_init_from_a_checkpoint_of_another_shape_is_refused_naming_the_tensors(tmp_path, init, message):
    source = tmp_path / "source"
    assert main(["--config", str(TONE), "--run-dir", str(source), "--no-progress",
                 *sum((["--set", s] for s in TINY), []), "--set", "train.max_steps=1"]) == 0
    cfg = train_config.load(TONE, TINY + [*init.split(), f"train.init_from={latest_checkpoint(source)}"])
    with pytest.raises(ConfigError, match=f"train.init_from: .*{message}"):
        Trainer(cfg, tmp_path / "tuned", show_progress=False)


def test_init_from_a_folder_that_is_not_a_checkpoint_is_refused(tmp_path):
    cfg = train_config.load(TONE, TINY + [f"train.init_from={tmp_path}"])
    with pytest.raises(ConfigError, match="train.init_from: .* is not a checkpoint"):
        Trainer(cfg, tmp_path / "run", show_progress=False)
    with pytest.raises(ConfigError, match="train.init_from must be"):
        train_config.load(TONE, ["train.init_from=3"])


def kept_steps(run: Path) -> set[int]:
    return {int(p.name.removeprefix("step_")) for p in (run / "checkpoints").iterdir()}


def test_a_run_points_best_at_its_lowest_validation_and_keeps_it(tmp_path):
    run = tmp_path / "run"
    assert main(["--config", str(TONE), "--run-dir", str(run), "--no-progress", *sum((["--set", s] for s in TINY), []),
                 "--set", "train.valid_every=1", "--set", "train.keep_checkpoints=2", "--set", "train.keep_every=5",
                 "--set", "train.max_steps=7"]) == 0
    valid = rows(run, "valid")
    best = min(valid, key=lambda r: r["nll_nats"])["step"]
    assert (run / "best").read_text() == f"step_{best:08d}"
    assert kept_steps(run) == {best, 5, 6, 7}


def test_retention_spares_the_newest_the_best_and_every_nth_checkpoint(tmp_path):
    run = tmp_path / "run"
    cfg = train_config.load(TONE, TINY + ["train.keep_checkpoints=2", "train.keep_every=5"])
    trainer = Trainer(cfg, run, show_progress=False)
    run.mkdir()
    metrics = {"nll_nats": 1.0, "bits": 1.44, "acc": 0.5}
    for step in range(1, 10):
        trainer.step = step
        trainer._save_checkpoint(metrics, best=step == 3)
    assert (run / "best").read_text() == "step_00000003"
    assert kept_steps(run) == {3, 5, 8, 9}
    trainer.cfg.train.keep_best = False
    trainer.step = 10
    trainer._save_checkpoint(metrics, best=False)
    assert kept_steps(run) == {5, 9, 10}


def test_starting_over_an_existing_run_without_resume_is_refused(tmp_path, capsys):
    args = ["--config", str(TONE), "--run-dir", str(tmp_path / "r"), "--no-progress",
            *sum((["--set", s] for s in TINY), []), "--set", "train.max_steps=2", "--set", "train.valid_every=2"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("train.lr=-0.1", "train.lr must be a number > 0"),
    ("train.learning_rate=0.1", "unknown train keys: learning_rate"),
    ("model.kernel_size=1", "kernel_size"),
    ("data.kind=mp3s", "kind must be one of"),
    ("optim.lr=1", "section model, data, objective, train"),
    ("train.batch_size=1000", "larger than the"),
    ("train.keep_every=-5", "train.keep_every must be a number >= 0"),
    ('train.keep_best="yes"', "train.keep_best must be true or false"),
])
def test_bad_config_is_refused_with_the_reason_before_training(tmp_path, capsys, override, message):
    code = main(["--config", str(TONE), "--run-dir", str(tmp_path / "r"), "--set", override, "--no-progress"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_missing_config_file_and_resume_without_run_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        train_config.load(tmp_path / "nope.json")
    assert main(["--run-dir", str(tmp_path / "nothing"), "--resume"]) == 2


def _train_cmd(run: Path, *extra: str) -> list[str]:
    sets = sum((["--set", s] for s in TINY), [])
    return ["-m", "core.train", "--config", str(TONE), "--run-dir", str(run), "--no-progress", *sets, *extra]


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while not predicate():
        if time.time() > end:
            raise TimeoutError("condition not reached")
        time.sleep(0.1)


def test_sigterm_stops_gracefully_with_a_loadable_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, *_train_cmd(run, "--set", "train.max_steps=100000",
                                                          "--set", "train.valid_every=1000")], cwd=ROOT)
    _wait_for(lambda: (run / "metrics.jsonl").exists())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped"
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and ckpt.name == f"step_{status['step']:08d}"
    load_checkpoint(ckpt)


def test_kill_9_mid_run_leaves_a_checkpoint_that_loads_and_resumes(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, *_train_cmd(run, "--set", "train.max_steps=100000",
                                                          "--set", "train.valid_every=3")], cwd=ROOT)
    _wait_for(lambda: latest_checkpoint(run) is not None and len(rows(run, "valid")) >= 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = latest_checkpoint(run)
    load_checkpoint(ckpt)
    step = json.loads((ckpt / "trainer_state.json").read_text())["step"]
    assert main(["--run-dir", str(run), "--resume", "--no-progress", "--set", f"train.max_steps={step + 2}"]) == 0
    assert json.loads((run / "status.json").read_text())["step"] == step + 2


def test_torchrun_two_processes_train_with_ddp_and_only_rank_0_writes(tmp_path):
    run = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2",
           *_train_cmd(run, "--set", "train.max_steps=4", "--set", "train.valid_every=2")]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["world_size"] == 2
    assert [r["step"] for r in rows(run, "train")] == [2, 4], "one row per log: only rank 0 writes"
    load_checkpoint(latest_checkpoint(run))


@pytest.mark.parametrize("warmup, first_rate", [(0, 1e-3), (4, 2.5e-4)])
def test_warmup_raises_the_rate_linearly_and_adams_first_step_moves_each_weight_by_that_rate(
        tmp_path, warmup, first_rate):
    cfg = train_config.load(TONE, TINY + ["train.max_steps=1", "train.lr=0.001", f"train.warmup_steps={warmup}"])
    trainer = Trainer(cfg, tmp_path / "one", show_progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    moved = max((v - before[k]).abs().max().item() for k, v in trainer.model.state_dict().items())
    assert moved == pytest.approx(first_rate, rel=0.01)  # Adam's first step: lr * g / |g| for every weight
    run = tmp_path / "run"
    assert main(["--config", str(TONE), "--run-dir", str(run), "--no-progress", *sum((["--set", s] for s in TINY), []),
                 "--set", "train.log_every=1", "--set", "train.max_steps=3", "--set", "train.lr=0.001",
                 "--set", f"train.warmup_steps={warmup}"]) == 0
    assert main(["--run-dir", str(run), "--resume", "--no-progress", "--set", "train.max_steps=6"]) == 0
    expected = [1e-3 * min(1, s / warmup) if warmup else 1e-3 for s in range(1, 7)]
    assert [r["lr"] for r in rows(run, "train")] == pytest.approx(expected)  # a resume goes on along the ramp


def test_warmup_steps_must_be_a_whole_number_of_steps():
    for bad in ("-1", "2.5", "true"):
        with pytest.raises(ConfigError, match="train.warmup_steps"):
            train_config.load(TONE, [f"train.warmup_steps={bad}"])
