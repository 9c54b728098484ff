"""Every page's Plotly figures read in Gradio's light and dark themes: transparent backgrounds, text and axes in
the mid-grey of pages/figures.py, no black or dark-grey ink that would vanish on a dark page."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from core.forecast import Forecast
from core.model_store import ModelStore
from pages.audio_plots import variation_figure
from pages.digits import posterior_figure, surprise_figure
from pages.figures import NAME, NEUTRAL
from pages.sequences_bounds import PARTICLE_COUNTS, Bounds, bounds_figure
from pages.sequences_filter import run_filter
from pages.sequences_particles import ess_figure
from pages.sequences_pianoroll import bound_figure, pianoroll_figure
from pages.signals import forecast_figure
from pages.train_runs import curves_figure

DARK_INK = ("black", "#000", "#000000", "#444", "#2a3f5f")  # Plotly's own defaults and the old reference lines


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, go.Figure]:
    """One figure of each kind the pages draw, from small made-up inputs."""
    tmp_path = tmp_path_factory.mktemp("no-models")
    rng = np.random.default_rng(0)
    roll = (rng.random((8, 88)) > 0.95).astype(np.float32)
    runs = {name: rng.normal(size=(len(PARTICLE_COUNTS), 3)) for name in ("ELBO", "IWAE", "FIVO")}
    rows = [{"split": "train", "step": s, "bits": 3.0 - s / 10, "lr": 1e-3} for s in range(5)]
    return {
        "ESS": ess_figure(run_filter(ModelStore([tmp_path], device="cpu"), "prior", 8, 0.5, 0, 6, 0)),
        "bounds": bounds_figure(Bounds("prior", 6, runs, -3.0)),
        "pianorolls": pianoroll_figure(roll[:4], roll[4:], roll[None, 4:], "jsb 0"),
        "bound per frame": bound_figure(rng.normal(size=8), rng.normal(size=8), 4, "jsb 0"),
        "waveform": variation_figure(rng.uniform(-1, 1, 800).astype(np.float32),
                                     rng.uniform(-1, 1, 800).astype(np.float32), 8000),
        "surprise": surprise_figure(rng.random(784), 3),
        "posterior": posterior_figure(np.full(10, 0.1)),
        "forecast": forecast_figure(rng.normal(size=60), Forecast(rng.normal(size=40).astype(np.float32),
                                                                  rng.normal(size=(4, 20)).astype(np.float32))),
        "training curves": curves_figure({"metrics": rows, "config": {"model": {"sample_rate": 8000}},
                                          "name": "run"}),
    }


def test_importing_the_pages_makes_the_theme_neutral_template_plotlys_default() -> None:
    assert pio.templates.default == NAME


def alpha(colour: str | None) -> float:
    """The opacity of a CSS colour ('rgba(..., a)' or an opaque name or hex); 0 for none."""
    if not colour:
        return 0.0
    return float(colour.rsplit(",", 1)[1].rstrip(")")) if colour.startswith("rgba") else 1.0


@pytest.mark.parametrize("name", ["ESS", "bounds", "pianorolls", "bound per frame", "waveform", "surprise",
                                  "posterior", "forecast", "training curves"])
def test_a_figure_has_a_transparent_background_grey_text_and_no_dark_ink(name: str,
                                                                          figures: dict[str, go.Figure]) -> None:
    fig = figures[name]
    layout, template = fig.layout, fig.layout.template.layout
    for key in ("paper_bgcolor", "plot_bgcolor"):  # its own setting, else the template's
        assert alpha(layout[key] if layout[key] is not None else template[key]) == 0, key
    assert (layout.font.color or template.font.color) == NEUTRAL
    drawn = json.dumps(fig.to_plotly_json()).lower()
    assert not [ink for ink in DARK_INK if f'"{ink}"' in drawn]
