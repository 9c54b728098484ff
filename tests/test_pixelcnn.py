"""Gated PixelCNN: causality and no blind spot by gradients, classes, inputs, checkpoints, config, training."""

import json
import math
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.checkpoints import load_checkpoint, read_config, save_checkpoint
from core.conditioning import Cond
from core.errors import ConfigError
from core.models import build_model, config_from_dict
from core.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from core.training import config as train_config
from core.training.loop import Trainer
from tests.test_mnist import small_splits

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(quantization_levels=5, height=8, width=8, channels=4, skip_channels=4, head_channels=8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread avoids OpenMP stalls on a shared, loaded CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_model(seed: int = 0, **kw) -> GatedPixelCNN:
    """A float64 model with random weights (float64 so a real dependence never rounds to zero)."""
    torch.manual_seed(seed)
    return GatedPixelCNN(PixelCNNConfig(**{**SMALL, **kw})).double().eval()


def random_configs(n: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        yield dict(
            quantization_levels=rng.choice([2, 3, 7]),
            height=rng.randint(1, 8),
            width=rng.randint(1, 8),
            layers=rng.randint(1, 5),
            first_kernel_size=rng.choice([3, 5, 7]),
            kernel_size=rng.choice([3, 5]),
            n_classes=rng.choice([0, 3]),
        )


def classes_for(model: GatedPixelCNN, batch: int) -> Cond | None:
    n = model.config.n_classes
    return Cond(classes=torch.arange(batch) % n) if n else None


def dependencies(model: GatedPixelCNN) -> torch.Tensor:
    """BoolTensor (T, T): [i, j] is whether the logits at pixel i have a nonzero gradient from pixel j.

    One backward pass: batch element i is a copy of the same random soft one-hot image, and
    only its logits at pixel i (under a random projection of the Q levels) enter the sum.
    """
    c = model.config
    t, q = c.pixels, c.quantization_levels
    g = torch.Generator().manual_seed(0)
    image = torch.softmax(torch.randn(1, q, t, generator=g, dtype=torch.float64), dim=1)
    x = image.expand(t, -1, -1).clone().requires_grad_()
    cond = Cond(classes=torch.full((t,), c.n_classes - 1)) if c.n_classes else None
    logits = model(x, cond)  # (T, Q, T)
    i = torch.arange(t)
    (logits[i, :, i] @ torch.randn(q, generator=g, dtype=torch.float64)).sum().backward()
    return x.grad.abs().sum(dim=1) != 0


def analytic(config: PixelCNNConfig) -> torch.Tensor:
    """BoolTensor (T, T): row i is `receptive_field_mask(i)`."""
    return torch.stack([config.receptive_field_mask(i) for i in range(config.pixels)])


# -- causality and the receptive field --------------------------------------------------


@pytest.mark.parametrize("cfg", list(random_configs(8)))
def test_logits_at_pixel_i_have_zero_gradient_from_pixels_at_or_after_i(cfg):
    deps = dependencies(small_model(**cfg))
    at_or_after = torch.ones_like(deps).triu()  # [i, j] for j >= i in raster order
    assert not (deps & at_or_after).any(), f"pixels depend on themselves or later: {deps.nonzero().tolist()}"


@pytest.mark.parametrize("cfg", list(random_configs(8, seed=1)))
def test_measured_dependencies_equal_the_analytic_receptive_field(cfg):
    model = small_model(**cfg)
    assert torch.equal(dependencies(model), analytic(model.config))


def test_a_deep_enough_net_has_no_blind_spot_every_pixel_sees_all_earlier_pixels():
    # radius a = 5 // 2 + (6 - 1) * (3 // 2) = 7 >= max(W - 1, H - 2) = 7: the analytic bound for 8 x 8.
    model = small_model(layers=6, first_kernel_size=5, kernel_size=3, n_classes=3)
    assert model.config.receptive_radius == 7 and model.config.covers_image
    deps = dependencies(model)
    t = model.config.pixels
    assert deps[-1].sum() == t - 1, "the last pixel misses an earlier pixel"
    assert torch.equal(deps, torch.ones(t, t, dtype=torch.bool).tril(-1))


def test_one_layer_fewer_leaves_earlier_pixels_out_of_reach():
    model = small_model(layers=5, first_kernel_size=5, kernel_size=3)
    assert not model.config.covers_image
    deps = dependencies(model)
    assert deps[-1].sum() < model.config.pixels - 1
    assert not deps[-1, 7 * 8]  # (7, 7) reaches 6 columns left: (7, 0) is out of reach
    assert torch.equal(deps, analytic(model.config))


def test_changing_pixels_at_or_after_i_leaves_the_logits_up_to_i_unchanged():
    model = small_model(layers=3, n_classes=3)
    q, t = model.config.quantization_levels, model.config.pixels
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, q, (2, t), generator=g)
    cond = classes_for(model, 2)
    with torch.no_grad():
        base = model(x, cond)
        for i in (0, 9, t // 2, t - 1):
            y = x.clone()
            y[:, i:] = torch.randint(0, q, (2, t - i), generator=g)
            assert torch.equal(model(y, cond)[:, :, : i + 1], base[:, :, : i + 1])


# -- conditioning and inputs ------------------------------------------------------------


def test_the_class_changes_the_logits_of_every_pixel():
    model = small_model(layers=2, n_classes=4)
    x = torch.randint(0, model.config.quantization_levels, (1, model.config.pixels)).expand(4, -1)
    with torch.no_grad():
        logits = model(x, Cond(classes=torch.arange(4)))
    for a in range(4):
        for b in range(a + 1, 4):
            assert (logits[a] - logits[b]).abs().amax(dim=0).min() > 0, f"classes {a} and {b} agree at some pixel"


def test_class_conditioning_is_checked():
    conditional, plain = small_model(n_classes=3), small_model()
    x = torch.zeros(2, 64, dtype=torch.long)
    with pytest.raises(ValueError, match="class-conditional"):
        conditional(x)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        conditional(x, Cond(classes=torch.tensor([0, 3])))
    with pytest.raises(ValueError, match="n_classes=0"):
        plain(x, Cond(classes=torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="local"):
        plain(x, Cond(local=torch.zeros(2, 1, 64)))


def test_token_and_one_hot_inputs_give_the_same_logits():
    model = small_model(layers=3, n_classes=3)
    q, t = model.config.quantization_levels, model.config.pixels
    x = torch.randint(0, q, (3, t))
    cond = classes_for(model, 3)
    with torch.no_grad():
        from_tokens = model(x, cond)
        from_one_hots = model(F.one_hot(x, q).transpose(1, 2).double(), cond)
    assert from_tokens.shape == (3, q, t)
    torch.testing.assert_close(from_tokens, from_one_hots, rtol=0, atol=1e-12)


def test_inputs_of_the_wrong_shape_are_refused_with_the_expected_shape():
    model = small_model()
    with pytest.raises(ValueError, match=r"\(B, 64\)"):
        model(torch.zeros(1, 63, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 5, 64\)"):
        model(torch.zeros(1, 4, 64, dtype=torch.float64))


def test_log_prob_is_the_sum_over_pixels_of_the_log_softmax_at_each_image():
    model = small_model(layers=2, n_classes=3)
    x = torch.randint(0, model.config.quantization_levels, (3, model.config.pixels))
    cond = classes_for(model, 3)
    with torch.no_grad():
        expected = model(x, cond).log_softmax(dim=1).gather(1, x[:, None]).squeeze(1).sum(dim=1)
        got = model.log_prob(x, cond)
    assert got.shape == (3,) and (got < 0).all()
    torch.testing.assert_close(got, expected)


# -- checkpoints and config -------------------------------------------------------------


def test_checkpoint_round_trip_restores_the_config_and_the_logits(tmp_path):
    model = small_model(layers=3, n_classes=3, extra={"class_names": ["a", "b", "c"]}).float()
    folder = save_checkpoint(model, tmp_path / "pixelcnn")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "pixelcnn"
    assert read_config(folder) == model.config
    loaded = load_checkpoint(folder)
    assert isinstance(loaded, GatedPixelCNN)
    x = torch.randint(0, 5, (2, 64))
    with torch.no_grad():
        assert torch.equal(loaded(x, classes_for(loaded, 2)), model(x, classes_for(model, 2)))


@pytest.mark.parametrize("field, value", [
    ("quantization_levels", 1), ("height", 0), ("width", -2), ("channels", 0), ("layers", 0),
    ("first_kernel_size", 4), ("first_kernel_size", 1), ("kernel_size", 2), ("kernel_size", 3.0),
    ("skip_channels", 0), ("head_channels", True), ("n_classes", -1), ("extra", "none"),
])
def test_bad_config_values_raise_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        PixelCNNConfig(**{field: value})


def test_unknown_config_keys_are_named():
    with pytest.raises(ConfigError, match="depth"):
        config_from_dict({"model_type": "pixelcnn", "depth": 3})
    assert isinstance(build_model(config_from_dict({"model_type": "pixelcnn"})), GatedPixelCNN)


def test_receptive_field_mask_refuses_a_pixel_outside_the_image():
    with pytest.raises(ValueError, match="pixel"):
        PixelCNNConfig(height=2, width=3).receptive_field_mask(6)


def test_digits_preset_covers_the_whole_image_and_its_checkpoint_is_under_20_mb():
    cfg = train_config.load(ROOT / "configs" / "digits_pixelcnn.json")
    config = cfg.model_config()
    assert isinstance(config, PixelCNNConfig) and cfg.data.kind == "mnist"
    assert (config.quantization_levels, config.height, config.width, config.n_classes) == (256, 28, 28, 10)
    assert config.covers_image
    with torch.device("meta"):
        model = build_model(config)
    assert sum(p.numel() for p in model.parameters()) * 4 < 5e6  # float32 bytes: well under 20 MB


# -- training ---------------------------------------------------------------------------


def test_three_training_steps_on_mnist_shaped_digits_write_a_loadable_checkpoint(tmp_path):
    np.savez(tmp_path / "digits.npz", **small_splits(n_train=8, n_test=4))
    model = PixelCNNConfig(n_classes=10, channels=4, layers=2, skip_channels=8, head_channels=8)
    cfg = train_config.from_dict({
        "model": {"model_type": "pixelcnn", **asdict(model)},
        "data": {"kind": "mnist", "levels": 256, "mnist_path": str(tmp_path / "digits.npz")},
        "train": {"batch_size": 4, "max_steps": 3, "valid_every": 3, "log_every": 1, "valid_batches": 1},
    })
    trainer = Trainer(cfg, tmp_path / "run", device="cpu", show_progress=False)
    metrics = trainer.run()
    assert trainer.step == 3 and math.isfinite(metrics["nll_nats"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3]
    assert all(math.isfinite(r["nll_nats"]) for r in rows)
    loaded = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000003")
    assert isinstance(loaded, GatedPixelCNN) and loaded.config == model


@pytest.mark.parametrize("n_classes", [0, 3])
def test_row_by_row_logits_equal_the_full_forward_at_every_row(n_classes):
    torch.manual_seed(0)
    cfg = PixelCNNConfig(quantization_levels=5, height=6, width=5, channels=4, layers=3, first_kernel_size=3,
                         kernel_size=3, skip_channels=6, head_channels=6, n_classes=n_classes)
    model = GatedPixelCNN(cfg).eval()
    x = torch.randint(0, 5, (2, 30))
    cond = Cond(classes=torch.tensor([0, 2])) if n_classes else None
    full = model(x, cond).reshape(2, 5, 6, 5)
    for r in range(6):
        row = model.row_logits(x[:, r * 5 : (r + 1) * 5], model.row_context(x, cond, r))
        torch.testing.assert_close(row, full[:, :, r], atol=1e-5, rtol=1e-5)
    later = x.clone()
    later[:, 15:] = torch.randint(0, 5, (2, 15))  # rows >= 3 do not reach row 3's context
    for a, b in zip(model.row_context(x, cond, 3), model.row_context(later, cond, 3), strict=True):
        assert torch.equal(a, b)


def test_the_model_card_describes_the_receptive_field_as_a_region_of_pixels():
    from core.checkpoints import model_card

    whole = GatedPixelCNN(PixelCNNConfig(layers=13, first_kernel_size=7, kernel_size=5, channels=2, skip_channels=2,
                                         head_channels=2))
    assert "Receptive field: every earlier pixel of the 28 x 28 image (radius 27)." in model_card(whole)
    part = GatedPixelCNN(PixelCNNConfig(layers=2, first_kernel_size=3, kernel_size=3, channels=2, skip_channels=2,
                                        head_channels=2))
    assert "the earlier pixels within 2 of the 28 x 28 image" in model_card(part)
