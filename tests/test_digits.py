"""core.digits for both digit models: infill keeps the observed pixels, draws the rest from the right
class, and the surprise and class posterior are the model's own log-likelihoods."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core import digits as dg
from core.conditioning import Cond
from core.errors import ConfigError
from core.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from core.models.wavenet import WaveNet, WaveNetConfig


def tiny_digit_wavenet(levels: int = 4, seed: int = 0) -> WaveNet:
    torch.manual_seed(seed)
    return WaveNet(WaveNetConfig(quantization_levels=levels, codec="none", sample_rate=0, n_classes=10,
                                 dilations=[1, 2, 4, 8, 16], residual_channels=8, dilation_channels=8,
                                 skip_channels=8, head_channels=8, extra={"image_shape": [28, 28]})).eval()


def tiny_digit_pixelcnn(levels: int = 4, seed: int = 0) -> GatedPixelCNN:
    torch.manual_seed(seed)
    return GatedPixelCNN(PixelCNNConfig(quantization_levels=levels, channels=4, layers=3, first_kernel_size=3,
                                        kernel_size=3, skip_channels=8, head_channels=8, n_classes=10)).eval()


MODELS = {"wavenet": tiny_digit_wavenet, "pixelcnn": tiny_digit_pixelcnn}


def loud_classes(model: torch.nn.Module) -> torch.nn.Module:
    """The model with its class embedding scaled up, so a random model's drawing depends on the class."""
    with torch.no_grad():
        model.class_embedding.weight.mul_(3)
        list(model.head.modules())[-1].weight.mul_(50)  # sharper logits: greedy choices that differ
    return model


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("mask", ["top half", "left half", "painted region"])
def test_greedy_infill_keeps_observed_pixels_and_takes_the_argmax_given_the_class(kind: str, mask: str) -> None:
    model = loud_classes(MODELS[kind]())
    painted = np.zeros((28, 28), bool)
    painted[5:20, 10:18] = True
    keep = torch.from_numpy(dg.observed_mask(mask, painted))
    original = torch.randint(0, 4, (1, 784), generator=torch.Generator().manual_seed(1))
    classes = torch.arange(10)
    x = dg.sample(model, classes, observed=(keep, original), temperature=0)
    assert torch.equal(x[:, keep], original[:, keep].expand(10, -1))
    with torch.no_grad():
        greedy = model(x, Cond(classes=classes)).argmax(1)  # (2, 784): what each pixel's argmax was
    assert torch.equal(x[:, ~keep], greedy[:, ~keep])  # every drawn pixel, given its class and the past
    # One call per class with the same seed: the same random numbers, so only the class differs.
    same_seed = torch.cat([dg.sample(model, torch.tensor([y]), observed=(keep, original), seed=0) for y in range(3)])
    assert len(same_seed.unique(dim=0)) > 1  # the class changes what is drawn


@pytest.mark.parametrize("kind", MODELS)
def test_seeded_samples_repeat_and_stay_in_range(kind: str) -> None:
    model = MODELS[kind]()
    steps = []
    a = dg.sample(model, torch.tensor([0, 9]), seed=5, progress=lambda done, total: steps.append((done, total)))
    assert a.shape == (2, 784) and a.min() >= 0 and a.max() < 4
    assert torch.equal(a, dg.sample(model, torch.tensor([0, 9]), seed=5))
    assert steps[-1] == (784, 784) and len(steps) > 1  # progress is reported as it goes


def test_wavenet_infill_is_the_same_through_the_fused_and_cached_generators() -> None:
    model = tiny_digit_wavenet()
    keep = torch.from_numpy(dg.observed_mask("bottom half"))
    original = torch.randint(0, 4, (784,), generator=torch.Generator().manual_seed(2))
    a = dg.sample(model, torch.tensor([4]), observed=(keep, original), temperature=0, method="fused")
    b = dg.sample(model, torch.tensor([4]), observed=(keep, original), temperature=0, method="cached")
    assert torch.equal(a, b)


@pytest.mark.parametrize("kind", MODELS)
def test_surprise_and_posterior_are_the_models_log_likelihoods(kind: str) -> None:
    model = MODELS[kind]()
    x = torch.randint(0, 4, (2, 784), generator=torch.Generator().manual_seed(3))
    bits = dg.surprise_bits(model, x, torch.tensor([1, 2]))
    with torch.no_grad():
        logp = torch.stack([-F.cross_entropy(model(x, Cond(classes=torch.full((2,), y))), x, reduction="none").sum(1)
                            for y in range(10)], dim=1).double()  # (2, 10) log p(x | y)
    assert torch.allclose(bits.sum(1).double(), -logp[torch.arange(2), torch.tensor([1, 2])] / np.log(2), rtol=1e-5)
    assert torch.allclose(dg.class_posterior(model, x), torch.softmax(logp, dim=1), atol=1e-4)


def test_masks_and_conversions() -> None:
    assert dg.observed_mask("top half").reshape(28, 28)[:14].all() and not dg.observed_mask("top half")[392:].any()
    assert dg.observed_mask("right half").reshape(28, 28)[:, 14:].all()
    with pytest.raises(ConfigError, match="empty"):
        dg.observed_mask("painted region", np.zeros((28, 28), bool))
    with pytest.raises(ConfigError, match="paint"):
        dg.observed_mask("painted region")
    with pytest.raises(ConfigError, match="mask must be one of"):
        dg.observed_mask("middle")
    images = np.arange(784, dtype=np.uint16).reshape(1, 28, 28) % 256
    assert np.array_equal(dg.to_images(dg.to_tokens(images.astype(np.uint8), 256), 256), images)
    assert set(np.unique(dg.to_images(dg.to_tokens(images.astype(np.uint8), 2), 2))) == {0, 255}


def test_non_digit_models_and_bad_classes_are_refused() -> None:
    audio = WaveNet(WaveNetConfig(quantization_levels=4, dilations=[1], residual_channels=2, dilation_channels=2,
                                  skip_channels=2, head_channels=2))
    with pytest.raises(ConfigError, match="not a digit model"):
        dg.sample(audio, torch.tensor([1]))
    with pytest.raises(ConfigError, match="digits 0..9"):
        dg.sample(tiny_digit_pixelcnn(), torch.tensor([10]))
