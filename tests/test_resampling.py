"""Resamplers and the ESS criterion: the right histograms, no gradient through indices, the exact trigger."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from core.errors import ConfigError
from core.inference.resampling import (
    blend_particles,
    ess,
    ess_criterion,
    gather_particles,
    multinomial_ancestors,
    relaxed_blend_weights,
    systematic_ancestors,
)
from core.inference.smc import run_smc

PROBS = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)


def test_multinomial_picks_the_only_particle_with_weight_in_each_sequence():
    # The reference's case: states [1, 2, 3, 4] are rows n * B + b of N = 2 particles, B = 2 sequences.
    log_weights = torch.tensor([[1000.0, 0.0], [0.0, 1000.0]])
    ancestors = multinomial_ancestors(log_weights, torch.Generator().manual_seed(0))
    states = torch.tensor([1, 2, 3, 4])
    assert gather_particles(states, ancestors).tolist() == [1, 4, 1, 4]


def test_multinomial_histogram_matches_the_weights():
    b = 20000  # 20000 filters of 4 particles with the same weights: 80000 draws
    log_weights = PROBS.log().unsqueeze(1).expand(4, b)
    ancestors = multinomial_ancestors(log_weights, torch.Generator().manual_seed(1))
    counts = torch.bincount(ancestors.flatten(), minlength=4).numpy()
    assert chisquare(counts, (PROBS * 4 * b).numpy()).pvalue > 1e-3


def test_systematic_copies_each_particle_floor_or_ceil_of_n_times_its_weight():
    n, b = 10, 500
    generator = torch.Generator().manual_seed(2)
    log_weights = torch.randn(n, b, dtype=torch.float64, generator=generator) * 2
    ancestors = systematic_ancestors(log_weights, generator)
    counts = torch.zeros(n, b, dtype=torch.float64).scatter_add_(0, ancestors, torch.ones(n, b, dtype=torch.float64))
    expected = torch.softmax(log_weights, 0) * n
    assert bool((counts >= expected.floor()).all()) and bool((counts <= expected.ceil()).all())
    assert bool((ancestors.diff(dim=0) >= 0).all())  # sorted per filter


def test_systematic_histogram_matches_the_weights():
    b = 20000
    log_weights = PROBS.log().unsqueeze(1).expand(4, b)
    ancestors = systematic_ancestors(log_weights, torch.Generator().manual_seed(3))
    freq = torch.bincount(ancestors.flatten(), minlength=4).double() / (4 * b)
    torch.testing.assert_close(freq, PROBS, atol=0.01, rtol=0)


def test_zero_weight_particles_are_never_chosen():
    log_weights = torch.tensor([[0.0], [-torch.inf], [0.0], [-torch.inf]]).expand(4, 5000)
    for sampler in (multinomial_ancestors, systematic_ancestors):
        chosen = set(sampler(log_weights, torch.Generator().manual_seed(4)).unique().tolist())
        assert chosen == {0, 2}


def test_ancestor_indices_carry_no_gradient_but_relaxed_blends_do():
    log_weights = torch.randn(4, 3, requires_grad=True)
    ancestors = multinomial_ancestors(log_weights)
    assert ancestors.dtype == torch.long and ancestors.grad_fn is None
    assert systematic_ancestors(log_weights).grad_fn is None
    states = torch.randn(12, 2)
    blended = blend_particles(states, relaxed_blend_weights(log_weights, 0.5))
    (grad,) = torch.autograd.grad(blended.square().sum(), log_weights)
    assert grad.abs().sum() > 0


def test_blend_mixes_rows_of_the_same_sequence():
    # The reference's case: w[n, b, l] over states [4, 8, 12, 16] laid out as rows n * B + b.
    weights = torch.tensor([[[0.5, 0.5], [0.25, 0.75]], [[0.75, 0.25], [0.5, 0.5]]])
    blended = blend_particles(torch.tensor([[4.0], [8.0], [12.0], [16.0]]), weights)
    assert blended[:, 0].tolist() == [8.0, 14.0, 6.0, 12.0]


def test_relaxed_weights_lie_on_the_simplex_and_sharpen_as_temperature_falls():
    log_weights = PROBS.log().unsqueeze(1).expand(4, 2000)
    for temperature in (0.5, 0.01):
        w = relaxed_blend_weights(log_weights, temperature, torch.Generator().manual_seed(5))
        assert w.shape == (4, 2000, 4)
        torch.testing.assert_close(w.sum(-1), torch.ones(4, 2000, dtype=torch.float64))
    # At a low temperature the blend is nearly one-hot, chosen with the weights' probabilities.
    assert float(w.amax(-1).mean()) > 0.99
    freq = torch.bincount(w.argmax(-1).flatten(), minlength=4).double() / w[..., 0].numel()
    torch.testing.assert_close(freq, PROBS, atol=0.01, rtol=0)


def test_equal_weights_never_trigger_resampling_at_half():
    for n in (1, 2, 3, 8, 256):
        assert not ess_criterion(0.5)(torch.full((n, 4), -3.7), 0).any()
        torch.testing.assert_close(ess(torch.full((n, 4), -3.7)), torch.full((4,), float(n)))


class RandomIncrements:
    """Step t adds the t-th of a fixed set of random increments (steps, N * B)."""

    def __init__(self, increments: torch.Tensor):
        self.increments = increments

    def encode(self, x, lengths):
        return {}

    def zero_state(self, batch):
        return {"z": torch.zeros(batch, 1, dtype=torch.float64)}

    def propose_and_weight(self, state, context, t):
        return state, self.increments[t]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_resampling_happens_exactly_when_ess_at_most_threshold_times_n(threshold):
    steps, n, b = 12, 6, 40
    increments = torch.randn(steps, n * b, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    x = torch.zeros(b, steps, 1, dtype=torch.float64)
    trace = run_smc(RandomIncrements(increments), x, particles=n, criterion=ess_criterion(threshold), trace=True).trace
    w = trace.log_weights.numpy()  # (T, B, N), before each reset
    w_norm = np.exp(w - w.max(-1, keepdims=True))
    w_norm /= w_norm.sum(-1, keepdims=True)
    expected_ess = 1 / (w_norm**2).sum(-1)
    np.testing.assert_allclose(trace.ess.numpy(), expected_ess, rtol=1e-10)
    resampled = trace.resampled.numpy()
    np.testing.assert_array_equal(resampled, expected_ess <= threshold * n)
    assert 0 < resampled.mean() < 1  # the case exercises both branches
    # The weights restart from the step's increment after a resampling, and accumulate otherwise.
    inc = increments.view(steps, n, b).permute(0, 2, 1).numpy()
    carried = np.where(resampled[:-1, :, None], 0.0, w[:-1])
    np.testing.assert_allclose(w[1:], carried + inc[1:], rtol=1e-12)


def test_threshold_outside_unit_interval_is_a_config_error():
    with pytest.raises(ConfigError, match="threshold"):
        ess_criterion(1.5)
    with pytest.raises(ConfigError, match="temperature"):
        relaxed_blend_weights(torch.zeros(2, 2), 0.0)
