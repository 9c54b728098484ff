"""The Gaussian HMM: exact likelihood three ways, exact proposals, and the particle filter's unbiasedness."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from core.data.ghmm import sample_ghmm
from core.errors import ConfigError
from core.inference.bounds import estimate
from core.models import build_model, config_from_dict, model_class
from core.models.ghmm import PROPOSALS, GaussianHMM, GHMMConfig
from core.models.ghmm_exact import (
    chain_covariance,
    filtering_proposal,
    kalman_filter,
    kalman_smoother,
    mvn_log_likelihood,
    smoothing_proposal,
)

V = 0.1


def observations(n: int, steps: int, seed: int = 0) -> torch.Tensor:
    """(n, steps, 1) float64 draws from the default model."""
    return sample_ghmm(n, steps, V, seed).observations.double()


def ghmm(proposal: str, steps: int = 5) -> GaussianHMM:
    return GaussianHMM(GHMMConfig(num_timesteps=steps, variance=V, proposal=proposal)).double()


def joint_covariance(steps: int, q: float, r: float) -> torch.Tensor:
    """(2T, 2T) covariance of (z_0 .. z_{T-1}, x_0 .. x_{T-1}), written from the definitions."""
    zz = torch.tensor([[q * (min(i, j) + 1) for j in range(steps)] for i in range(steps)], dtype=torch.float64)
    return torch.cat([torch.cat([zz, zz], 1), torch.cat([zz, zz + r * torch.eye(steps, dtype=torch.float64)], 1)], 0)


def condition(cov: torch.Tensor, target: int, given: list[int], values: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Mean (B,) and variance of a zero-mean Gaussian's coordinate `target` given coordinates `given` = (B, k)."""
    gain = torch.linalg.solve(cov[given][:, given], cov[given, target])
    return values @ gain, float(cov[target, target] - cov[target, given] @ gain)


def test_exact_log_likelihood_from_the_covariance_equals_the_kalman_filter():
    x = observations(6, 10)[..., 0]
    torch.testing.assert_close(mvn_log_likelihood(x, V, V), kalman_filter(x, V, V).log_likelihood, atol=1e-5, rtol=0)
    x = x * 3  # unlikely data, other variances
    torch.testing.assert_close(mvn_log_likelihood(x, 0.7, 0.2), kalman_filter(x, 0.7, 0.2).log_likelihood,
                               atol=1e-5, rtol=0)


def test_chain_covariance_matches_the_definition():
    torch.testing.assert_close(chain_covariance(4, 2.0, 3.0), joint_covariance(4, 2.0, 3.0)[4:, 4:])


def test_kalman_with_lengths_equals_kalman_on_the_truncated_sequence():
    x = observations(3, 8)[..., 0]
    lengths = torch.tensor([8, 5, 1])
    filtered = kalman_filter(x, V, V, lengths)
    means, variances = kalman_smoother(x, V, V, lengths)
    for b, length in enumerate(lengths.tolist()):
        alone = kalman_filter(x[b:b + 1, :length], V, V)
        torch.testing.assert_close(filtered.log_likelihood[b:b + 1], alone.log_likelihood)
        m, v = kalman_smoother(x[b:b + 1, :length], V, V)
        torch.testing.assert_close(means[b, :length], m[0])
        torch.testing.assert_close(variances[b, :length], v[0])


def test_kalman_smoother_equals_gaussian_conditioning_on_all_observations():
    steps = 6
    x = observations(4, steps)[..., 0]
    cov = joint_covariance(steps, V, V)
    means, variances = kalman_smoother(x, V, V)
    for t in range(steps):
        mean, var = condition(cov, t, list(range(steps, 2 * steps)), x)
        torch.testing.assert_close(means[:, t], mean)
        assert variances[:, t].allclose(torch.tensor(var, dtype=torch.float64))


def test_filtering_proposal_matches_the_reference_hand_values():
    # FIVO's ghmm_test: transition variances (1, 2, 3), emission variances (4, 5, 6), z_prev (1, 2),
    # x_t (3, 4); at t = 0 the previous state is z_{-1} = 0.
    expected = [((Fraction(3, 5), Fraction(4, 5)), Fraction(4, 5)),
                ((Fraction(11, 7), Fraction(18, 7)), Fraction(10, 7)),
                ((Fraction(5, 3), Fraction(8, 3)), Fraction(2))]
    x_t = torch.tensor([[3.0], [4.0]], dtype=torch.float64)
    for t, (q, r) in enumerate([(1.0, 4.0), (2.0, 5.0), (3.0, 6.0)]):
        z_prev = torch.tensor([0.0, 0.0] if t == 0 else [1.0, 2.0], dtype=torch.float64)
        proposal = filtering_proposal(x_t, q, r)
        (m0, m1), v = expected[t]
        mean = proposal.prev_coef * z_prev + proposal.offset[:, 0]
        torch.testing.assert_close(mean, torch.tensor([float(m0), float(m1)], dtype=torch.float64))
        assert proposal.variance == pytest.approx(float(v), rel=1e-15)


@pytest.mark.parametrize("q,r", [(V, V), (0.5, 2.0)])
def test_smoothing_proposal_equals_gaussian_conditioning_on_the_previous_state_and_future(q, r):
    steps = 5
    x = observations(3, steps)[..., 0]
    z_prev = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    proposal = smoothing_proposal(x, q, r)
    cov = joint_covariance(steps, q, r)
    for t in range(steps):
        future = list(range(steps + t, 2 * steps))
        if t == 0:  # z_{-1} = 0 is a constant: condition on the observations alone
            expected_mean, expected_var = condition(cov, 0, future, x)
            prev = torch.zeros(3, dtype=torch.float64)
        else:
            expected_mean, expected_var = condition(cov, t, [t - 1] + future, torch.cat([z_prev[:, None], x[:, t:]], 1))
            prev = z_prev
        torch.testing.assert_close(proposal.prev_coef[:, t] * prev + proposal.offset[:, t], expected_mean)
        torch.testing.assert_close(proposal.variance[:, t], torch.full((3,), expected_var, dtype=torch.float64))


def test_with_the_smoothing_proposal_and_no_resampling_every_weight_is_exact_log_p():
    x = observations(3, 8)
    lengths = torch.tensor([8, 6, 3])
    model = ghmm("smoothing", 8)
    exact = model.exact_log_likelihood(x, lengths)
    trace = estimate(model, x, lengths, "iwae", 16, trace=True).trace
    final_weights = trace.log_weights[-1]  # (B, N): masked steps keep each sequence's weights at its end
    torch.testing.assert_close(final_weights, exact[:, None].expand(3, 16), atol=1e-10, rtol=0)


@pytest.mark.parametrize("proposal", ["prior", "smoothing"])
def test_fivo_estimate_of_p_is_unbiased(proposal):
    runs = 4000
    x = observations(1, 5, seed=7)
    model = ghmm(proposal)
    exact = model.exact_log_likelihood(x)
    torch.manual_seed(0)
    result = estimate(model, x.expand(runs, 5, 1), None, "fivo", 4, trace=True)
    assert result.trace.resampled.any()  # resampling happened in some runs
    log_mean_ratio = torch.logsumexp(result.log_p_hat - exact, 0) - math.log(runs)
    assert abs(float(log_mean_ratio)) < 0.1


def test_learned_proposals_start_at_the_prior():
    x = observations(4, 5)
    for proposal in ("learned_filtering", "learned_smoothing"):
        torch.manual_seed(1)
        prior = estimate(ghmm("prior"), x, None, "fivo", 8, trace=True).trace.log_weights
        torch.manual_seed(1)
        learned = estimate(ghmm(proposal), x, None, "fivo", 8, trace=True).trace.log_weights
        # Equal up to rounding: the learned log-variance is a float32 parameter holding log v.
        torch.testing.assert_close(learned, prior, atol=1e-5, rtol=0)


def test_learned_families_contain_the_exact_proposals():
    steps, q = 5, V
    x = observations(3, steps)
    filtering = ghmm("learned_filtering")
    smoothing = ghmm("learned_smoothing")
    with torch.no_grad():
        filtering.prev_weight.fill_(0.5)  # r / (q + r) with q = r
        filtering.obs_weight.fill_(0.5)
        filtering.log_variance.fill_(math.log(q / 2))
        # The exact smoothing mean's coefficient on x_s at step t: its offset for the unit sequence e_s.
        true = smoothing_proposal(torch.eye(steps, dtype=torch.float64), q, q)
        smoothing.prev_weight.copy_(true.prev_coef[0])
        smoothing.obs_weight.copy_(true.offset.T)
        smoothing.log_variance.copy_(true.variance[0].log())
    for learned, exact in ((filtering, "filtering"), (smoothing, "smoothing")):
        torch.manual_seed(2)
        want = estimate(ghmm(exact), x, None, "iwae", 4, trace=True).trace.log_weights
        torch.manual_seed(2)
        got = estimate(learned, x, None, "iwae", 4, trace=True).trace.log_weights
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_trace_latents_are_the_particles_z():
    x = observations(2, 5)
    trace = estimate(ghmm("filtering"), x, None, "fivo", 3, trace=True).trace
    assert trace.latents.shape == (5, 2, 3, 1)
    means, variances = ghmm("prior").posterior(x)
    assert means.shape == variances.shape == (2, 5)


def test_learned_proposal_rejects_sequences_longer_than_its_chain():
    with pytest.raises(ConfigError, match="num_timesteps"):
        estimate(ghmm("learned_smoothing", 5), observations(1, 6), None, "elbo", 1)


def test_config_validates_and_the_family_is_registered():
    for bad in ({"num_timesteps": 0}, {"variance": -1.0}, {"variance": math.inf}, {"proposal": "oracle"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            GHMMConfig(**bad)
    assert model_class("ghmm") is GaussianHMM
    config = config_from_dict({"model_type": "ghmm", "proposal": "learned_smoothing", "num_timesteps": 10})
    model = build_model(config)
    assert isinstance(model, GaussianHMM) and model.obs_weight.shape == (10, 10)
    assert {p for p in PROPOSALS if p.startswith("learned")} == {"learned_filtering", "learned_smoothing"}
    assert list(ghmm("smoothing").parameters()) == []


def test_sampled_data_is_seeded_and_has_the_chain_variances():
    a = sample_ghmm(20000, 5, V, seed=3)
    b = sample_ghmm(20000, 5, V, seed=3)
    assert torch.equal(a.observations, b.observations) and a.observations.shape == (20000, 5, 1)
    assert a.observations.dtype == torch.float32
    assert not torch.equal(a.observations, sample_ghmm(20000, 5, V, seed=4).observations)
    steps = torch.arange(1, 6, dtype=torch.float32)
    torch.testing.assert_close(a.latents[..., 0].var(0), V * steps, rtol=0.05, atol=0)
    torch.testing.assert_close(a.observations[..., 0].var(0), V * (steps + 1), rtol=0.05, atol=0)
    with pytest.raises(ConfigError, match="steps"):
        sample_ghmm(4, 0)
