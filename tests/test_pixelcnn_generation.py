"""The PixelCNN steppers ("rows", "cached", "fused"): each one's logits equal the full forward's at
every pixel, with classes, priming and observed masks (infill); the C kernel's threads do not change a draw."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from core.conditioning import Cond
from core.generation import default_method, generate_all, make_stepper
from core.generation.pixelcnn_fused import available
from core.models.pixelcnn import GatedPixelCNN, PixelCNNConfig

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["rows", "cached", "fused"]
# Odd shapes on purpose: not square, channel counts that are no multiple of the kernel's 16, and
# first and later kernels of different widths (mask A over 3 columns, mask B over 2 and 3).
CASES = [
    dict(height=5, width=7, channels=5, layers=3, first_kernel_size=7, kernel_size=3, n_classes=0),
    dict(height=6, width=4, channels=18, layers=4, first_kernel_size=3, kernel_size=5, n_classes=3),
]


def small_pixelcnn(seed: int = 0, **kw) -> GatedPixelCNN:
    torch.manual_seed(seed)
    cfg = dict(quantization_levels=6, skip_channels=7, head_channels=9) | kw
    return GatedPixelCNN(PixelCNNConfig(**cfg)).eval()


def classes_of(model: GatedPixelCNN, batch: int) -> Cond | None:
    n = model.config.n_classes
    return Cond(classes=torch.arange(batch) % n) if n else None


def needs(method: str) -> None:
    if method == "fused" and not available():
        pytest.skip("the PixelCNN kernel cannot be built here (no C compiler or no AVX2/FMA)")


@pytest.mark.parametrize("prime_len", [0, 1, 10])
@pytest.mark.parametrize("cfg", CASES)
@pytest.mark.parametrize("method", METHODS)
def test_step_logits_equal_the_full_forward_at_every_pixel(method, cfg, prime_len):
    needs(method)
    model = small_pixelcnn(**cfg)
    batch, pixels = 3, model.config.pixels
    cond = classes_of(model, batch)
    x = torch.randint(0, 6, (batch, pixels))
    with torch.no_grad():
        full = model(x, cond)  # (B, Q, T)
        stepper = make_stepper(method, model, batch, cond, seed=0)
        got = []
        if prime_len:
            got.append(stepper.prime(x[:, :prime_len]))
        for t in range(prime_len, pixels):
            got.append(stepper.step(x[:, t - 1] if t else None).unsqueeze(2))
    torch.testing.assert_close(torch.cat(got, dim=2), full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cfg", CASES)
@pytest.mark.parametrize("method", METHODS)
def test_infill_keeps_observed_pixels_and_draws_the_others_from_the_full_forwards_logits(method, cfg):
    needs(method)
    model = small_pixelcnn(seed=1, **cfg)
    with torch.no_grad():  # sharp logits: an argmax that moves when anything before the pixel does
        model.head[-1].weight.mul_(100)
    batch, pixels = 3, model.config.pixels
    cond = classes_of(model, batch)
    values = torch.randint(0, 6, (batch, pixels))
    mask = torch.rand(batch, pixels, generator=torch.Generator().manual_seed(2)) < 0.5
    mask[:, model.config.width : 2 * model.config.width] = True  # a whole row observed in every image
    x = generate_all(model, pixels, cond=cond, observed=(mask, values), batch=batch, temperature=0, method=method,
                     chunk_size=5)
    assert torch.equal(x[mask], values[mask])
    with torch.no_grad():
        full = model(x, cond)
    chosen = full.gather(1, x.unsqueeze(1)).squeeze(1)  # (B, T): the logit of the drawn level
    # Greedy: each drawn pixel took the argmax of the full forward given everything before it.
    assert torch.all((chosen >= full.max(dim=1).values - 1e-3)[~mask])


@pytest.mark.parametrize("method", ["cached", "fused"])
def test_a_prime_then_sampled_digit_matches_the_reference_stepper_draw_for_draw(method):
    needs(method)
    model = small_pixelcnn(**CASES[1])
    cond = classes_of(model, 2)
    prime = torch.randint(0, 6, (2, 9))
    runs = [generate_all(model, 15, prime=prime, cond=cond, batch=2, temperature=0, method=m, chunk_size=4)
            for m in ("rows", method)]
    assert torch.equal(runs[0], runs[1])


def test_the_kernels_threads_split_the_batch_without_changing_a_draw():
    needs("fused")
    model = small_pixelcnn(**CASES[1])
    cond = classes_of(model, 5)
    draws = []
    for threads in (1, 2):
        stepper = make_stepper("fused", model, 5, cond, seed=7)
        stepper.threads = threads
        with torch.inference_mode():
            draws.append(stepper.sample(model.config.pixels))
    assert torch.equal(draws[0], draws[1])
    assert len(draws[0].unique(dim=0)) == 5  # every row has its own random stream


def test_two_threads_sampling_one_model_with_the_kernel_match_sequential_runs():
    needs("fused")
    model = small_pixelcnn(**CASES[1])
    cond = classes_of(model, 2)
    sequential = [generate_all(model, 24, cond=cond, batch=2, seed=s, method="fused") for s in (1, 2)]
    results = [None, None]

    def work(i):
        results[i] = generate_all(model, 24, cond=cond, batch=2, seed=i + 1, method="fused", chunk_size=3)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert torch.equal(results[0], sequential[0]) and torch.equal(results[1], sequential[1])


def test_seeded_fused_samples_repeat_and_stay_in_range():
    needs("fused")
    model = small_pixelcnn(**CASES[0])
    a, b, c = (generate_all(model, 35, batch=2, seed=s, method="fused") for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() < 6


def test_the_fastest_usable_stepper_is_the_default():
    model = small_pixelcnn(**CASES[0])
    assert default_method(model) == ("fused" if available() else "cached")
    assert default_method(model.double()) == "cached"  # the kernel runs float32 only


def test_bad_observed_values_and_a_pixel_past_the_image_are_refused():
    needs("fused")
    model = small_pixelcnn(**CASES[0])
    with pytest.raises(ValueError, match="observed values must be levels"):
        generate_all(model, 5, observed=(torch.ones(5, dtype=torch.bool), torch.full((5,), 6)), method="fused")
    for method in METHODS:
        stepper = make_stepper(method, model, 1, None, seed=0)
        with torch.inference_mode():
            stepper.sample(35)
            with pytest.raises(ValueError, match="the image has 35 pixels"):
                stepper.sample(1)


def test_without_a_compiler_the_pixelcnn_falls_back_to_the_pytorch_cached_stepper(tmp_path):
    code = ("from core.generation import default_method, generate_all;"
            "from core.generation.pixelcnn_fused import available;"
            "from tests.test_pixelcnn_generation import CASES, small_pixelcnn; m = small_pixelcnn(**CASES[0]);"
            "print(available(), default_method(m), tuple(generate_all(m, 35, seed=0).shape))")
    env = {**os.environ, "STUDIO_CACHE": str(tmp_path), "CC": "/nonexistent/cc"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "cached", "(1,", "35)"]
    assert not list(tmp_path.glob("pixelcnn-*.so*")), "a failed build left files behind"
