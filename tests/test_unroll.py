"""Train unrolling: the n-step loss backpropagates through the model's own sampled inputs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import ConfigError
from core.training import config as train_config
from core.training import unroll
from core.training.loop import Trainer
from core.training.unroll import gumbel_softmax, unrolled_nll
from tests.test_mnist import small_splits
from tests.test_wavenet import small_model

ROOT = Path(__file__).resolve().parents[1]


def test_loss_at_horizon_h_reaches_the_weights_through_the_rolled_out_samples(monkeypatch):
    model = small_model(dilations=[1, 2, 4])
    x = torch.randint(0, 16, (2, 30))
    gen = torch.Generator().manual_seed(0)
    losses = unrolled_nll(model, x, None, origin=10, steps=4, generator=gen)
    assert losses.shape == (4,)
    # Through the samples: the loss at h=3 depends on the input layer's weights for the tokens
    # the model drew at 10..12 as well as the true ones; cut the samples off and it changes.
    w = model.input_conv.weight
    (g_through,) = torch.autograd.grad(losses[2], w, retain_graph=True)
    assert g_through.abs().sum() > 0

    def no_sample_gradient(logits, tau, hard, generator):
        return gumbel_softmax(logits, tau, hard, generator).detach()

    monkeypatch.setattr(unroll, "gumbel_softmax", no_sample_gradient)
    detached = unrolled_nll(model, x, None, origin=10, steps=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(detached, losses)  # same values: same samples
    (g_cut,) = torch.autograd.grad(detached[2], w)
    assert not torch.allclose(g_through, g_cut), "no gradient flowed through the sampled inputs"


def test_the_first_unrolled_step_is_the_teacher_forced_loss():
    model = small_model()
    x = torch.randint(0, 16, (3, 40))
    with torch.no_grad():
        one_step = torch.nn.functional.cross_entropy(model(x)[:, :, 25], x[:, 25])
        assert torch.allclose(unrolled_nll(model, x, None, origin=25, steps=3)[0], one_step, atol=1e-5)


def test_straight_through_samples_are_one_hot_forward_with_soft_gradients():
    logits = torch.randn(4, 7, requires_grad=True)
    y = gumbel_softmax(logits, 0.5, True, torch.Generator().manual_seed(1))
    hard = torch.nn.functional.one_hot(y.detach().argmax(-1), 7).float()
    torch.testing.assert_close(y.detach(), hard, atol=1e-6, rtol=0)  # one-hot up to rounding
    (y * torch.arange(7.0)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_training_with_unrolling_logs_the_unrolled_loss(tmp_path):
    cfg = train_config.load(None, [
        "model.quantization_levels=16", "model.dilations=[1,2]", "model.residual_channels=4",
        "model.dilation_channels=4", "model.skip_channels=4", "model.head_channels=4", "model.sample_rate=8000",
        "data.clips=2", "data.targets=32", "data.seconds=0.2", "train.batch_size=2", "train.max_steps=2",
        "train.log_every=1", "train.valid_every=2", "objective.name=unroll", "objective.steps=3",
        "objective.hard=true",
    ])
    Trainer(cfg, tmp_path / "run", show_progress=False).run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("unroll_nll_nats" in r for r in rows if r["split"] == "train")


def test_bad_unroll_settings_are_refused():
    with pytest.raises(ConfigError, match="objective.steps"):
        train_config.load(None, ["objective.name=unroll", "objective.steps=0"])
    with pytest.raises(ConfigError, match="objective.tau"):
        train_config.load(None, ["objective.name=unroll", "objective.tau=0"])
    with pytest.raises(ConfigError, match="unknown unroll objective keys: stepz"):
        train_config.load(None, ["objective.name=unroll", "objective.stepz=3"])


def test_a_config_from_before_the_objective_section_becomes_the_unroll_objective():
    cfg = train_config.load(None, ["train.unroll_steps=5", "train.unroll_hard=true", "train.unroll_tau=0.5"])
    assert cfg.to_dict()["objective"] == {"name": "unroll", "steps": 5, "weight": 0.5, "tau": 0.5, "hard": True}
    assert "unroll_steps" not in cfg.to_dict()["train"]
    off = train_config.load(None, ["train.unroll_steps=0", "train.unroll_weight=2.0"])
    assert off.to_dict()["objective"] == {"name": "nll"}
    with pytest.raises(ConfigError, match="objective.steps"):
        train_config.load(None, ["train.unroll_steps=-1"])


def test_the_unroll_objective_refuses_a_pixelcnn_before_training(tmp_path):
    cfg = train_config.load(ROOT / "configs" / "digits_pixelcnn.json", [
        "objective.name=unroll", "model.channels=4", "model.layers=2", "train.batch_size=2",
        f"data.mnist_path={tmp_path / 'd.npz'}"])
    np.savez(tmp_path / "d.npz", **small_splits(n_train=4, n_valid=2, n_test=2))
    with pytest.raises(ConfigError, match="single-process WaveNet"):
        Trainer(cfg, tmp_path / "run", show_progress=False)
