"""The fused CPU kernel: same logits as the cached path, same sampling distribution, thread-safe."""

import threading

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from core.fused import FusedStepper
from core.generate import default_method, generate_all, make_stepper
from tests.test_wavenet import CACHED_CASES, conditioning, small_model


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("prime_len", [0, 9])
@pytest.mark.parametrize("cfg", CACHED_CASES)
def test_fused_logits_equal_the_cached_path_at_every_step(cfg, prime_len, batch):
    model = small_model(**cfg)
    length = 2 * model.receptive_field + 5
    x = torch.randint(0, 16, (batch, length))
    cond = conditioning(model, batch, length)
    cached, fused = make_stepper("cached", model, batch, cond), make_stepper("fused", model, batch, cond)
    prev = None
    with torch.no_grad():
        if prime_len:
            torch.testing.assert_close(fused.prime(x[:, :prime_len]), cached.prime(x[:, :prime_len]), atol=1e-4, rtol=0)
            prev = x[:, prime_len - 1]
        for t in range(prime_len, length):
            a, b = cached.step(prev), fused.step(prev)
            assert (a - b).abs().max().item() < 1e-4, f"step {t}"
            prev = x[:, t]


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


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, None), (1.3, 5)])
def test_fused_draws_from_softmax_of_logits_over_temperature_chi_square(temperature, top_k):
    model = small_model(quantization_levels=8)
    with torch.no_grad():
        logits = model(torch.zeros(1, 1, dtype=torch.long))[0, :, 0].double()  # x_0 | start symbol
    scaled = logits / temperature
    if top_k is not None:
        scaled[scaled < scaled.topk(top_k).values[-1]] = -float("inf")
    probs = torch.softmax(scaled, 0).numpy()
    draws = FusedStepper(model, 20000, seed=0).sample(1, temperature, top_k)[:, 0].numpy()
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


def test_auto_picks_fused_for_float32_cpu_wavenets_and_cached_otherwise():
    model = small_model()
    assert default_method(model) == "fused"
    assert default_method(model.double()) == "cached"


def test_the_compiled_kernel_is_cached_on_disk_for_the_next_process(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_DEBUG_CACHE": "1"}
    warm = [sys.executable, "-c", "from core.fused import warm_up; warm_up()"]
    root = Path(__file__).resolve().parents[1]
    first = subprocess.run(warm, cwd=root, env=env, check=True, capture_output=True, text=True).stdout
    second = subprocess.run(warm, cwd=root, env=env, check=True, capture_output=True, text=True).stdout
    assert list(tmp_path.rglob("fused._run-*.nbi")), "numba wrote no on-disk cache for the kernel"
    assert "data saved" in first and "_run" in first
    assert "data loaded" in second and "data saved" not in second, "the second process compiled again"
