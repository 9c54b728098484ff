"""End to end: the receptive-field page's handlers through gradio_client, against the launched app.

Contract checked here: the diagram lights exactly the inputs the model's gradient reaches, the counts
are the closed forms of core.cone, the windows are core.data.windows', and the measurements run.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

import pages.receptive_field_timing as rf_timing
from core.models.wavenet import WaveNet
from core.receptive_field import input_gradient
from pages.receptive_field_controls import MARGIN, config_from_controls
from pages.receptive_field_measure import RANDOM

CONTROLS = dict(kernel_size=3, stacks=2, layers_per_stack=2, pattern="custom", custom_dilations="1, 3",
                input_kernel_size=2)  # R = 2 * (2 * 1 + 2 * 3) + 2 = 18


@pytest.fixture(scope="module")
def client(app_url: str) -> Iterator[Client]:
    yield Client(app_url, verbose=False)


def traces(plot: dict) -> dict[str, dict]:
    """A gr.Plot output's plotly traces by name."""
    assert plot["type"] == "plotly"
    return {trace.get("name"): trace for trace in json.loads(plot["plot"])["data"]}


def values(column: list | dict) -> list:
    """A trace's x or y as a list: plotly sends numpy arrays as {"dtype", "bdata"} (base64)."""
    if isinstance(column, dict):
        return np.frombuffer(base64.b64decode(column["bdata"]), dtype=column["dtype"]).tolist()
    return column


def embedded_cones(graph: str) -> dict:
    """The cones the diagram's HTML embeds for its script (pages/receptive_field_svg.diagram_data)."""
    return json.loads(html.unescape(re.search(r'data-cones="([^"]*)"', graph).group(1)))


@pytest.mark.parametrize("t", [21, 9, 0])  # the newest output (R + MARGIN - 1), one before R - 1, the first
def test_diagrams_lit_inputs_are_exactly_the_inputs_with_nonzero_gradient(client: Client, t: int) -> None:
    graph, formula, _ = client.predict(*CONTROLS.values(), t, api_name="/receptive_field_diagram")
    assert "= **18**" in formula and f"t = {t}**" in formula
    data = embedded_cones(graph)
    assert data["bucket"] == 1  # one position a column: column 2 + j is x_j
    runs = data["cones"]["init"]["levels"][0]
    lit_inputs = {c - 2 for a, b in zip(runs[::2], runs[1::2], strict=True) for c in range(a, b + 1) if c >= 2}

    torch.manual_seed(0)
    model = WaveNet(config_from_controls(*CONTROLS.values(), channels=8, quantization_levels=8))
    grad = sum(input_gradient(model, t, length=30, seed=seed) for seed in range(3))
    assert lit_inputs == set((grad > 0).nonzero().flatten().tolist())
    reads_zeros = any(runs[:1] == [0] for runs in data["cones"]["init"]["levels"])  # column 0: the padding
    assert reads_zeros == (t < 18 - 1)  # the cone reaches padding before R - 1
    assert f'data-col="{t + 2}"' in graph and "too wide" not in graph


def test_changing_the_layer_count_changes_r_in_the_formula(client: Client) -> None:
    for layers, r in ((4, 16), (9, 512)):
        _, formula, _ = client.predict(2, 1, layers, "exponential", "", 1, r, api_name="/receptive_field_diagram")
        assert f"= **{r}**" in formula


def test_stack_costs_give_the_talks_18_vs_512_and_the_queue_sizes(client: Client) -> None:
    parameters, queues = client.predict(2, 1, 9, "exponential", "", 1, 64, 2, api_name="/stack_costs")
    assert "2 × 9 = **18**" in parameters and "R = **512**" in parameters
    assert "**511 slots = R − K\\_in**" in queues and "| 9 | 256 | 256 | 128.0 KiB |" in queues  # 256 x 2 x 64 x 4 B


def test_training_windows_are_r_plus_t_long_with_stride_t(client: Client) -> None:
    figure, text = client.predict(2, 1, 4, "exponential", "", 1, 10, api_name="/training_window")
    bars = traces_by_kind(figure)
    assert [(b["base"][0], b["x"][0]) for b in bars["context (R, not scored)"]] == [(0, 16), (10, 16), (20, 16)]
    assert [(b["base"][0], b["x"][0]) for b in bars["targets (T, scored)"]] == [(16, 10), (26, 10), (36, 10)]
    assert "R + T = 16 + 10 = 26" in text


def traces_by_kind(plot: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for trace in json.loads(plot["plot"])["data"]:
        out.setdefault(trace["name"], []).append(trace)
    return out


@pytest.mark.parametrize("model", ["random", "stored"])
def test_measured_field_equals_the_analytic_cone(client: Client, tiny_audio_models: Path, model: str) -> None:
    choice = RANDOM if model == "random" else str(tiny_audio_models / "tiny")
    figure, text = client.predict(choice, *CONTROLS.values(), api_name="/measure_receptive_field")
    r = 18 if model == "random" else 16
    assert f"equals the analytic cone (1 … R = {r}," in text
    assert "of the gradient comes from the last" in text
    assert len(values(traces(figure)["|gradient| (÷ max)"]["x"])) == r + MARGIN + 3


def test_generation_cost_times_naive_and_cached(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rf_timing, "COST_SECONDS", 0.005)  # the app runs in this process
    monkeypatch.setattr(rf_timing, "COST_BUDGET", 0.3)
    figure, text = client.predict(2, 8, api_name="/generation_cost")
    lines = traces(figure)
    assert len(lines["naive"]["x"]) >= 3 and lines["naive"]["x"] == lines["cached"]["x"] == sorted(lines["naive"]["x"])
    assert lines["naive"]["x"][:3] == [2, 4, 8] and all(y > 0 for y in lines["naive"]["y"] + lines["cached"]["y"])
    assert "Crossover" in text or "not faster" in text


def test_bad_controls_raise_a_message_naming_them(client: Client) -> None:
    with pytest.raises(AppError, match="custom dilations"):
        client.predict(2, 1, 4, "custom", "1, x", 1, 3, api_name="/receptive_field_diagram")
    with pytest.raises(AppError, match="output t must be"):
        client.predict(2, 1, 4, "exponential", "", 1, 500, api_name="/receptive_field_diagram")
    with pytest.raises(AppError, match="not in this app's model folders"):
        client.predict("/etc", *CONTROLS.values(), api_name="/measure_receptive_field")
