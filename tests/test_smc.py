"""The SMC engine on hand-computed cases (FIVO's reference smc_test, ported: no randomness involved).

A model whose every step gives the four rows of the folded batch the log-weight increments
[5, 4, 1, 0.5]. Rows are particle-major (row n * B + b), so with N = 2 particles and B = 2
sequences, sequence 0's particles get (5, 1) and sequence 1's get (4, 0.5) at every step. The
weights never depend on the state, so the numbers are exact whatever the resampler draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp as lse

from core.errors import ConfigError
from core.inference.resampling import always_resample
from core.inference.smc import lineages, run_smc

LOG2 = math.log(2)


class FixedIncrements:
    """Every step adds `increments` (N * B,) to the log-weights; the state holds each row's original index."""

    latent_key = "z"

    def __init__(self, increments: list[float]):
        self.increments = torch.tensor(increments, dtype=torch.float64)

    def encode(self, x, lengths):
        return {}

    def zero_state(self, batch):
        return {"z": torch.arange(batch, dtype=torch.float64).unsqueeze(1)}

    def propose_and_weight(self, state, context, t):
        return dict(state), self.increments.clone()


def resample_at_step(step: int):
    def criterion(log_weights, t):
        return torch.full((log_weights.shape[1],), t == step)

    return criterion


def run(lengths: list[int], criterion, increments=(5.0, 4.0, 1.0, 0.5)):
    x = torch.zeros(2, max(lengths), 1, dtype=torch.float64)
    result = run_smc(FixedIncrements(list(increments)), x, torch.tensor(lengths), particles=2, criterion=criterion,
                     trace=True)
    return result.log_p_hat.numpy(), result.trace.log_weights.numpy(), result.trace.resampled.numpy()


def test_never_resampling_accumulates_all_steps_and_adds_log_mean_at_the_end():
    log_p_hat, weights, resampled = run([5, 3], None)
    expected_weights = [[[5, 1], [4, .5]], [[10, 2], [8, 1]], [[15, 3], [12, 1.5]], [[20, 4], [12, 1.5]],
                        [[25, 5], [12, 1.5]]]
    np.testing.assert_allclose(weights, expected_weights)
    np.testing.assert_allclose(log_p_hat, [lse([25, 5]) - LOG2, lse([12, 1.5]) - LOG2])
    assert not resampled.any()


def test_always_resampling_resets_weights_each_step_but_never_past_a_sequence_end():
    log_p_hat, weights, resampled = run([5, 3], always_resample)
    expected_weights = [[[5, 1], [4, .5]]] * 3 + [[[5, 1], [0, 0]]] * 2
    np.testing.assert_allclose(weights, expected_weights)
    np.testing.assert_allclose(log_p_hat, [5 * lse([5, 1]) - 5 * LOG2, 3 * lse([4, .5]) - 3 * LOG2])
    np.testing.assert_array_equal(resampled, [[1, 1], [1, 1], [1, 1], [1, 0], [1, 0]])


def test_weights_reset_when_resampling_at_a_sequence_end():
    log_p_hat, weights, resampled = run([5, 3], resample_at_step(2))
    expected_weights = [[[5, 1], [4, .5]], [[10, 2], [8, 1]], [[15, 3], [12, 1.5]], [[5, 1], [0, 0]],
                        [[10, 2], [0, 0]]]
    np.testing.assert_allclose(weights, expected_weights)
    np.testing.assert_allclose(log_p_hat, [lse([15, 3]) + lse([10, 2]) - 2 * LOG2, lse([12, 1.5]) - LOG2])
    np.testing.assert_array_equal(resampled, [[0, 0], [0, 0], [1, 1], [0, 0], [0, 0]])


def test_weights_not_updated_past_a_sequence_end():
    log_p_hat, weights, resampled = run([6, 4], resample_at_step(1))
    expected_weights = [[[5, 1], [4, .5]], [[10, 2], [8, 1]], [[5, 1], [4, .5]], [[10, 2], [8, 1]],
                        [[15, 3], [8, 1]], [[20, 4], [8, 1]]]
    np.testing.assert_allclose(weights, expected_weights)
    np.testing.assert_allclose(log_p_hat, [lse([10, 2]) + lse([20, 4]) - 2 * LOG2, 2 * lse([8, 1]) - 2 * LOG2])
    np.testing.assert_array_equal(resampled, [[0, 0], [1, 1], [0, 0], [0, 0], [0, 0], [0, 0]])


def test_resampling_on_the_last_step_of_the_longest_sequence():
    log_p_hat, weights, resampled = run([4, 2], resample_at_step(3))
    expected_weights = [[[5, 1], [4, .5]], [[10, 2], [8, 1]], [[15, 3], [8, 1]], [[20, 4], [8, 1]]]
    np.testing.assert_allclose(weights, expected_weights)
    np.testing.assert_allclose(log_p_hat, [lse([20, 4]) - LOG2, lse([8, 1]) - LOG2])
    np.testing.assert_array_equal(resampled, [[0, 0], [0, 0], [0, 0], [1, 0]])


def test_resampling_copies_whole_states_by_ancestor_within_each_sequence():
    # Sequence 0 puts all weight on particle 0 (row 0), sequence 1 on particle 1 (row 3): the
    # reference's multinomial case, through the engine: rows become [0, 3, 0, 3].
    model = FixedIncrements([1000.0, 0.0, 0.0, 1000.0])
    x = torch.zeros(2, 2, 1, dtype=torch.float64)
    trace = run_smc(model, x, particles=2, criterion=always_resample, trace=True).trace
    np.testing.assert_array_equal(trace.ancestors.numpy(), [[[0, 0], [1, 1]]] * 2)
    # The latents are recorded before resampling: step 0 sees the original rows, step 1 the copies.
    np.testing.assert_array_equal(trace.latents[0, ..., 0].numpy(), [[0, 2], [1, 3]])
    np.testing.assert_array_equal(trace.latents[1, ..., 0].numpy(), [[0, 0], [3, 3]])


def test_relaxed_resampling_blends_states_within_each_sequence():
    model = FixedIncrements([1000.0, 0.0, 0.0, 1000.0])
    x = torch.zeros(2, 2, 1, dtype=torch.float64)
    trace = run_smc(model, x, particles=2, criterion=always_resample, relaxed=True, trace=True).trace
    # Weights this lopsided make the Gumbel-softmax blend a one-hot, so the relaxed step copies too.
    np.testing.assert_allclose(trace.latents[1, ..., 0].numpy(), [[0, 0], [3, 3]])
    np.testing.assert_array_equal(trace.ancestors[0].numpy(), [[0, 0], [1, 1]])


def test_trace_ancestors_are_identity_where_no_resampling_happened():
    trace = run_smc(FixedIncrements([5.0, 4.0, 1.0, 0.5]), torch.zeros(2, 5, 1), torch.tensor([5, 3]), particles=2,
                    criterion=resample_at_step(2), trace=True).trace
    for t in (0, 1, 3, 4):
        np.testing.assert_array_equal(trace.ancestors[t].numpy(), [[0, 1], [0, 1]])
    assert trace.ess.shape == (5, 2) and trace.latents.shape == (5, 2, 2, 1)


def test_trace_is_none_unless_asked_and_latents_none_without_a_latent_key():
    model = FixedIncrements([5.0, 4.0, 1.0, 0.5])
    assert run_smc(model, torch.zeros(2, 3, 1), particles=2).trace is None
    model.latent_key = None
    assert run_smc(model, torch.zeros(2, 3, 1), particles=2, trace=True).trace.latents is None


def test_bad_settings_raise_config_errors_and_bad_lengths_value_errors():
    model = FixedIncrements([5.0, 4.0, 1.0, 0.5])
    x = torch.zeros(2, 3, 1)
    with pytest.raises(ConfigError, match="particles"):
        run_smc(model, x, particles=0)
    with pytest.raises(ConfigError, match="resampling"):
        run_smc(model, x, particles=2, resampling="stratified")
    with pytest.raises(ValueError, match="lengths"):
        run_smc(model, x, torch.tensor([3, 4]), particles=2)


def test_lineages_trace_each_final_particle_back_through_its_ancestors():
    # Step 0: particles (0, 1, 2) resample to parents (0, 0, 2); step 1: to parents (1, 2, 2); step 2 is last.
    ancestors = torch.tensor([[[0, 0, 2]], [[1, 2, 2]], [[0, 1, 2]]])
    paths = lineages(ancestors)
    assert paths[:, 0].tolist() == [[0, 2, 2], [1, 2, 2], [0, 1, 2]]
