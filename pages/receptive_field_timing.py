"""Naive vs cached generation, timed on this machine as the receptive field grows.

    generation_cost(kernel_size, channels)   (figure, Markdown): median seconds per sample of each, per R
"""

from __future__ import annotations

import time

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch

from core.errors import ConfigError, StudioError
from core.generation import make_stepper
from core.models.wavenet import WaveNet
from pages.checks import is_whole
from pages.receptive_field_controls import LIT, PAD, config_from_controls

COST_LAYERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)  # one exponential stack per point: R = (K-1)(2^n - 1) + 1
COST_SECONDS = 0.1  # time spent timing each (method, R) point
COST_BUDGET = 5.0  # seconds after which no larger R is started (at least 3 points are measured)


def generation_cost(kernel_size: float, channels: float) -> tuple[go.Figure, str]:
    """(figure, Markdown): median seconds per sample of naive and cached generation, timed now, as R grows.

    One random model per point: one exponential stack of n = 1..10 layers with kernel `kernel_size`,
    `channels` wide, 64 levels, batch 1. Each stepper is primed with R tokens (so the naive window is
    full) and then samples for about COST_SECONDS; no larger R is started after COST_BUDGET seconds.
    """
    try:
        if not (is_whole(kernel_size) and 2 <= kernel_size <= 5):
            raise ConfigError(f"kernel size must be a whole number in [2, 5], got {kernel_size!r}")
        if not (is_whole(channels) and 1 <= channels <= 128):
            raise ConfigError(f"channels must be a whole number in [1, 128], got {channels!r}")
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    rows: list[tuple[int, float, float]] = []  # (R, naive, cached seconds per sample)
    deadline = time.perf_counter() + COST_BUDGET
    for n in COST_LAYERS:
        if len(rows) >= 3 and time.perf_counter() > deadline:
            break
        config = config_from_controls(kernel_size, 1, n, "exponential", None, 1, channels, quantization_levels=64)
        torch.manual_seed(0)
        model = WaveNet(config).eval()
        prime = torch.randint(0, 64, (1, config.receptive_field))
        rows.append((config.receptive_field, *(_seconds_per_sample(model, prime, m) for m in ("naive", "cached"))))
    rs = [r for r, _, _ in rows]
    cross = next((r for i, (r, _, _) in enumerate(rows) if all(c < nv for _, nv, c in rows[i:])), None)
    fig = go.Figure()
    for i, (name, colour) in enumerate((("naive", PAD), ("cached", LIT)), start=1):
        fig.add_trace(go.Scatter(x=rs, y=[row[i] * 1e3 for row in rows], mode="lines+markers", name=name,
                                 line=dict(color=colour)))
    if cross is not None:
        fig.add_vline(x=cross, line_dash="dash", annotation_text=f"cached faster from R = {cross}")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=40), xaxis=dict(title="R", type="log"),
                      yaxis=dict(title="ms per sample", type="log"), legend=dict(orientation="h", y=-0.3))
    table = ["| R | naive ms/sample | cached ms/sample | naive ÷ cached |", "|---|---|---|---|"]
    table += [f"| {r:,} | {naive * 1e3:.3f} | {cached * 1e3:.3f} | {naive / cached:.1f}× |"
              for r, naive, cached in rows]
    where = (f"**Crossover: the cached generator is faster from R = {cross:,} on** (every larger R measured)."
             if cross is not None else "The cached generator was not faster at the largest R measured.")
    if len(rows) < len(COST_LAYERS):
        where += f" Stopped at R = {rs[-1]:,} to keep this under ~{COST_BUDGET:g} s."
    md = (f"{where} Measured now on this machine ({torch.get_num_threads()} torch threads), K = {int(kernel_size)}, "
          f"{int(channels)} channels, batch 1. Naive grows with R; cached grows only with the number of layers.\n\n"
          + "\n".join(table))
    return fig, md


def _seconds_per_sample(model: WaveNet, prime: torch.Tensor, method: str) -> float:
    """Median seconds per sampled token over about COST_SECONDS (at least 3 samples, after one to warm up).

    The median, not the mean: on a shared machine a step that was descheduled says nothing about the method.
    """
    stepper = make_stepper(method, model, batch=1, seed=0)
    times = []
    with torch.inference_mode():
        stepper.prime(prime)
        stepper.sample(1)
        end = time.perf_counter() + COST_SECONDS
        while time.perf_counter() < end or len(times) < 3:
            start = time.perf_counter()
            stepper.sample(1)
            times.append(time.perf_counter() - start)
    return float(np.median(times))
