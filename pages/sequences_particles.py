"""The Particles tab: a particle filter on the Gaussian HMM (sequences_filter.run_filter), in front of the user.

    ess_figure(run)                      the effective sample size at each step, the threshold, the resamplings
    status_markdown(run)                 the estimate against the exact log p(x), the resamplings, the survivors
    filter_particles(store, proposal, particles, threshold, seed, steps, filter_seed)
                                         the handler: (the particles as inline SVG, sequences_particles_svg;
                                         the ESS figure; the status)
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from core.errors import StudioError
from core.model_store import ModelStore
from pages.figures import NEUTRAL
from pages.sequences_filter import FilterRun, run_filter
from pages.sequences_particles_svg import particles_html

PARTICLE, LINEAGE = "#1f77b4", "#d62728"


def ess_figure(run: FilterRun) -> go.Figure:
    """Traces "ESS" (T,), "threshold" (threshold * N at every step), "resampled" (the ESS at the steps that did)."""
    steps, n = np.arange(len(run.ess)), run.particles.shape[1]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps, y=run.ess, mode="lines+markers", name="ESS", line=dict(color=PARTICLE)))
    fig.add_trace(go.Scatter(x=steps, y=np.full(len(steps), run.threshold * n), mode="lines", name="threshold",
                             line=dict(color=NEUTRAL, dash="dash")))
    hit = np.flatnonzero(run.resampled)
    fig.add_trace(go.Scatter(x=hit, y=run.ess[hit], mode="markers", name="resampled",
                             marker=dict(color=LINEAGE, size=11, symbol="circle-open", line=dict(width=2))))
    fig.update_layout(title=f"effective sample size of the weights since the last resampling (of N = {n})",
                      height=300, margin=dict(l=50, r=10, t=50, b=40), xaxis_title="step t", yaxis_title="ESS",
                      yaxis=dict(range=[0, 1.05 * n]), legend=dict(orientation="h", y=-0.3))
    return fig


def status_markdown(run: FilterRun) -> str:
    """The estimate against the exact log-likelihood, how often the filter resampled, and how many lines survive."""
    n, steps = run.particles.shape[1], len(run.mean)
    roots = len(np.unique(run.lineages[0]))
    return (f"log p̂(x) = **{run.log_p_hat:.3f}** against the exact log p(x) = **{run.exact:.3f}** (Kalman filter; "
            "p̂ is unbiased for p(x), so log p̂ is below log p(x) on average but one run can land above it). "
            f"The filter resampled after {int(run.resampled.sum())} of {steps} steps; all {n} particles at the last "
            f"step descend from **{roots}** of the {n} at step 0. Filter seed {run.filter_seed}.")


def filter_particles(store: ModelStore, proposal: str | None, particles: float, threshold: float, seed: float,
                     steps: float, filter_seed: float | None) -> tuple[str, go.Figure, str]:
    """The Filter handler: (particles as inline SVG, ESS figure, status Markdown); gr.Error for bad input."""
    try:
        run = run_filter(store, proposal, particles, threshold, seed, steps, filter_seed)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    return particles_html(run), ess_figure(run), status_markdown(run)
