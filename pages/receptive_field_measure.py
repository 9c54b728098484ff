"""The measured receptive field: |d logits_t / d x_{t-j}| against the lag j for a loaded (or random) WaveNet.

    measure_receptive_field(store, model, ...)   (figure, Markdown): the gradient over the analytic cone
    wavenet_choices(store)                       the model dropdown: a random model, then the store's WaveNets
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch

from core import cone
from core.errors import ConfigError, StudioError
from core.model_store import ModelStore
from core.models.wavenet import WaveNet
from core.receptive_field import input_gradient
from pages.figures import NEUTRAL
from pages.receptive_field_controls import LIT, MARGIN, TARGET, config_from_controls, escape_markdown

MAX_MEASURE_R = 8192  # receptive field of a random model the measurement builds, at most
RANDOM = "random"  # the model choice that builds a random model from the controls
GRADIENT_SEEDS = 4  # random input sequences the measured gradient is averaged over
EFFECTIVE_MASS = 0.9  # the effective field: the last J lags holding this share of the gradient


def wavenet_choices(store: ModelStore) -> list[tuple[str, str]]:
    """Dropdown choices: a random model built from the controls, then the store's WaveNets."""
    found = [(f"{m['name']} (R = {m['receptive_field']:,})", m["path"])
             for m in store.list_models() if m["model_type"] == "wavenet"]
    return [("random model from the controls", RANDOM), *found]


def measure_receptive_field(store: ModelStore, model: str | None, kernel_size: float, stacks: float,
                            layers_per_stack: float, pattern: str, custom_dilations: str | None,
                            input_kernel_size: float) -> tuple[go.Figure, str]:
    """(figure, Markdown): mean |d logits_t / d onehot(x_{t-j})| against the lag j, over the analytic cone.

    `model` is a listed checkpoint path, or RANDOM for a random (seed 0) model built from the controls
    with 16 channels and 32 levels. The gradient is averaged over GRADIENT_SEEDS random input sequences
    at t = R + 4, where neither the start symbol nor padding is in reach.
    """
    try:
        if not model:
            raise ConfigError("choose a model first")
        if model == RANDOM:
            config = config_from_controls(kernel_size, stacks, layers_per_stack, pattern, custom_dilations,
                                          input_kernel_size, channels=16, quantization_levels=32)
            if config.receptive_field > MAX_MEASURE_R:
                raise ConfigError(f"R = {config.receptive_field:,} is too large to measure here "
                                  f"(at most {MAX_MEASURE_R:,}); use fewer layers or smaller dilations")
            torch.manual_seed(0)
            net, label = WaveNet(config).eval(), "a random model from the controls"
        else:
            net = store.get(model)
            if not isinstance(net, WaveNet):
                raise ConfigError(f"{model} is not a WaveNet; choose a WaveNet checkpoint")
            label = next((name for name, path in wavenet_choices(store) if path == model), model)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    config = net.config
    r = config.receptive_field
    t = r + MARGIN
    length = t + 3
    grad = torch.stack([input_gradient(net, t, length=length, seed=s) for s in range(GRADIENT_SEEDS)]).mean(0)
    lags = t - np.arange(length)  # lag j of input position t - j
    g = grad.numpy().astype(np.float64)
    cone_lags = {t - j for j in cone.input_positions(config, t)}
    measured = {int(j) for j in lags[g > 0]}
    paths = cone.path_counts(config, t)
    path_curve = np.array([paths.get(t - j, 0) for j in lags], dtype=np.float64)

    inside = g[(lags >= 1) & (lags <= r)][::-1]  # lags 1 .. R, nearest first
    share = np.cumsum(inside) / inside.sum() if inside.sum() > 0 else np.zeros_like(inside)
    effective = int(np.searchsorted(share, EFFECTIVE_MASS) + 1) if inside.sum() > 0 else 0

    fig = go.Figure()
    fig.add_vrect(x0=0.5, x1=r + 0.5, fillcolor="#fde0dd", opacity=0.5, line_width=0, layer="below")
    peak = g.max() if g.max() > 0 else 1.0
    fig.add_trace(go.Scatter(x=lags, y=g / peak, mode="lines", name="|gradient| (÷ max)", line=dict(color=TARGET)))
    if path_curve.max() > 0:
        fig.add_trace(go.Scatter(x=lags, y=path_curve / path_curve.max(), mode="lines", name="paths through the taps "
                                 "(÷ max)", line=dict(color=LIT, dash="dot")))
    if effective:
        fig.add_vline(x=effective + 0.5, line_dash="dash", line_color=NEUTRAL,
                      annotation_text=f"{EFFECTIVE_MASS:.0%} of the gradient", annotation_position="top right")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=40), xaxis_title="lag j (input x_{t-j})",
                      yaxis=dict(title="relative magnitude", type="log"), legend=dict(orientation="h", y=-0.3))
    agree = "equals" if measured == cone_lags else "**differs from**"
    md = (f"**{label}**: the set of lags with a nonzero gradient ({min(measured, default=0)} … "
          f"{max(measured, default=0)}, {len(measured):,} lags) {agree} the analytic cone (1 … R = {r:,}, "
          f"shaded). But **{EFFECTIVE_MASS:.0%} of the gradient comes from the last {effective:,} samples** — "
          f"{effective / r:.1%} of R: the effective receptive field is much narrower than the analytic one. "
          f"Averaged over {GRADIENT_SEEDS} random input sequences at t = {t}.")
    return fig, escape_markdown(md)
