"""Train unrolling: the n-step loss backpropagates through the model's own sampled inputs."""

import json

import pytest
import torch

from core import train_config, unroll
from core.errors import ConfigError
from core.train import Trainer
from core.unroll import gumbel_softmax, unrolled_nll
from tests.test_wavenet import small_model


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
        "train.log_every=1", "train.valid_every=2", "train.unroll_steps=3", "train.unroll_hard=true",
    ])
    Trainer(cfg, tmp_path / "run", show_progress=False).run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("unroll_nll_nats" in r for r in rows if r["split"] == "train")


def test_bad_unroll_settings_are_refused():
    with pytest.raises(ConfigError, match="unroll_steps"):
        train_config.load(None, ["train.unroll_steps=-1"])
    with pytest.raises(ConfigError, match="unroll_tau"):
        train_config.load(None, ["train.unroll_tau=0"])
