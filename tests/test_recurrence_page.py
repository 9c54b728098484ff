"""The recurrence page's helpers without a server: controls -> Schedule, presets, the frames and the SVG grid."""

from __future__ import annotations

import html
import json
import re

import gradio as gr
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from core.models.wayback import Wayback, WaybackConfig
from core.models.wayback_schedule import Schedule, seed_animations
from pages.recurrence_controls import (
    PRESETS,
    parse_entries,
    periods_for_layout,
    preset_controls,
    schedule_from_controls,
)
from pages.recurrence_grid import grid_html, held_grid, numbers_markdown, recurrence_schedule, schedule_frames
from pages.recurrence_measure import MAX_MEASURE_STEPS, measured_steps


def test_entries_parse_whole_numbers_and_none_only_where_allowed() -> None:
    assert parse_entries("boundaries", " 3, 3 ,none", allow_never=True) == [3, 3, None]
    assert parse_entries("periods", "1;3;3", allow_never=False) == [1, 3, 3]
    with pytest.raises(ConfigError, match=r"periods\[2\] must be a whole number >= 1, got 'none'"):
        parse_entries("periods", "1, 3, none", allow_never=False)
    with pytest.raises(ConfigError, match="boundaries: give one whole number per layer"):
        parse_entries("boundaries", " ", allow_never=True)
    with pytest.raises(ConfigError, match="at most 6 layers"):
        parse_entries("periods", ",".join(["1"] * 7), allow_never=False)


@pytest.mark.parametrize("controls, message", [
    (("tree", "1", "4", 1, False, True), "layout must be one of"),
    (("wayback", "1, 2", "4", 1, False, True), "periods has 2 entries but boundaries has 1"),
    (("wayback", "1, 2", "4, 4", 0, False, True), "chunk size must be a whole number"),
    (("stack", "1, 2", "4, 4", 1, False, True), "periods must all be 1 for layout 'stack'"),
    (("wayback", "1, 2", "none, 4", 1, False, True), r"boundaries\[1\] must be None"),
])
def test_bad_controls_raise_a_config_error_naming_the_control(controls: tuple, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        schedule_from_controls(*controls)


@pytest.mark.parametrize("name", list(seed_animations()))
def test_each_preset_round_trips_to_the_seeds_schedule(name: str) -> None:
    *controls, steps = preset_controls(name)
    assert schedule_from_controls(*controls) == seed_animations()[name][0] and steps == seed_animations()[name][1]
    assert name in PRESETS and "\n" not in PRESETS[name]


def test_a_stack_layout_sets_one_period_per_boundary() -> None:
    assert periods_for_layout("stack", "1, 3, 3", "9, 9") == "1, 1"
    assert periods_for_layout("wayback", "1, 3, 3", "9, 9") == "1, 3, 3"


@st.composite
def schedules(draw) -> Schedule:
    depth = draw(st.integers(1, 3))
    if draw(st.booleans()):
        return Schedule("stack", None, (draw(st.integers(1, 6)),) * depth)
    periods = [draw(st.integers(1, 3)) for _ in range(depth)]
    boundaries = [draw(st.integers(max(periods), 4))]
    for _ in range(depth - 1):
        boundaries.append(boundaries[-1] * draw(st.integers(1, 2)))
    return Schedule("wayback", tuple(periods), tuple(boundaries), vskip=draw(st.booleans()),
                    carry=draw(st.booleans()))


@settings(max_examples=25, deadline=None)
@given(s=schedules(), steps=st.integers(1, 30))
def test_held_states_lie_in_the_current_block_and_never_exceed_states_held(s: Schedule, steps: int) -> None:
    counts = [[row.count(True) for row in held_grid(s, steps, t)] for t in range(steps)]
    for i, most in enumerate(s.states_held):
        assert max(c[i] for c in counts) <= most
        if steps >= s.segment_steps:  # a whole block of every layer is drawn
            assert max(c[i] for c in counts) == most


def drawn_classes(markup: str) -> dict[tuple[int, int], str]:
    return {(int(i), int(s)): kind for kind, i, s in
            re.findall(r'class="cell (\w+)(?: held)?" data-layer="(\d+)" data-step="(\d+)"', markup)}


@settings(max_examples=20, deadline=None)
@given(s=schedules(), steps=st.integers(1, 24), data=st.data())
def test_the_svg_draws_every_update_and_lights_exactly_the_gradient_of_schedule_grid(s: Schedule, steps: int,
                                                                                     data: st.DataObject) -> None:
    t = data.draw(st.integers(0, steps - 1))
    frames = schedule_frames(s, steps)
    markup = grid_html(frames, t)
    expected = s.grid(steps, t)
    classes = drawn_classes(markup)
    assert set(classes) == {(i, k) for i, row in enumerate(expected["updates"]) for k, on in enumerate(row) if on}
    assert {c for c, kind in classes.items() if kind == "lit"} == {
        (i, k) for i, row in enumerate(expected["gradient"]) for k, on in enumerate(row) if on}
    assert all(kind == "future" for (_, k), kind in classes.items() if k > t)
    embedded = json.loads(html.unescape(re.search(r'data-frames="([^"]*)"', markup).group(1)))
    assert embedded == json.loads(json.dumps(frames))
    assert f"Loss at step {t}:" in markup


def test_numbers_say_memory_and_span_or_that_they_grow() -> None:
    s = Schedule("wayback", (1, 1, 10), (100, 100, 100), chunk_size=4)
    assert numbers_markdown(s).startswith("Memory: **300** states held")
    assert "**1000** steps = **4000** samples (chunk size 4)" in numbers_markdown(s)
    full = seed_animations()["full backprop"][0]
    assert "grows with the sequence" in numbers_markdown(full) and "the whole sequence" in numbers_markdown(full)


def test_the_endpoint_refuses_a_step_outside_the_drawn_steps_with_a_message() -> None:
    with pytest.raises(gr.Error, match=r"step must be a whole number in \[0, 9\]"):
        recurrence_schedule("stack", "1", "4", 1, False, True, 10, 10)
    with pytest.raises(gr.Error, match=r"steps drawn must be a whole number in \[1, 96\]"):
        recurrence_schedule("stack", "1", "4", 1, False, True, 97, 0)


@pytest.mark.parametrize("layout, periods, boundaries, steps", [
    ("stack", [1, 1], [5, 5], 10),  # two segments
    ("wayback", [1, 1, 10], [100, 100, 100], 300),  # the seed's: 3 bottom blocks, its 1000-step top span won't fit
    ("stack", [1], [500], MAX_MEASURE_STEPS),  # no block fits
])
def test_measured_steps_end_on_the_longest_block_that_fits(layout: str, periods: list, boundaries: list,
                                                           steps: int) -> None:
    with torch.device("meta"):
        model = Wayback(WaybackConfig(layout=layout, periods=periods, boundaries=boundaries,
                                      layer_sizes=[8] * len(boundaries), io_sizes=[8]))
    assert measured_steps(model) == steps
