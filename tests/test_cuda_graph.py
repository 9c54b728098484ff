"""The graph-capturable cached step: equal to the cached path eagerly on the CPU, and as a
captured CUDA graph where a GPU exists (skipped elsewhere)."""

import pytest
import torch

from core.generation import default_method, generate_all, make_stepper
from core.generation.cuda_graph import GraphStepper
from tests.test_wavenet import CACHED_CASES, assert_steps_match_cached, conditioning, small_model

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("prime_len", [0, 9])
@pytest.mark.parametrize("cfg", CACHED_CASES)
def test_the_device_side_step_equals_the_cached_path_on_the_cpu(cfg, prime_len):
    assert_steps_match_cached(small_model(**cfg), 2, prime_len, GraphStepper)


def test_running_out_of_local_conditioning_is_a_clear_error():
    model = small_model(local_channels=2, local_hop=4)
    stepper = GraphStepper(model, 1, conditioning(model, 1, 8))
    with torch.no_grad():
        for _ in range(8):
            stepper.step(None)
        with pytest.raises(ValueError, match="local conditioning covers 2 frames"):
            stepper.step(None)


def test_the_graph_method_needs_a_cuda_model():
    with pytest.raises(ValueError, match="needs a model on a CUDA device"):
        make_stepper("graph", small_model(), 1)


@cuda
@pytest.mark.parametrize("cfg", [CACHED_CASES[0], CACHED_CASES[3], CACHED_CASES[7]])
def test_the_captured_graph_replays_the_cached_step_on_cuda(cfg):
    model = small_model(**cfg).cuda()
    assert default_method(model) == "graph"
    assert_steps_match_cached(model, 3, 9, GraphStepper)


@cuda
def test_cuda_generation_through_the_graph_is_seed_reproducible_and_respects_observed_values():
    model = small_model(n_classes=2).cuda()
    cond = conditioning(model, 2, 200)
    cond = type(cond)(classes=cond.classes.cuda())
    mask = torch.zeros(2, 200, dtype=torch.bool, device="cuda")
    mask[:, 50:60] = True
    values = torch.full((2, 200), 3, device="cuda")
    runs = [generate_all(model, 200, batch=2, cond=cond, seed=s, observed=(mask, values), method=m)
            for s, m in ((1, "graph"), (1, "graph"), (1, "cached"))]
    assert torch.equal(runs[0], runs[1]) and torch.all(runs[0][:, 50:60] == 3)
    assert torch.equal(runs[0], runs[2]), "graph and cached draw the same samples for a seed"
