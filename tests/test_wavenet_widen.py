"""Growing a trained WaveNet wider (core.models.wavenet_widen): the wider model computes what the narrow one
did, for every class and any local conditioning, its new channels learn, and what cannot be grown is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from core.checkpoints import load_weights_into, save_checkpoint
from core.conditioning import Cond
from core.errors import CheckpointError, ConfigError
from core.models.wavenet import WaveNet
from core.models.wavenet_widen import widen_state
from tests.conftest import tiny_audio_config


def trained_like(config) -> WaveNet:
    """A WaveNet whose every weight (biases and class embedding included) is random and non-zero."""
    torch.manual_seed(0)
    model = WaveNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    return model.eval()


def logits(model: WaveNet, x: torch.Tensor, cond: Cond | None) -> torch.Tensor:
    with torch.no_grad():
        return model(x, cond)


@pytest.mark.parametrize("widths", [dict(residual_channels=12), dict(dilation_channels=11),
                                    dict(residual_channels=16, dilation_channels=13)])
def test_a_widened_wavenet_computes_what_the_narrow_one_did_for_every_class_and_local_input(widths) -> None:
    old = tiny_audio_config(n_classes=3, local_channels=2, local_hop=4)
    narrow = trained_like(old)
    wide = WaveNet(replace(old, **widths)).eval()
    wide.load_state_dict(widen_state(narrow.state_dict(), old, wide))
    x = torch.randint(0, 256, (3, 40))
    cond = Cond(classes=torch.tensor([0, 1, 2]), local=torch.randn(3, 2, 10))
    torch.testing.assert_close(logits(wide, x, cond), logits(narrow, x, cond), rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in narrow.parameters())


def test_the_new_channels_carry_signal_and_the_zero_weights_reading_them_get_gradients() -> None:
    old = tiny_audio_config()
    wide = WaveNet(replace(old, residual_channels=12, dilation_channels=12))
    wide.load_state_dict(widen_state(trained_like(old).state_dict(), old, wide))
    conv, out = wide.layers[1].conv, wide.layers[1].out
    old_rows = torch.cat([torch.arange(8), 12 + torch.arange(8)])  # gates: tanh, sigmoid; out: residual, skip
    assert conv.weight[old_rows, 8:].abs().sum() == 0 and out.weight[old_rows, 8:].abs().sum() == 0  # zeros
    x = torch.randint(0, 256, (2, 40))
    torch.nn.functional.cross_entropy(wide(x)[..., :-1], x[:, 1:]).backward()
    assert conv.weight.grad[old_rows, 8:].abs().sum() > 0 and out.weight.grad[old_rows, 8:].abs().sum() > 0


def test_a_checkpoint_without_classes_grows_into_a_wider_class_conditional_model_that_starts_as_it(tmp_path) -> None:
    old = tiny_audio_config()
    narrow = trained_like(old)
    save_checkpoint(narrow, tmp_path / "narrow")
    wide = WaveNet(replace(old, residual_channels=12, n_classes=4)).eval()
    load_weights_into(wide, tmp_path / "narrow")
    x = torch.randint(0, 256, (4, 40))
    torch.testing.assert_close(logits(wide, x, Cond(classes=torch.arange(4))), logits(narrow, x, None),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    (dict(residual_channels=4), "cannot be made narrower: residual_channels 8 -> 4"),
    (dict(residual_channels=16, skip_channels=16), "can only be widened in .*skip_channels 8 -> 16"),
    (dict(residual_channels=16, dilations=[1, 2, 4]), "dilations"),
    (dict(residual_channels=16, n_classes=5), "n_classes 3 -> 5"),
])
def test_what_cannot_be_grown_is_refused_saying_why(change, message) -> None:
    old = tiny_audio_config(n_classes=3)
    with pytest.raises(ConfigError, match=message):
        widen_state(trained_like(old).state_dict(), old, WaveNet(replace(old, **change)))


def test_load_weights_into_names_the_checkpoint_it_cannot_grow(tmp_path) -> None:
    old = tiny_audio_config()
    save_checkpoint(trained_like(old), tmp_path / "narrow")
    with pytest.raises(CheckpointError, match="narrow cannot be grown into this one: .*head_channels"):
        load_weights_into(WaveNet(replace(old, dilation_channels=16, head_channels=16)), tmp_path / "narrow")
