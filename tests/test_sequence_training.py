"""The sequence latent-variable families through the shared CLIs: data kinds, the bound objective, core.evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from core.data.pianorolls import load_pianorolls, train_mean
from core.errors import ConfigError
from core.evaluate import main as evaluate
from core.sample import main as sample
from core.train import main as train
from core.training import config as train_config


def test_a_pianoroll_config_takes_its_frame_size_and_training_mean_from_the_data():
    cfg = train_config.load(None, ["model.model_type=vrnn", "data.kind=pianorolls", "data.name=jsb"])
    expected = train_mean(load_pianorolls("jsb")["train"])
    assert cfg.model["data_dim"] == 88 and cfg.model["emission"] == "bernoulli"
    np.testing.assert_allclose(cfg.model["train_mean"], expected)
    assert cfg.to_dict()["objective"] == {"name": "bound", "bound": "fivo", "particles": 4,
                                          "resampling": "multinomial", "threshold": 0.5, "relaxed": False,
                                          "fused": True}
    mine = [0.5] * 88
    given = train_config.load(None, ["model.model_type=vrnn", "data.kind=pianorolls", f"model.train_mean={mine}"])
    assert given.model["train_mean"] == mine  # what the config gives wins
    form = train_config.load(None, ["model.model_type=vrnn", "data.kind=pianorolls", "model.train_mean=[]",
                                    "model.data_dim=88"])  # the Train page's form sends every field at its default
    np.testing.assert_allclose(form.model["train_mean"], expected)


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.model_type=wavenet", "data.kind=pianorolls"], "use a sequence model"),
    (["model.model_type=vrnn", "data.kind=pianorolls", "objective.bound=vae"], "objective.bound must be one of"),
    (["model.model_type=vrnn", "data.kind=pianorolls", "objective.particles=0"], "objective.particles"),
    (["model.model_type=vrnn", "data.kind=pianorolls", "data.name=bach"], "name must be one of"),
])
def test_bad_sequence_settings_are_refused_before_training(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        cfg = train_config.load(None, overrides)
        from core.training.loop import Trainer

        Trainer(cfg, tmp_path / "run", show_progress=False)


def test_a_ghmm_with_a_learned_proposal_trains_by_fivo_and_evaluates_to_the_seeds_lines(tmp_path, capsys):
    run = tmp_path / "ghmm"
    assert train(["--run-dir", str(run), "--no-progress", "--set", "model.model_type=ghmm",
                  "--set", "model.proposal=learned_smoothing", "--set", "data.kind=ghmm", "--set", "data.sequences=256",
                  "--set", "train.batch_size=16", "--set", "train.max_steps=60", "--set", "train.valid_every=30",
                  "--set", "train.lr=0.05"]) == 0
    valid = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines() if '"valid"' in r]
    assert {"elbo_nats", "iwae_nats", "fivo_nats"} <= set(valid[-1]) and valid[-1]["elbo_nats"] > valid[0]["elbo_nats"]
    capsys.readouterr()
    assert evaluate(["--checkpoint", str(run / "checkpoints" / "step_00000060")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("test elbo ll/t: ") and " iwae ll/t: " in lines[0] and " fivo ll/t: " in lines[0]
    assert lines[1].startswith("test elbo ll/seq: ")
    report = json.loads(lines[2])
    assert report["particles"] == 4 and report["dims_per_item"] == 5
    assert report["elbo_per_t"] <= report["iwae_per_t"] + 0.05  # IWAE is the tighter bound (up to noise)
    assert report["fivo_per_seq"] == pytest.approx(5 * report["fivo_per_t"])


def test_a_vrnn_trained_on_jsb_samples_the_seeds_npz_and_playable_midi_and_wav(tmp_path):
    run = tmp_path / "vrnn"
    assert train(["--run-dir", str(run), "--no-progress", "--set", "model.model_type=vrnn",
                  "--set", "model.latent_size=8", "--set", "data.kind=pianorolls", "--set", "data.max_items=8",
                  "--set", "objective.bound=iwae", "--set", "train.batch_size=4", "--set", "train.max_steps=2",
                  "--set", "train.valid_every=2"]) == 0
    out = tmp_path / "samples"
    assert sample(["--checkpoint", str(run / "checkpoints" / "step_00000002"), "--out", str(out), "--count", "3",
                   "--sequences", "2", "--prefix-steps", "25", "--steps", "10", "--seed", "0", "--no-progress"]) == 0
    npz = np.load(out / "samples.npz")
    assert npz["prefixes"].shape == (25, 2, 88) and npz["samples"].shape == (10, 2, 3, 88)
    assert set(np.unique(npz["samples"])) <= {0.0, 1.0}
    assert (out / "seq1_sample2.mid").read_bytes()[:4] == b"MThd"
    audio, rate = sf.read(out / "seq1_sample2.wav")
    assert rate == 16000 and len(audio) == 35 * round(0.3 * 16000)
