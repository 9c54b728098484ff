"""The Sequences page's pure helpers, without a server: the per-frame bound, the independent-keys baseline,
the lineage tree, the pianoroll key range, what the Music tab offers with no trained model, and input checks."""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

from core.data.pianorolls import independent_bernoulli_ll
from core.errors import ConfigError
from core.inference.bounds import estimate
from core.model_store import ModelStore
from core.models.ghmm import GaussianHMM, GHMMConfig
from pages.sequences_bounds import bounds_vs_particles
from pages.sequences_filter import run_filter
from pages.sequences_models import UNTRAINED, ghmm_model, held_out_rolls, music_models, music_summary, trained_on
from pages.sequences_music import bound_per_step, independent_keys, music_take
from pages.sequences_particles import filter_particles
from pages.sequences_particles_svg import Scale, ancestry, particles_html, surviving_pairs
from pages.sequences_pianoroll import key_range, note_name


def test_bound_per_step_splits_a_hand_computed_filter_into_its_steps() -> None:
    """Two particles; increments [0, ln 3], [ln 2, ln 2], then a resampling, then [0, ln 3]:
    p-hat = mean(1·2, 3·2) · mean(1, 3) = 4 · 2 = 8, and log p-hat grows by ln 2 at every step."""
    log_weights = torch.log(torch.tensor([[1.0, 3.0], [2.0, 6.0], [1.0, 3.0]]))  # accumulated since the last reset
    resampled = torch.tensor([False, True, False])
    shares = bound_per_step(log_weights, resampled)
    assert torch.allclose(shares, torch.full((3,), math.log(2)))
    assert float(shares.sum()) == pytest.approx(math.log(8))


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_bound_per_step_sums_to_the_filters_log_p_hat(threshold: float) -> None:
    model = GaussianHMM(GHMMConfig(num_timesteps=12)).double()
    x = torch.randn(3, 12, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    result = estimate(model, x, None, "fivo", 8, threshold=threshold, trace=True)
    for b in range(3):
        shares = bound_per_step(result.trace.log_weights[:, b], result.trace.resampled[:, b])
        assert float(shares.sum()) == pytest.approx(float(result.log_p_hat[b]), abs=1e-9)


def test_independent_keys_baseline_averages_to_the_data_modules_floor() -> None:
    rolls, mean = held_out_rolls("jsb")
    per_frame = np.concatenate([independent_keys(r, mean) for r in rolls[:5]])
    assert per_frame.mean() == pytest.approx(independent_bernoulli_ll(rolls[:5], mean), abs=1e-9)


def test_surviving_pairs_follow_the_ancestors_back_and_merge() -> None:
    """Three particles over three steps; after step 0 all descend from particle 2, after step 1 from 0 and 1."""
    lineage = np.array([[2, 2, 2], [0, 0, 1], [0, 1, 2]])  # lineages(): index at step t of final particle n's ancestor
    assert sorted(surviving_pairs(lineage)) == [(0, 2, 0), (0, 2, 1), (1, 0, 0), (1, 0, 1), (1, 1, 2)]


def test_ancestry_follows_the_resampling_indices_back_to_step_0() -> None:
    """Step 1's particles descend from [0, 0, 1] at step 0, step 2's from [2, 2, 0] at step 1: particle 0 at
    step 2 <- 2 at step 1 <- 1 at step 0; particle 2 at step 2 <- 0 <- 0."""
    parents = np.array([[0, 0, 1], [2, 2, 0]])
    assert ancestry(parents, 2, 0) == [1, 2, 0]
    assert ancestry(parents, 2, 2) == [0, 0, 2]
    assert ancestry(parents, 1, 2) == [1, 2]
    assert ancestry(parents, 0, 1) == [1]


def test_ancestry_of_the_last_particles_is_cores_lineages_and_the_drawing_holds_the_run(tmp_path) -> None:
    run = run_filter(ModelStore([tmp_path], device="cpu"), "prior", 24, 0.8, 2, 15, 5)
    assert run.resampled.sum() >= 3 and run.parents.shape == (14, 24)
    for n in range(24):  # core.inference.smc.lineages, traced here from the per-step resampling indices
        assert ancestry(run.parents, 14, n) == run.lineages[:, n].tolist()
    drawn = particles_html(run)
    assert drawn.count('<circle class="p"') == 24 * 15
    assert drawn.count('<line class="resample"') == run.resampled.sum()
    assert drawn.count('<line class="surv"') == len(surviving_pairs(run.lineages))
    scale = Scale.of(run)
    mean = re.search(r'<polyline class="mean" points="([^"]*)"', drawn).group(1)
    ys = np.array([float(p.split(",")[1]) for p in mean.split()])
    assert np.allclose(scale.z(ys), run.mean, atol=1e-2 * (scale.hi - scale.lo))  # drawn at 0.01 px
    data = json.loads(html.unescape(re.search(r' data-run="([^"]*)"', drawn).group(1)))
    assert data["parents"] == run.parents.tolist() and np.allclose(data["z"], run.particles, atol=1e-4)
    assert data["stepText"][int(np.flatnonzero(run.resampled)[0])].endswith("the filter resampled after it.")


def test_key_range_covers_the_sounding_keys_with_a_margin_and_names_them() -> None:
    roll = np.zeros((4, 88), dtype=np.float32)
    roll[1, [30, 50]] = 1
    assert key_range([roll, np.zeros_like(roll)]) == (28, 52)
    assert key_range([np.zeros_like(roll)]) == (0, 87)
    assert (note_name(60), note_name(21), note_name(108)) == ("C4", "A0", "C8")


def test_with_no_trained_model_the_music_tab_says_so_and_offers_only_the_untrained_one(tmp_path) -> None:
    entries = music_models(ModelStore([tmp_path], device="cpu"))
    assert [m["path"] for m in entries] == [UNTRAINED]
    text = music_summary(entries[0], trained=0)
    assert "No trained sequence model found" in text and "not trained" in text
    take = music_take(ModelStore([tmp_path], device="cpu"), UNTRAINED, "nottingham", 1, 4, 6, 2, 3)
    assert take.model.startswith("untrained") and take.samples.shape == (2, 6, 88)
    assert set(np.unique(take.samples)) <= {0.0, 1.0}


def test_trained_on_recognises_a_data_sets_training_mean() -> None:
    assert trained_on({"train_mean": held_out_rolls("musedata")[1].tolist()}) == "musedata"
    assert trained_on({"train_mean": [0.5] * 88}) is None and trained_on({}) is None


def test_a_learned_proposal_is_refused_past_its_steps_and_the_exact_ones_take_any(tmp_path) -> None:
    from core.checkpoints import save_checkpoint

    save_checkpoint(GaussianHMM(GHMMConfig(num_timesteps=6, proposal="learned_smoothing")), tmp_path / "g")
    store = ModelStore([tmp_path], device="cpu")
    assert ghmm_model(store, str(tmp_path / "g"), 6).config.proposal == "learned_smoothing"
    with pytest.raises(ConfigError, match="at most 6 steps"):
        ghmm_model(store, str(tmp_path / "g"), 7)
    assert ghmm_model(store, "smoothing", 50).config.num_timesteps == 50


def test_handlers_turn_bad_input_into_a_message(tmp_path) -> None:
    store = ModelStore([tmp_path], device="cpu")
    with pytest.raises(gr.Error, match="particles must be a whole number in \\[1, 256\\]"):
        filter_particles(store, "prior", 0, 0.5, 0, 10, 0)
    with pytest.raises(gr.Error, match="steps must be a whole number in \\[5, 50\\]"):
        filter_particles(store, "prior", 4, 0.5, 0, 51, 0)
    with pytest.raises(gr.Error, match="threshold must be in"):
        bounds_vs_particles(store, "prior", 0, 10, 4, 1.5)
    with pytest.raises(gr.Error, match="choose a proposal"):
        bounds_vs_particles(store, None, 0, 10, 4, 0.5)
    with pytest.raises(ConfigError, match="prefix length must be a whole number in \\[0, "):
        music_take(store, UNTRAINED, "jsb", 0, 500, 8, 1, 0)


def test_counting_the_untrained_models_parameters_leaves_the_random_numbers_and_skips_torch_dynamo():
    """The Music tab lists an untrained VRNN with its parameter count when there is no checkpoint; counting them
    must not import torch._dynamo (as building on the meta device does: a second of the app's start-up) nor move
    the process's random numbers."""
    script = ("import sys, torch\nfrom pages import sequences_models as m\ntorch.manual_seed(5)\n"
              "n = m._untrained_parameters()\nafter = torch.rand(1).item()\ntorch.manual_seed(5)\n"
              "print(n, after == torch.rand(1).item(), 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout.split()
    assert int(out[0]) > 0 and out[1:] == ["True", "False"]
