"""core.gradient_reach: the measured gradient of one step's loss is non-zero exactly where the schedule reaches."""

from __future__ import annotations

import pytest
import torch

from core.gradient_reach import lag_gradients
from core.models.wayback import Wayback, WaybackConfig

CASES = [
    dict(layout="stack", boundaries=[5, 5], layer_sizes=[6, 5]),
    dict(layout="stack", boundaries=[3, 3], layer_sizes=[6, 5], chunk_size=2, vskip=True),
    dict(layout="wayback", periods=[1, 2, 2], boundaries=[4, 4, 4], layer_sizes=[6, 5, 4]),
    dict(layout="wayback", periods=[2, 2], boundaries=[2, 2], layer_sizes=[6, 5], carry=False),
]


def tiny(**kw) -> Wayback:
    torch.manual_seed(0)
    return Wayback(WaybackConfig(sampling_frequency=8000, bit_depth=4, cell="gru", io_sizes=[7], **kw)).eval()


@pytest.mark.parametrize("case", CASES)
def test_layer_gradients_are_nonzero_exactly_on_schedule_reach_and_input_on_the_bottom_layers(case: dict) -> None:
    model = tiny(**case)
    s = model.schedule
    steps = 2 * s.segment_steps
    lag = lag_gradients(model, steps)
    reach = s.reach(steps - 1)
    assert [sorted(k for k, g in layer.items() if g > 0) for layer in lag.layers] == reach
    assert [sorted(layer) for layer in lag.layers] == [[k for k in range(steps) if i in s.updates(k)]
                                                       for i in range(s.depth)]
    # Only the bottom layer reads the input, so e_k gets gradient exactly when its update at k does.
    assert (lag.input > 0).nonzero().flatten().tolist() == reach[0]
    assert lag.samples_back.tolist() == [(steps - k) * model.config.chunk_size for k in range(steps)]


def test_measuring_leaves_the_model_unchanged_and_repeats_exactly() -> None:
    model = tiny(**CASES[2], use_bn=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first, second = lag_gradients(model, 8, seed=3), lag_gradients(model, 8, seed=3)
    assert torch.equal(first.input, second.input) and first.layers == second.layers
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="steps must be"):
        lag_gradients(tiny(**CASES[0]), 0)
    with pytest.raises(ValueError, match="sequences must be"):
        lag_gradients(tiny(**CASES[0]), 4, sequences=0)
