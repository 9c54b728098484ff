"""The Particles tab: a particle filter on the Gaussian HMM, in front of the user.

    run_filter(store, proposal, particles, threshold, seed, steps, filter_seed)   FilterRun: a sequence drawn with
                                                                                 `seed`, FIVO's filter over it, and
                                                                                 the exact posterior (Kalman smoother)
    filter_particles(store, ...)                                                 the handler: (particles figure,
                                                                                 ESS figure, status)

The filter resamples (multinomially) after step t when the effective sample size of the weights
since its last resampling is at most threshold * N: threshold 0 never resamples (IWAE), 1 always does.
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
from core.inference.smc import lineages
from core.model_store import ModelStore
from pages.checks import number_in, seed_or_none, whole_in
from pages.sequences_models import ghmm_model, seeded

MAX_PARTICLES = 256
MIN_STEPS, MAX_STEPS = 5, 50
MAX_SEED = 999  # sequence seeds offered
MAX_MARKER = 14  # pixels: the marker of a step's heaviest particle
PARTICLE, LINEAGE, MEAN, BAND, OBSERVED, RESAMPLED = ("#1f77b4", "#d62728", "#000000", "rgba(0, 0, 0, 0.12)",
                                                       "#ff7f0e", "rgba(214, 39, 40, 0.6)")


@dataclass
class FilterRun:
    """One filter over one sequence; T steps, N particles, every array numpy."""

    proposal: str
    threshold: float
    filter_seed: int
    observations: np.ndarray  # (T,) x
    latents: np.ndarray  # (T,) the z the sequence was drawn with
    mean: np.ndarray  # (T,) exact posterior mean of z_t given all of x
    std: np.ndarray  # (T,) its standard deviation
    particles: np.ndarray  # (T, N) z_t of each particle after step t's proposal, before resampling
    weights: np.ndarray  # (T, N) their normalised weights (what resampling after step t draws with)
    ess: np.ndarray  # (T,) in [1, N]
    resampled: np.ndarray  # (T,) bool: the filter resampled after step t
    lineages: np.ndarray  # (T, N) long: the particle at step t that the final particle n descends from
    log_p_hat: float
    exact: float  # log p(x)


def run_filter(store: ModelStore, proposal: str | None, particles: float, threshold: float, seed: float,
               steps: float, filter_seed: float | None) -> FilterRun:
    """Draw a T-step GHMM sequence with `seed`, filter it with N particles drawn with `filter_seed` (None: random);
    StudioError for bad input."""
    n = whole_in("particles", particles, 1, MAX_PARTICLES)
    threshold = number_in("threshold", threshold, 0, 1)
    seed = whole_in("sequence seed", seed, 0, MAX_SEED)
    t = whole_in("steps", steps, MIN_STEPS, MAX_STEPS)
    filter_seed = seed_or_none(filter_seed)
    filter_seed = int(np.random.default_rng().integers(2**31)) if filter_seed is None else filter_seed
    model = ghmm_model(store, proposal, t)
    drawn = sample_ghmm(1, t, model.config.variance, seed=seed)
    x = drawn.observations.double()  # (1, T, 1)
    with torch.no_grad(), seeded(filter_seed):
        result = estimate(model, x, None, "fivo", n, threshold=threshold, trace=True)
    trace = result.trace
    mean, variance = model.posterior(x)
    return FilterRun(
        proposal=str(proposal), threshold=threshold, filter_seed=filter_seed, observations=x[0, :, 0].numpy(),
        latents=drawn.latents[0, :, 0].numpy(), mean=mean[0].numpy(), std=variance[0].sqrt().numpy(),
        particles=trace.latents[:, 0, :, 0].numpy(), weights=torch.softmax(trace.log_weights[:, 0], dim=1).numpy(),
        ess=trace.ess[:, 0].numpy(), resampled=trace.resampled[:, 0].numpy(),
        lineages=lineages(trace.ancestors)[:, 0].numpy(), log_p_hat=float(result.log_p_hat[0]),
        exact=float(model.exact_log_likelihood(x)[0]))


def lineage_segments(run: FilterRun) -> tuple[np.ndarray, np.ndarray]:
    """The ancestry tree of the particles that reach the last step, as (x, y) of NaN-separated segments: one
    segment (t, z of the ancestor at t) -> (t + 1, z of its descendant at t + 1) per distinct pair; the
    lines merge going back in time as the resamplings make the survivors share ancestors."""
    xs, ys = [], []
    for t in range(len(run.lineages) - 1):
        for a, b in np.unique(run.lineages[t : t + 2].T, axis=0):  # (ancestor at t, descendant at t + 1)
            xs += [t, t + 1, np.nan]
            ys += [run.particles[t, a], run.particles[t + 1, b], np.nan]
    return np.array(xs, dtype=float), np.array(ys, dtype=float)


def particles_figure(run: FilterRun) -> go.Figure:
    """Traces: "posterior +2σ"/"posterior ±2σ" (the band), "posterior mean", "true z", "observations x",
    "surviving lineages" (`lineage_segments`), "particles" (marker area ∝ normalised weight); a dotted line
    after each step at which the filter resampled."""
    steps = np.arange(len(run.mean))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps, y=run.mean + 2 * run.std, mode="lines", line=dict(width=0),
                             name="posterior +2σ", showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=steps, y=run.mean - 2 * run.std, mode="lines", line=dict(width=0), fill="tonexty",
                             fillcolor=BAND, name="posterior ±2σ", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=steps, y=run.mean, mode="lines", name="posterior mean",
                             line=dict(color=MEAN, width=2)))
    fig.add_trace(go.Scatter(x=steps, y=run.latents, mode="lines", name="true z",
                             line=dict(color=MEAN, width=1, dash="dot")))
    fig.add_trace(go.Scatter(x=steps, y=run.observations, mode="markers", name="observations x",
                             marker=dict(symbol="x", color=OBSERVED, size=8)))
    relative = run.weights / run.weights.max(axis=1, keepdims=True)
    n = run.particles.shape[1]
    fig.add_trace(go.Scatter(x=np.repeat(steps, n), y=run.particles.ravel(), mode="markers", name="particles",
                             marker=dict(size=np.maximum(2.0, MAX_MARKER * np.sqrt(relative.ravel())),
                                         color=PARTICLE, opacity=0.4, line=dict(width=0)),
                             customdata=run.weights.ravel(),
                             hovertemplate="step %{x}<br>z %{y:.3f}<br>weight %{customdata:.3f}<extra></extra>"))
    xs, ys = lineage_segments(run)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="surviving lineages",
                             line=dict(color=LINEAGE, width=1.2), opacity=0.8, hoverinfo="skip"))
    for t in np.flatnonzero(run.resampled):  # between step t's weighing and step t + 1's proposal
        fig.add_vline(x=t + 0.5, line=dict(color=RESAMPLED, width=1.5, dash="dot"), layer="below")
    fig.update_layout(title=f"{n} particles, {run.proposal} proposal; dotted lines: the filter resampled", height=440,
                      margin=dict(l=50, r=10, t=50, b=40), xaxis_title="step t", yaxis_title="z",
                      legend=dict(orientation="h", y=-0.18), plot_bgcolor="white")
    return fig


def ess_figure(run: FilterRun) -> go.Figure:
    """Traces "ESS" (T,), "threshold" (threshold * N at every step), "resampled" (the ESS at the steps that did)."""
    steps, n = np.arange(len(run.ess)), run.particles.shape[1]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps, y=run.ess, mode="lines+markers", name="ESS", line=dict(color=PARTICLE)))
    fig.add_trace(go.Scatter(x=steps, y=np.full(len(steps), run.threshold * n), mode="lines", name="threshold",
                             line=dict(color="black", dash="dash")))
    hit = np.flatnonzero(run.resampled)
    fig.add_trace(go.Scatter(x=hit, y=run.ess[hit], mode="markers", name="resampled",
                             marker=dict(color=LINEAGE, size=11, symbol="circle-open", line=dict(width=2))))
    fig.update_layout(title=f"effective sample size of the weights since the last resampling (of N = {n})",
                      height=300, margin=dict(l=50, r=10, t=50, b=40), xaxis_title="step t", yaxis_title="ESS",
                      yaxis=dict(range=[0, 1.05 * n]), legend=dict(orientation="h", y=-0.3), plot_bgcolor="white")
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
                     steps: float, filter_seed: float | None) -> tuple[go.Figure, go.Figure, str]:
    """The Filter handler: (particles figure, ESS figure, status Markdown); gr.Error for bad input."""
    try:
        run = run_filter(store, proposal, particles, threshold, seed, steps, filter_seed)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    return particles_figure(run), ess_figure(run), status_markdown(run)
