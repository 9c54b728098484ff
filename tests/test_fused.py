"""The fused CPU kernel: same logits as the cached path, same sampling distribution, thread-safe."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from core.generation import default_method, generate_all
from core.generation.fused import FusedBf16Stepper, FusedInt8Stepper, FusedStepper, precisions
from tests.test_wavenet import CACHED_CASES, assert_steps_match_cached, conditioning, small_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("prime_len", [0, 9])
@pytest.mark.parametrize("cfg", CACHED_CASES)
def test_fused_logits_equal_the_cached_path_at_every_step(cfg, prime_len, batch):
    assert_steps_match_cached(small_model(**cfg), batch, prime_len, FusedStepper)


@pytest.mark.parametrize("cfg", [CACHED_CASES[1], CACHED_CASES[2], CACHED_CASES[7]])
def test_greedy_fused_equals_cached_with_priming_and_observed_mask(cfg):
    model = small_model(**cfg)
    n, batch = 60, 3
    prime = torch.randint(0, 16, (batch, 7))
    cond = conditioning(model, batch, 7 + n)
    mask = torch.rand(batch, n) < 0.4
    values = torch.randint(0, 16, (batch, n))
    runs = {m: generate_all(model, n, prime=prime, cond=cond, observed=(mask, values), batch=batch, temperature=0,
                            method=m, chunk_size=13) for m in ("cached", "fused")}
    assert torch.equal(runs["cached"], runs["fused"])
    assert torch.equal(runs["fused"][mask], values[mask])


def test_fused_sampling_is_seed_reproducible_and_respects_observed_values():
    model = small_model(n_classes=2)
    cond = conditioning(model, 2, 300)
    mask = torch.zeros(2, 300, dtype=torch.bool)
    mask[:, 100:120] = True
    values = torch.full((2, 300), 3)
    a, b, c = (generate_all(model, 300, batch=2, cond=cond, seed=s, method="fused", observed=(mask, values),
                            chunk_size=77) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.all(a[:, 100:120] == 3)


@pytest.mark.parametrize("stepper", [FusedStepper, *(
    pytest.param(cls, marks=pytest.mark.skipif(cls.precision not in precisions(), reason=f"no {cls.precision} here"))
    for cls in (FusedBf16Stepper, FusedInt8Stepper))])
@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, None), (1.3, 5)])
def test_fused_draws_from_softmax_of_logits_over_temperature_chi_square(temperature, top_k, stepper):
    """At every precision: the expected counts come from the float32 PyTorch logits."""
    model = small_model(quantization_levels=8)
    with torch.no_grad():
        logits = model(torch.zeros(1, 1, dtype=torch.long))[0, :, 0].double()  # x_0 | start symbol
    scaled = logits / temperature
    if top_k is not None:
        scaled[scaled < scaled.topk(top_k).values[-1]] = -float("inf")
    probs = torch.softmax(scaled, 0).numpy()
    draws = stepper(model, 20000, seed=0).sample(1, temperature, top_k)[:, 0].numpy()
    counts = np.bincount(draws, minlength=8)
    assert np.all(counts[probs == 0] == 0), "top-k: no draw outside the k most likely levels"
    keep = probs > 0
    result = chisquare(counts[keep], probs[keep] / probs[keep].sum() * counts.sum())
    assert result.pvalue > 1e-3, f"counts {counts} vs expected {probs * counts.sum()}"


def test_two_threads_with_the_fused_kernel_match_sequential_runs():
    model = small_model(kernel_size=3)
    sequential = [generate_all(model, 500, seed=s, method="fused") for s in (1, 2)]
    results = [None, None]

    def work(i):
        results[i] = generate_all(model, 500, seed=i + 1, method="fused", chunk_size=50)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert torch.equal(results[0], sequential[0]) and torch.equal(results[1], sequential[1])


def test_auto_picks_the_fused_kernel_for_float32_cpu_wavenets_and_cached_otherwise():
    model = small_model()
    assert default_method(model) == ("fused-bf16" if "bf16" in precisions() else "fused")
    assert default_method(model.double()) == "cached"


def _python(code: str, cache: Path, **env: str) -> str:
    """Run `code` in a fresh interpreter with STUDIO_CACHE=cache; its stdout."""
    env = {**os.environ, "STUDIO_CACHE": str(cache), **env}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_compiled_kernel_is_cached_on_disk_for_the_next_process(tmp_path):
    _python("from core.generation.fused import warm_up; warm_up()", tmp_path)
    built = list(tmp_path.glob("fused-*.so"))
    assert len(built) == 1, "the first process built no library"
    stamp = built[0].stat().st_mtime_ns
    # With no compiler at all, a second process still runs the kernel: it loads the cached build.
    out = _python("import torch; from core.generation.fused import available; from core.generation import generate_all;"
                  "from tests.test_wavenet import small_model;"
                  "print(available(), generate_all(small_model(), 5, seed=0, method='fused').shape)",
                  tmp_path, CC="/nonexistent/cc")
    assert out.split()[0] == "True" and "torch.Size([1, 5])" in out
    assert built[0].stat().st_mtime_ns == stamp and list(tmp_path.glob("fused-*.so")) == built


def test_without_a_compiler_generation_falls_back_to_the_pytorch_path(tmp_path):
    out = _python("from core.generation.fused import available;"
                  "from core.generation import default_method, generate_all;"
                  "from tests.test_wavenet import small_model; m = small_model();"
                  "print(available(), default_method(m), generate_all(m, 7, seed=0).shape)",
                  tmp_path, CC="/nonexistent/cc")
    assert out.split()[:2] == ["False", "cached"] and "torch.Size([1, 7])" in out
    assert not list(tmp_path.glob("fused-*.so*")), "a failed build left files behind"


def test_an_unwritable_cache_folder_falls_back_too(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = _python("from core.generation.fused import available; from core.generation import default_method;"
                  "from tests.test_wavenet import small_model; print(available(), default_method(small_model()))",
                  blocker / "cache")
    assert out.split() == ["False", "cached"]


@pytest.mark.parametrize("cfg", [CACHED_CASES[0], CACHED_CASES[2], CACHED_CASES[7]])
def test_batch_one_split_over_two_threads_gives_the_same_logits_and_draws(cfg):
    model = small_model(**cfg)
    cond = conditioning(model, 1, 400)
    one, two = (FusedStepper(model, 1, cond, seed=3, threads=n) for n in (1, 2))
    x = torch.randint(0, 16, (1, 40))
    torch.testing.assert_close(one.prime(x), two.prime(x))
    prev = x[:, -1]
    for _ in range(30):
        a, b = one.step(prev), two.step(prev)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        prev = a.argmax(1)
    assert torch.equal(one.sample(300, 1.0, None), two.sample(300, 1.0, None))


@pytest.mark.parametrize("batch", [1, 2, 3, 5])
def test_odd_channel_counts_are_padded_exactly(batch):
    """Channel counts that are not multiples of the kernel's 16-wide panels, and a last layer
    without a residual output, through 1 to 5 rows (every micro-kernel shape)."""
    model = small_model(residual_channels=5, dilation_channels=7, skip_channels=9, head_channels=3,
                        quantization_levels=11, kernel_size=3)
    assert_steps_match_cached(model, batch, 9, FusedStepper)
