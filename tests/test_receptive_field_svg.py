"""The receptive-field diagram's SVG and the cones it embeds: every output's embedded cone is core.cone's,
repeated stacks collapse to one labelled row, and wide time axes still draw every output."""

from __future__ import annotations

import html
import json
import re

import pytest

from core import cone
from core.models.wavenet import WaveNetConfig
from pages.receptive_field_controls import STORY, config_from_controls, diagram_length, story_step
from pages.receptive_field_svg import MAX_COLS, cone_offsets, diagram_data, diagram_html, output_cone, shown_levels

CONFIGS = {
    "exponential": (2, 1, 4, "exponential", "", 1),
    "holes, K_in 2": (3, 2, 2, "custom", "1, 3", 2),
    "big dilation below a small one": (2, 1, 2, "custom", "4, 1", 3),
    "linear, three stacks": (3, 3, 3, "linear", "", 2),
}


def positions(runs: list[tuple[int, int]]) -> set[int]:
    return {p for a, b in runs for p in range(a, b + 1)}


@pytest.mark.parametrize("controls", CONFIGS.values(), ids=CONFIGS.keys())
def test_every_outputs_cone_equals_core_cones_cone_with_its_padding(controls: tuple) -> None:
    config = config_from_controls(*controls)
    offsets = cone_offsets(config)
    for t in range(diagram_length(config)):
        real, padding = output_cone(config, offsets, t)
        for level, nodes in enumerate(cone.cone(config, t, padding=True)):
            assert positions(real[level]) == {p for p in nodes if p >= cone.first_real(level)}, (t, level)
            assert padding[level] == any(p < cone.first_real(level) for p in nodes), (t, level)


def lit_columns(entry: dict) -> list[set[int]]:
    return [{c for a, b in zip(runs[::2], runs[1::2], strict=True) for c in range(a, b + 1)}
            for runs in entry["levels"]]


@pytest.mark.parametrize("controls", CONFIGS.values(), ids=CONFIGS.keys())
def test_the_embedded_cone_of_each_output_column_lights_core_cones_nodes(controls: tuple) -> None:
    config = config_from_controls(*controls)
    data = diagram_data(config, 0)
    assert data["bucket"] == 1 and data["cols"] == 2 + diagram_length(config)
    for t in range(diagram_length(config)):
        entry = data["cones"][str(t + 2)]  # column 0: padding, 1: the start symbol, 2 + t: position t
        assert entry["t"] == t and entry["col"] == t + 2
        full = cone.cone(config, t, padding=True)
        expected = [{p + 2 for p in full[level] if p >= cone.first_real(level)}
                    | ({0} if any(p < cone.first_real(level) for p in full[level]) else set())
                    for level, _ in data["levels"]]
        assert lit_columns(entry) == expected, t
    assert data["cones"]["init"] == data["cones"]["2"]  # the server's first lit output


def test_the_svg_lights_the_chosen_outputs_cone_and_embeds_the_others() -> None:
    config = config_from_controls(*CONFIGS["exponential"])  # R = 16
    page = diagram_html(config, 9)
    lit = {(int(level), int(col)) for level, col in re.findall(r'class="node[^"]* lit[^"]*" data-level="(\d+)" '
                                                              r'data-col="(\d+)"', page)}
    full = cone.cone(config, 9, padding=True)
    inputs = {(0, p + 2) for p in full[0] if p >= cone.START}  # K_in = 1: no padding in front of the inputs
    assert {(0, c) for level, c in lit if level == 0} == inputs
    assert (5, 11) in lit and len([1 for level, _ in lit if level == 5]) == 1  # the output itself, on top
    assert 'class="node out now"' not in page and re.search(r'class="node out lit now" data-level="5" '
                                                            r'data-col="11"', page)
    assert "depends on 9 inputs x_0 … x_8 and the start symbol, and zero padding at 2 levels" in page
    data = json.loads(html.unescape(re.search(r'data-cones="([^"]*)"', page).group(1)))
    assert len([k for k in data["cones"] if k != "init"]) == diagram_length(config)
    assert page.count('class="edge') > 0  # small graphs draw their edges


def test_repeated_stacks_collapse_into_one_row_labelled_with_the_repeat() -> None:
    config = WaveNetConfig(dilations=[2**i for i in range(10)] * 4)
    levels = shown_levels(config)
    assert [label for _, label in levels[:3]] == ["x (input)", "input layer K_in=1", "stacks 1–3 (×3, d = 1 … 512)"]
    assert levels[2][0] == 1 + 30 and [level for level, _ in levels[3:]] == list(range(32, 42))
    page = diagram_html(config, diagram_length(config) - 1)
    assert "stacks 1–3 (×3, d = 1 … 512)" in page and "too wide" not in page
    assert "drawn as one row" in page


def test_a_short_stack_is_drawn_whole() -> None:
    config = WaveNetConfig(dilations=[1, 2, 4, 8] * 3)
    assert [level for level, _ in shown_levels(config)] == list(range(14))


def test_a_wide_time_axis_puts_several_positions_in_a_column_and_keeps_every_output() -> None:
    config = WaveNetConfig(dilations=[2**i for i in range(10)] * 2)  # R = 2047
    data = diagram_data(config, 100)
    length = diagram_length(config)
    assert data["bucket"] == -(-length // MAX_COLS) and data["cols"] - 2 <= MAX_COLS
    newest = data["cones"][str(data["cols"] - 1)]
    assert newest["t"] == length - 1 and "depends on 2,047 inputs x_3 … x_2049" in newest["caption"]
    lit = lit_columns(data["cones"]["init"])
    assert lit[0] == {1} | set(range(2, 2 + 99 // data["bucket"] + 1))  # the start, x_0 .. x_99 (K_in = 1: no padding)
    assert 0 in lit[1]  # the first layer reads zeros in front of the input layer
    assert lit[-1] == {2 + 100 // data["bucket"]}


def test_the_storys_steps_set_the_controls_in_order() -> None:
    assert list(STORY) == ["1. one layer", "2. dilate", "3. stack", "4. what the model really uses"]
    rs = [config_from_controls(*story_step(step)[:6]).receptive_field for step in STORY]
    assert rs == [2, 16, 46, 3070]
    assert "Measured receptive field" in story_step("4. what the model really uses")[6]
