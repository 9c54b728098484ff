"""core.cone: the dependency graph's cone is exactly what the gradients say, and the counts add up."""

from __future__ import annotations

import random

import pytest
import torch

from core.cone import (
    START,
    TapCounts,
    cone,
    contributions,
    conv_parameters,
    dependency_graph,
    dilations_for,
    input_positions,
    model_parameters,
    path_counts,
    queue_memory,
    queue_sizes,
    tap_counts,
)
from core.errors import ConfigError
from core.generation.cached import CachedStepper
from core.models.wavenet import WaveNet, WaveNetConfig
from core.receptive_field import input_gradient

SMALL = dict(quantization_levels=5, residual_channels=4, dilation_channels=4, skip_channels=8, head_channels=8)
SEEDS = 3  # random inputs per check: the head's ReLUs can zero one input's gradient, not all of them


def random_configs(n: int, seed: int) -> list[WaveNetConfig]:
    """Random repeated, unordered dilations; every 6 configs cover each kernel 2, 3 with each input kernel 1, 2, 3."""
    rng = random.Random(seed)
    return [
        WaveNetConfig(dilations=[rng.choice([1, 1, 2, 3, 4, 6]) for _ in range(rng.randint(1, 5))],
                      kernel_size=2 + i % 2, input_kernel_size=1 + i % 3, **SMALL)
        for i in range(n)
    ]


@pytest.mark.parametrize("config", random_configs(8, seed=0), ids=lambda c: f"K{c.kernel_size}-Kin"
                         f"{c.input_kernel_size}-d{'.'.join(map(str, c.dilations))}")
def test_cone_inputs_are_exactly_the_inputs_with_nonzero_gradient(config: WaveNetConfig) -> None:
    torch.manual_seed(0)
    model = WaveNet(config)
    r = config.receptive_field
    length = r + 6
    for t in sorted({0, 1, r // 2, r - 1, r, r + 3}):
        grad = sum(input_gradient(model, t, length=length, seed=seed) for seed in range(SEEDS))
        nonzero = set((grad > 0).nonzero().flatten().tolist())
        assert input_positions(config, t) == nonzero, f"t={t}"


@pytest.mark.parametrize("config", random_configs(10, seed=1))
def test_cone_spans_the_closed_form_receptive_field(config: WaveNetConfig) -> None:
    r = config.receptive_field
    t = r + 5
    inputs = input_positions(config, t)  # may have holes: dilations that do not tile skip inputs
    assert (min(inputs), max(inputs)) == (t - r, t - 1)
    assert START in cone(config, r - 1)[0] and START not in cone(config, r)[0]  # x_{t-R} is START at t = R-1
    assert sum(c.samples for c in contributions(config)) == r


@pytest.mark.parametrize("kernel, base", [(2, 2), (3, 3)])
def test_cone_of_a_tiling_stack_has_no_holes(kernel: int, base: int) -> None:
    config = WaveNetConfig(dilations=[base**i for i in range(4)] * 2, kernel_size=kernel, input_kernel_size=2, **SMALL)
    r = config.receptive_field
    assert input_positions(config, r + 3) == set(range(3, r + 3))


def test_cone_reaches_padding_only_before_r_minus_one() -> None:
    config = WaveNetConfig(dilations=[1, 2, 4], input_kernel_size=2, **SMALL)
    r = config.receptive_field
    for t in range(r + 2):
        reached = cone(config, t, padding=True)
        pads = [{p for p in s if p < (START if level == 0 else 0)} for level, s in enumerate(reached)]
        assert any(pads) == (t < r - 1), t


def test_dependency_graph_edges_follow_the_dilations() -> None:
    config = WaveNetConfig(dilations=[1, 3], kernel_size=3, input_kernel_size=2, **SMALL)
    edges = dependency_graph(config, length=8)
    assert len(edges) == 3  # input layer, layer 1, layer 2
    assert (6, 7) in edges[0] and (5, 7) in edges[0] and (START, 0) in edges[0] and (START, 1) in edges[0]
    assert {s for s, t in edges[2] if t == 7} == {7, 4, 1}
    assert all(s >= 0 for s, _ in edges[1])  # padding left out


def test_path_counts_of_one_exponential_stack_are_one_per_input() -> None:
    config = WaveNetConfig(dilations=[1, 2, 4, 8], **SMALL)  # K=2: a binary tree, each input reached once
    counts = path_counts(config, 40)
    assert counts == {j: 1 for j in range(40 - 16, 40)}
    two_stacks = path_counts(WaveNetConfig(dilations=[1, 2, 1, 2], **SMALL), 40)
    assert sorted(two_stacks.items()) == [(33, 1), (34, 2), (35, 3), (36, 4), (37, 3), (38, 2), (39, 1)]


def test_talks_example_18_dilated_taps_vs_512_plain() -> None:
    config = WaveNetConfig(dilations=dilations_for("exponential", 9, 1), kernel_size=2, input_kernel_size=1)
    assert config.receptive_field == 512
    assert tap_counts(config) == TapCounts(dilated=18, input=1, plain=512)
    params = conv_parameters(config)  # C_res = 64 -> 2 C_dil = 128
    assert (params.dilated, params.plain) == (9 * (2 * 64 * 128 + 128), 512 * 64 * 128 + 128)


@pytest.mark.parametrize("kwargs", [dict(), dict(n_classes=3, kernel_size=3, input_kernel_size=2),
                                    dict(local_channels=5, dilations=[1, 1, 3])])
def test_model_parameters_match_the_built_model(kwargs: dict) -> None:
    config = WaveNetConfig(**{**SMALL, "dilations": [1, 2, 4], "skip_channels": 6, "head_channels": 7, **kwargs})
    with torch.device("meta"):
        model = WaveNet(config)
    assert model_parameters(config) == sum(p.numel() for p in model.parameters())


def test_queue_sizes_are_the_cached_steppers_buffers() -> None:
    config = WaveNetConfig(dilations=[1, 2, 4, 1], kernel_size=3, input_kernel_size=2, **SMALL)
    stepper = CachedStepper(WaveNet(config), batch=3)
    assert queue_sizes(config) == [2, 4, 8, 2]
    assert [tuple(b.shape) for b in stepper.bufs] == [(s, 3, 4) for s in queue_sizes(config)]  # (S_l, B, C_res)
    state = sum(b.numel() * b.element_size() for b in stepper.bufs)
    state += stepper.tokens.numel() * stepper.tokens.element_size()
    assert queue_memory(config, batch=3) == state


@pytest.mark.parametrize("pattern, expected", [("exponential", [1, 2, 4, 1, 2, 4]), ("linear", [1, 2, 3, 1, 2, 3]),
                                               ("constant", [1] * 6)])
def test_dilation_patterns_repeat_per_stack(pattern: str, expected: list[int]) -> None:
    assert dilations_for(pattern, 3, 2) == expected


def test_custom_dilations_parse_and_bad_ones_name_the_problem() -> None:
    assert dilations_for("custom", 99, 2, "1, 3;9 27") == [1, 3, 9, 27] * 2
    for bad in ("", "1, x", "0", "-1", None):
        with pytest.raises(ConfigError, match="custom dilations"):
            dilations_for("custom", 3, 1, bad)
    with pytest.raises(ConfigError, match="pattern"):
        dilations_for("fibonacci", 3, 1)
