"""VRNN (core/models/vrnn.py): the step protocol on particle-folded batches, gradients, causality of the filtering
proposal, checkpoints, generation, Gaussian frames, and an untrained model's bound against the pianoroll floor.

The shared checks live in tests/test_latent_rnn.py; each test here names the property it runs.
"""

from __future__ import annotations

import pytest

from core.models.vrnn import VRNN, VRNNConfig
from tests.test_latent_rnn import (
    check_checkpoint_round_trip_keeps_the_bound,
    check_continuations,
    check_future_reaches_weights_only_with_smoothing,
    check_gaussian_emission_on_speech_frames,
    check_generation_runs_the_filters_backbone,
    check_gradients_reach_every_parameter,
    check_particle_folded_rows_are_independent_particles,
    check_same_seed_same_bound,
    untrained_elbo_per_step_on_jsb_test,
)

PROPOSALS = ["filtering", "smoothing"]


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_particle_folded_rows_are_independent_particles(proposal: str):
    check_particle_folded_rows_are_independent_particles(VRNN, VRNNConfig, proposal)


def test_same_seed_same_bound():
    check_same_seed_same_bound(VRNN, VRNNConfig)


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_gradients_reach_every_parameter(proposal: str):
    check_gradients_reach_every_parameter(VRNN, VRNNConfig, proposal)


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_future_reaches_weights_only_with_smoothing(proposal: str):
    check_future_reaches_weights_only_with_smoothing(VRNN, VRNNConfig, proposal)


def test_checkpoint_round_trip_keeps_the_bound(tmp_path):
    check_checkpoint_round_trip_keeps_the_bound(VRNN, VRNNConfig, tmp_path)


def test_continuations_have_the_right_shape_repeat_and_leave_the_model_alone():
    check_continuations(VRNN, VRNNConfig)


def test_gaussian_emission_works_on_speech_frames():
    check_gaussian_emission_on_speech_frames(VRNN, VRNNConfig)


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_untrained_vrnn_scores_near_the_independent_bernoulli_floor_on_jsb(proposal: str):
    """At initialisation the emission's logits are logit(train mean) plus a small Glorot-scaled MLP output, so the
    reconstruction term sits within a fraction of a nat of the floor (-11.06); the bound also pays KL(q || p), which
    for the VRNN starts near 1 nat per step (prior and proposal both read h_t, whose entries are small). So the
    bound lies below the floor by 0.3 to 3 nats; above the floor would mean the masking or the emission is wrong
    (an untrained model cannot beat independent keys), far below that the initial scales are off."""
    elbo, floor = untrained_elbo_per_step_on_jsb_test(VRNN, VRNNConfig, proposal)
    assert floor - 3.0 < elbo < floor - 0.3, (elbo, floor)


def test_generation_runs_the_filters_backbone():
    check_generation_runs_the_filters_backbone(VRNN, VRNNConfig)
