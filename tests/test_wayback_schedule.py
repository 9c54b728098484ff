"""The wayback schedule: who updates when, in which order, and how far back each layer's gradient reaches."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from core.models.wayback_schedule import Schedule, check_schedule, seed_animations


@st.composite
def nested_schedules(draw, carry: bool | None = True):
    """Random wayback schedules whose boundaries satisfy the config's rules (each covers a cycle above,
    each layer's span a multiple of the one below)."""
    depth = draw(st.integers(1, 4))
    periods = [draw(st.integers(1, 4)) for _ in range(depth)]
    b = draw(st.integers(max(periods), 6))
    boundaries = [b]
    for _ in range(depth - 1):
        boundaries.append(boundaries[-1] * draw(st.integers(1, 2)))
    vskip = draw(st.booleans())
    carry = draw(st.booleans()) if carry is None else carry
    return Schedule("wayback", tuple(periods), tuple(boundaries), vskip=vskip, carry=carry)


@settings(max_examples=60, deadline=None)
@given(periods=st.lists(st.integers(1, 5), min_size=1, max_size=5), steps=st.integers(1, 200))
def test_layer_updates_when_step_is_a_multiple_of_the_product_of_periods_up_to_it(periods, steps):
    s = Schedule("wayback", tuple(periods), tuple([math.prod(periods)] * len(periods)))
    grid = s.update_grid(steps)
    for i in range(len(periods)):
        assert grid[i] == [t % math.prod(periods[: i + 1]) == 0 for t in range(steps)]


@settings(max_examples=30, deadline=None)
@given(periods=st.lists(st.integers(1, 5), min_size=1, max_size=5), step=st.integers(0, 500))
def test_wayback_updates_within_a_step_go_top_down(periods, step):
    order = Schedule("wayback", tuple(periods), tuple([math.prod(periods)] * len(periods))).updates(step)
    assert order == sorted(order, reverse=True)
    if order:
        assert order[-1] == 0  # the bottom layer is due whenever any layer is


def test_stack_updates_every_layer_every_step_bottom_to_top():
    s = Schedule("stack", None, (5, 7, 3))
    assert all(s.updates(t) == [0, 1, 2] for t in range(20))
    assert s.spans == (7, 7, 7) and s.segment_steps == 7


def test_reads_follow_the_layout_and_vskip():
    assert Schedule("stack", None, (2, 2, 2)).reads(1) == [0]
    assert Schedule("wayback", None, (2, 2, 2)).reads(1) == [0, 2]
    assert Schedule("wayback", None, (2, 2, 2)).reads(2) == [1]
    assert Schedule("stack", None, (2, 2, 2), vskip=True).reads(1) == [0, 2]


@settings(max_examples=60, deadline=None)
@given(s=nested_schedules(carry=True), data=st.data())
def test_with_carry_a_loss_reaches_each_layer_back_to_the_start_of_its_gradient_block(s, data):
    loss_step = data.draw(st.integers(0, 3 * s.segment_steps))
    reach = s.reach(loss_step)
    for i, p in enumerate(s.layer_periods):
        start = loss_step - loss_step % s.spans[i]
        assert reach[i] == [t for t in range(start, loss_step + 1) if t % p == 0]
        assert len(reach[i]) <= s.boundaries[i]


@settings(max_examples=40, deadline=None)
@given(s=nested_schedules(carry=None), data=st.data())
def test_a_loss_at_the_end_of_a_segment_reaches_exactly_boundaries_steps_of_each_layer(s, data):
    segment = data.draw(st.integers(0, 2))
    loss_step = (segment + 1) * s.segment_steps - 1
    reach = s.reach(loss_step)
    for i in range(s.depth):
        assert all(loss_step - t < s.spans[i] for t in reach[i])  # never beyond the boundary
        if s.carry:
            assert len(reach[i]) == s.boundaries[i]


def test_no_gradient_crosses_a_segment_boundary():
    s = Schedule("wayback", (1, 2, 3), (2, 4, 4))
    for loss_step in range(s.segment_steps, 2 * s.segment_steps):
        assert all(t >= s.segment_steps for r in s.reach(loss_step) for t in r)


def test_carry_false_cuts_a_layer_at_each_update_of_the_layer_above():
    s = Schedule("wayback", (1, 3), (6, 4), carry=False)
    # Layer 0 restarts from layer 1 at steps 0, 3, 6, 9: a loss at 11 reaches layer 0 back to 9 only,
    # where with carry its gradient block (6 steps) reaches back to 6.
    assert s.reach(11) == [[9, 10, 11], [0, 3, 6, 9]]
    assert Schedule("wayback", (1, 3), (6, 4)).reach(11) == [[6, 7, 8, 9, 10, 11], [0, 3, 6, 9]]


def test_seed_wayback_example_spans_4000_samples_holding_100_states_per_layer():
    s = Schedule("wayback", (1, 1, 10), (100, 100, 100), chunk_size=4)
    assert s.longest_span_samples == 4000 and s.segment_steps == 1000
    assert s.states_held == (100, 100, 100) and s.memory == 300
    stack = Schedule("stack", None, (100, 100, 100), chunk_size=4)
    assert stack.longest_span_samples == 400 and stack.memory == 300


def test_seed_animations_draw_full_truncated_multiscale_and_multiscale_truncated_backprop():
    frames = {name: s.grid(n) for name, (s, n) in seed_animations().items()}
    assert set(frames) == {"full backprop", "truncated", "multi-scale", "multi-scale truncated"}
    full, trunc = frames["full backprop"], frames["truncated"]
    assert all(all(row) for row in full["gradient"]) and full["memory"] is None
    assert all(row == [t >= 18 for t in range(27)] for row in trunc["gradient"]) and trunc["memory"] == 18
    ms, mst = frames["multi-scale"], frames["multi-scale truncated"]
    assert ms["gradient"] == ms["updates"]  # untruncated: every update gets gradient
    assert mst["gradient"][0] == [t >= 24 for t in range(27)]  # the last 3 steps of the bottom layer
    assert mst["gradient"][1] == [t in (18, 21, 24) for t in range(27)]
    assert mst["gradient"][2] == mst["updates"][2]
    assert mst["order"][9] == [2, 1, 0] and mst["order"][3] == [1, 0] and mst["order"][4] == [0]


@pytest.mark.parametrize("layout, periods, boundaries, field", [
    ("wayback", [1, 0], [4, 4], "periods[1]"),
    ("wayback", [1, 10], [4, 40], "boundaries[0]"),
    ("wayback", [1, 2], [3, 4], "boundaries[1]"),
    ("wayback", [1, 2], [4, 0], "boundaries[1]"),
    ("stack", [1, 2], [4, 4], "periods"),
    ("tree", [1], [4], "layout"),
])
def test_bad_schedules_are_refused_naming_the_field(layout, periods, boundaries, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        check_schedule(layout, periods, boundaries)
