"""End to end: the recurrence page's handlers through gradio_client, against the launched app.

Contract checked here: the grid lights exactly the updates Schedule.grid says the loss's gradient reaches (for
the drawn step and, in the embedded frames, for every step), its numbers are the schedule's memory and longest
span, the presets are the seed's four animations, bad controls give a message and the app keeps serving, and the
measured gradient is zero beyond a stack model's truncation and non-zero within.
"""

from __future__ import annotations

import html
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

from core.checkpoints import save_checkpoint
from core.models.wayback import Wayback, WaybackConfig
from core.models.wayback_schedule import Schedule, seed_animations
from tests.conftest import serving

TINY = dict(sampling_frequency=8000, bit_depth=4, cell="gru", io_sizes=[7])
STACK = dict(layout="stack", boundaries=[5, 5], layer_sizes=[6, 5])  # cut every 5 steps
WAYBACK = dict(layout="wayback", periods=[1, 2, 2], boundaries=[4, 4, 4], layer_sizes=[6, 5, 4])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with a tiny random stack and a tiny random wayback checkpoint."""
    folder = tmp_path_factory.mktemp("wayback-models")
    for name, kw in (("tiny-stack", STACK), ("tiny-wayback", WAYBACK)):
        torch.manual_seed(0)
        save_checkpoint(Wayback(WaybackConfig(**TINY, **kw)), folder / name)
    return folder


@pytest.fixture(scope="module")
def client(models: Path) -> Iterator[Client]:
    with serving(models) as url:
        yield Client(url, verbose=False)


def drawn(grid_html: str) -> tuple[dict, set[tuple[int, int]], int]:
    """(the embedded frames, the (layer, step) cells drawn lit, the drawn step) of the grid's HTML."""
    root = re.search(r'<div class="rec-root" data-step="(\d+)"[^>]* data-frames="([^"]*)"', grid_html)
    frames = json.loads(html.unescape(root.group(2)))
    lit = {(int(i), int(s)) for i, s in re.findall(r'class="cell lit(?: held)?" data-layer="(\d+)" data-step="(\d+)"',
                                                  grid_html)}
    return frames, lit, int(root.group(1))


def lit_of(gradient: list[list[bool]]) -> set[tuple[int, int]]:
    return {(i, s) for i, row in enumerate(gradient) for s, on in enumerate(row) if on}


def random_schedule(rng: random.Random) -> Schedule:
    """A random valid wayback or stack schedule (some boundaries never cut, some carry=False)."""
    depth = rng.randint(1, 4)
    if rng.random() < 0.3:
        return Schedule("stack", None, tuple([rng.randint(1, 8)] * depth), rng.randint(1, 4))
    periods = [rng.randint(1, 3) for _ in range(depth)]
    boundaries = [rng.randint(max(periods), 4)]
    for _ in range(depth - 1):
        boundaries.append(boundaries[-1] * rng.randint(1, 2))
    if rng.random() < 0.3:
        boundaries[-1] = None
    return Schedule("wayback", tuple(periods), tuple(boundaries), rng.randint(1, 4), vskip=rng.random() < 0.5,
                    carry=rng.random() < 0.7)


def text(values: tuple) -> str:
    return ", ".join("none" if v is None else str(v) for v in values)


@pytest.mark.parametrize("seed", range(4))
def test_lit_cells_equal_schedule_grids_gradient_and_numbers_its_memory_and_span(client: Client, seed: int) -> None:
    rng = random.Random(seed)
    s = random_schedule(rng)
    steps = rng.randint(8, 40)
    t = rng.randrange(steps)
    grid, numbers = client.predict(s.layout, text(s.periods), text(s.boundaries), s.chunk_size, s.vskip, s.carry,
                                   steps, t, api_name="/recurrence_schedule")
    frames, lit, step = drawn(grid)
    expected = s.grid(steps, t)
    assert step == t and lit == lit_of(expected["gradient"])
    assert all([bit == "1" for bit in row] == want for t2 in range(steps)  # every frame the script can show
               for row, want in zip(frames["lit"][t2], s.grid(steps, t2)["gradient"], strict=True))
    assert frames["updates"] == expected["updates"]
    if expected["memory"] is None:
        assert "grows with the sequence" in numbers
    else:
        assert f"**{expected['memory']}** states held" in numbers
    if expected["longest_span_steps"] is None:
        assert "the whole sequence" in numbers
    else:
        assert (f"**{expected['longest_span_steps']}** steps = **{expected['longest_span_samples']}** samples"
                in numbers)


def test_held_cells_per_layer_never_exceed_the_schedules_states_held_and_reach_it(client: Client) -> None:
    s = Schedule("wayback", (1, 2, 3), (2, 3, 2), 1)  # spans 2, 6, 12
    grid, _ = client.predict("wayback", "1, 2, 3", "2, 3, 2", 1, False, True, 24, 23, api_name="/recurrence_schedule")
    frames, _, _ = drawn(grid)
    most = [max(frames["held"][t][i].count("1") for t in range(24)) for i in range(3)]
    assert most == list(s.states_held) == [2, 3, 2]


@pytest.mark.parametrize("name", list(seed_animations()))
def test_presets_draw_the_seeds_four_animations(client: Client, name: str) -> None:
    controls = client.predict(name, api_name="/recurrence_preset")
    schedule, steps = seed_animations()[name]
    assert controls[0] == schedule.layout and controls[-1] == steps
    grid, numbers = client.predict(*controls, steps - 1, api_name="/recurrence_schedule")
    assert drawn(grid)[1] == lit_of(schedule.grid(steps)["gradient"])
    assert ("grows with the sequence" in numbers) == (schedule.memory is None)


@pytest.mark.parametrize("periods, boundaries, message", [
    ("1, x", "4, 4", r"periods\[1\] must be a whole number"),
    ("1, 0", "4, 4", r"periods\[1\] must be a whole number"),
    ("1, 10", "4, 40", r"boundaries\[0\] = 4 is shorter than one cycle"),
    ("1, 2, 2", "4, 4", "periods has 3 entries but boundaries has 2"),
])
def test_bad_controls_give_a_message_and_the_app_keeps_serving(client: Client, periods: str, boundaries: str,
                                                               message: str) -> None:
    with pytest.raises(AppError, match=message):
        client.predict("wayback", periods, boundaries, 1, False, True, 12, 11, api_name="/recurrence_schedule")
    with pytest.raises(AppError, match="step must be a whole number in"):
        client.predict("wayback", "1, 2", "4, 4", 1, False, True, 12, 12, api_name="/recurrence_schedule")
    grid, _ = client.predict("wayback", "1, 2", "4, 4", 1, False, True, 12, 11, api_name="/recurrence_schedule")
    assert "rec-root" in grid


def curve(figure: dict, name: str) -> tuple[list[float], list[float]]:
    """The (x, y) of the measured figure's trace `name` (after the models folder's name)."""
    for trace in json.loads(figure["plot"])["data"]:
        if trace["name"].endswith("/" + name):
            return [float(v) for v in trace["x"]], [float(v) for v in trace["y"]]
    raise KeyError(name)


def test_measured_gradient_is_zero_beyond_the_stack_models_truncation_and_nonzero_within(client: Client,
                                                                                         models: Path) -> None:
    stack, wayback = str(models / "tiny-stack"), str(models / "tiny-wayback")
    figure, md = client.predict([stack, wayback], "layers", api_name="/measure_gradient_reach")
    back, norms = curve(figure, "tiny-stack · input")
    assert back == list(range(10, 0, -1))  # two segments of 5 steps, chunk size 1
    assert all((g > 0) == (b <= 5) for b, g in zip(back, norms, strict=True))
    back, norms = curve(figure, "tiny-wayback · input")  # the input: only the bottom layer's 4 steps
    assert all((g > 0) == (b <= 4) for b, g in zip(back, norms, strict=True))
    back, norms = curve(figure, "tiny-wayback · layer 2")  # the top layer: its 4 updates, 16 steps back
    assert [b for b, g in zip(back, norms, strict=True) if g > 0] == [16, 12, 8, 4]
    assert "reaches the input up to **5 samples back**" in md and "up to **4 samples back**" in md


def test_measuring_nothing_or_a_foreign_path_gives_a_message(client: Client) -> None:
    with pytest.raises(AppError, match="choose at least one wayback checkpoint"):
        client.predict([], "input", api_name="/measure_gradient_reach")
    with pytest.raises(AppError, match="not in this app's model folders"):
        client.predict(["/etc"], "input", api_name="/measure_gradient_reach")
