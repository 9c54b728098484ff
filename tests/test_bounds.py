"""ELBO, IWAE and FIVO as settings of one engine: exact equalities under shared random numbers, the loss, training."""

from __future__ import annotations

import pytest
import torch

from core.data.ghmm import sample_ghmm
from core.errors import ConfigError
from core.inference.bounds import BOUNDS, bound_loss, estimate, evaluate_bounds
from core.models.ghmm import GaussianHMM, GHMMConfig


def data(n: int = 6, steps: int = 5, seed: int = 0) -> torch.Tensor:
    return sample_ghmm(n, steps, 0.1, seed).observations


def model(proposal: str = "learned_filtering") -> GaussianHMM:
    torch.manual_seed(0)
    m = GaussianHMM(GHMMConfig(proposal=proposal))
    with torch.no_grad():  # move the proposal off the prior, so weights differ between particles
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def seeded(seed: int, bound: str, particles: int, **kwargs) -> torch.Tensor:
    torch.manual_seed(seed)
    return estimate(model(), data(), torch.tensor([5, 5, 4, 3, 5, 1]), bound, particles, **kwargs).log_p_hat


def test_fivo_with_one_particle_equals_the_elbo_exactly():
    for resampling in ("multinomial", "systematic"):
        assert torch.equal(seeded(1, "fivo", 1, resampling=resampling), seeded(1, "elbo", 1))
    # Threshold 1 resamples the single particle at every step (ESS = 1 = N): a copy of itself, so the same
    # value, summed step by step instead of accumulated (equal up to rounding).
    torch.testing.assert_close(seeded(1, "fivo", 1, threshold=1.0), seeded(1, "elbo", 1))


def test_fivo_with_resampling_off_equals_iwae_exactly():
    iwae = seeded(2, "iwae", 8)
    assert torch.equal(seeded(2, "fivo", 8, threshold=0.0), iwae)
    assert torch.equal(seeded(2, "fivo", 8, threshold=0.0, relaxed=True), iwae)
    # And resampling on changes the estimate: the comparison above is not vacuous.
    assert not torch.equal(seeded(2, "fivo", 8, threshold=1.0), iwae)


def test_iwae_with_one_particle_equals_the_elbo_and_elbo_ignores_particles():
    assert torch.equal(seeded(3, "iwae", 1), seeded(3, "elbo", 1))
    assert torch.equal(seeded(3, "elbo", 16), seeded(3, "elbo", 1))


def test_bound_loss_is_minus_the_summed_bound_per_valid_timestep():
    m, x, lengths = model(), data(), torch.tensor([5, 5, 4, 3, 5, 1])
    torch.manual_seed(4)
    loss, log_p_hat, timesteps = bound_loss(m, x, lengths, "fivo", 4)
    assert timesteps == 23 and log_p_hat.shape == (6,)
    torch.testing.assert_close(loss, -log_p_hat.sum() / 23)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    torch.manual_seed(4)
    _, _, all_steps = bound_loss(m, x, None, "iwae", 4)
    assert all_steps == 30


def test_relaxed_fivo_trains_through_the_blend():
    m = model()
    torch.manual_seed(5)
    loss, _, _ = bound_loss(m, data(), None, "fivo", 4, threshold=1.0, relaxed=True)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_evaluate_bounds_gives_all_three_without_gradients():
    torch.manual_seed(6)
    bounds = evaluate_bounds(model(), data(), None, 4)
    assert set(bounds) == set(BOUNDS)
    assert all(v.shape == (6,) and not v.requires_grad for v in bounds.values())


def test_fivo_training_moves_a_learned_proposal_closer_to_exact_log_p_than_the_prior():
    x = data(32, 5, seed=8)

    def gap(m: GaussianHMM) -> float:
        """Mean over sequences of exact log p(x) minus the FIVO bound averaged over 100 runs."""
        torch.manual_seed(7)
        with torch.no_grad():
            bound = estimate(m, x.repeat(100, 1, 1), None, "fivo", 4).log_p_hat.view(100, 32).mean(0)
            return float((m.exact_log_likelihood(x) - bound).mean())

    torch.manual_seed(0)
    learned = GaussianHMM(GHMMConfig(proposal="learned_smoothing"))
    prior_gap = gap(GaussianHMM(GHMMConfig(proposal="prior")))
    optimizer = torch.optim.Adam(learned.parameters(), lr=0.01)
    for _ in range(300):
        loss, _, _ = bound_loss(learned, x, None, "fivo", 4)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    learned_gap = gap(learned)
    assert 0 < learned_gap < 0.5 * prior_gap


def test_unknown_bound_and_bad_settings_are_config_errors():
    m, x = model(), data()
    with pytest.raises(ConfigError, match="bound"):
        bound_loss(m, x, None, "vimco", 4)
    with pytest.raises(ConfigError, match="particles"):
        bound_loss(m, x, None, "iwae", 0)
    with pytest.raises(ConfigError, match="threshold"):
        bound_loss(m, x, None, "fivo", 4, threshold=-0.1)
    with pytest.raises(ConfigError, match="resampling"):
        bound_loss(m, x, None, "fivo", 4, resampling="residual")
