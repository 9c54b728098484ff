"""The Bounds tab: ELBO, IWAE and FIVO against the number of particles on one GHMM sequence, with the exact log p(x).

    compare_bounds(store, proposal, seed, steps, runs, threshold)   Bounds: each bound's R runs at each K
    bounds_vs_particles(store, ...)                                  the handler: (figure, table)

The R runs are one batch: the sequence is expanded to (R, T, 1), so every K costs two filter runs.
At K particles, IWAE is log of the mean of the K particles' weights and the ELBO is the mean of
their log-weights (an average of K one-particle ELBOs: its expectation does not depend on K, only
its spread), both from one run of the filter that never resamples, so IWAE >= ELBO in every run
(Jensen). FIVO runs the same K with resampling when the ESS falls to threshold * K.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch

from core.data.ghmm import sample_ghmm
from core.errors import StudioError
from core.inference.bounds import estimate
from core.model_store import ModelStore
from pages.checks import number_in, whole_in
from pages.figures import NEUTRAL
from pages.sequences_filter import MAX_SEED, MAX_STEPS, MIN_STEPS
from pages.sequences_models import ghmm_model, seeded

PARTICLE_COUNTS = tuple(2**k for k in range(9))  # 1 .. 256
MAX_RUNS = 64
COLOURS = {"ELBO": "#2ca02c", "IWAE": "#1f77b4", "FIVO": "#d62728"}


@dataclass
class Bounds:
    """Each bound's log p-hat per run: runs[name] is (len(PARTICLE_COUNTS), R); exact is log p(x)."""

    proposal: str
    steps: int
    runs: dict[str, np.ndarray]
    exact: float


def compare_bounds(store: ModelStore, proposal: str | None, seed: float, steps: float, runs: float,
                   threshold: float) -> Bounds:
    """R runs of each bound at each K in PARTICLE_COUNTS on the T-step sequence drawn with `seed` (the runs
    seeded with it too); StudioError for bad input."""
    seed = whole_in("sequence seed", seed, 0, MAX_SEED)
    t = whole_in("steps", steps, MIN_STEPS, MAX_STEPS)
    r = whole_in("runs", runs, 1, MAX_RUNS)
    threshold = number_in("threshold", threshold, 0, 1)
    model = ghmm_model(store, proposal, t)
    x = sample_ghmm(1, t, model.config.variance, seed=seed).observations.double()  # (1, T, 1)
    batch = x.expand(r, t, 1)
    found: dict[str, list[np.ndarray]] = {name: [] for name in COLOURS}
    with torch.no_grad(), seeded(seed):
        for k in PARTICLE_COUNTS:
            iwae = estimate(model, batch, None, "iwae", k, trace=True)
            found["ELBO"].append(iwae.trace.log_weights[-1].mean(dim=-1).numpy())  # never reset: whole log-weights
            found["IWAE"].append(iwae.log_p_hat.numpy())
            found["FIVO"].append(estimate(model, batch, None, "fivo", k, threshold=threshold).log_p_hat.numpy())
    return Bounds(str(proposal), t, {name: np.stack(v) for name, v in found.items()},
                  float(model.exact_log_likelihood(x)[0]))


def bounds_figure(bounds: Bounds) -> go.Figure:
    """Traces "ELBO", "IWAE", "FIVO" (mean over runs ± 1 sd against K, on a log axis) and "exact log p(x)"."""
    k = np.array(PARTICLE_COUNTS)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[k[0], k[-1]], y=[bounds.exact] * 2, mode="lines", name="exact log p(x)",
                             line=dict(color=NEUTRAL, dash="dash")))
    for name, runs in bounds.runs.items():
        fig.add_trace(go.Scatter(x=k, y=runs.mean(axis=1), mode="lines+markers", name=name,
                                 line=dict(color=COLOURS[name]), error_y=dict(type="data", array=runs.std(axis=1),
                                                                              visible=True, thickness=1)))
    fig.update_layout(title=f"bounds on log p(x) of a {bounds.steps}-step sequence, {bounds.proposal} proposal "
                      f"(mean ± 1 sd of {bounds.runs['ELBO'].shape[1]} runs)", height=420,
                      margin=dict(l=60, r=10, t=50, b=40), yaxis_title="nats",
                      xaxis=dict(type="log", title="particles K", tickvals=list(k), ticktext=[str(v) for v in k]),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def bounds_table(bounds: Bounds) -> str:
    """Markdown: each bound's mean ± sd at each K, and its gap to log p(x)."""
    def cell(runs: np.ndarray) -> str:
        return f"{runs.mean():.3f} ± {runs.std():.3f} ({runs.mean() - bounds.exact:+.3f})"

    rows = [f"| {k} | " + " | ".join(cell(runs[i]) for runs in bounds.runs.values()) + " |"
            for i, k in enumerate(PARTICLE_COUNTS)]
    return "\n".join([f"Exact log p(x) = **{bounds.exact:.3f}** nats (Kalman filter). Each cell: mean ± sd over the "
                      "runs (gap to log p(x)).", "", "| K | " + " | ".join(bounds.runs) + " |",
                      "|---|" + "---|" * len(bounds.runs), *rows])


def bounds_vs_particles(store: ModelStore, proposal: str | None, seed: float, steps: float, runs: float,
                        threshold: float) -> tuple[go.Figure, str]:
    """The Compare handler: (figure, Markdown table); gr.Error for bad input."""
    try:
        bounds = compare_bounds(store, proposal, seed, steps, runs, threshold)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    return bounds_figure(bounds), bounds_table(bounds)
