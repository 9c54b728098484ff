"""The receptive-field page's drawings of the graph: the dilated causal graph with one output's cone lit, R in
closed form, input vs layer padding, and the training windows. Plain handlers of the controls:

    receptive_field_diagram(...)   (graph HTML with one output's cone lit, formula Markdown, padding figure);
                                   the graph is receptive_field_svg.diagram_html: hovering an output lights its
                                   cone in the browser
    output_slider(...)             the output-t slider for a new config
    training_window(...)           windows of R + T samples, stride T, loss on the last T (core.data.windows)

The graph and the counts come from core.cone.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core import cone
from core.data.windows import WindowDataset
from core.errors import ConfigError, StudioError
from core.models.wavenet import WaveNetConfig
from pages.checks import is_whole
from pages.receptive_field_controls import (
    FAINT,
    LIT,
    MARGIN,
    PAD,
    TARGET,
    config_from_controls,
    diagram_length,
    escape_markdown,
)
from pages.receptive_field_svg import diagram_html

MAX_OUTPUT_T = 1_000_000  # the output-t slider's bound before the page narrows it to the config's R + MARGIN - 1


def formula_markdown(config: WaveNetConfig, t_out: int) -> str:
    """R in closed form with every level's term, and what the output at t_out sees."""
    r, k = config.receptive_field, config.kernel_size
    parts = cone.contributions(config)
    terms = " + ".join(f"{k - 1}·{c.dilation}" for c in parts[1:])
    lines = [
        f"### R = Σ (K−1)·d + K_in = {terms} + {config.input_kernel_size} = **{r:,}**",
        "",
    ]
    inputs = cone.input_positions(config, t_out)
    lo, hi = t_out - r, t_out - 1
    seen = f"x_{min(inputs)} … x_{max(inputs)}" if inputs else "no input at all"
    holes = (hi - max(lo, 0) + 1) - len(inputs) if inputs else 0
    start = " and the start symbol" if cone.START in cone.cone(config, t_out)[0] else ""
    lines.append(f"The output at **t = {t_out}** (the logits of x_{t_out}) depends on {seen}{start}: "
                 f"{len(inputs):,} inputs" + (f", with **{holes:,} holes** — these dilations do not tile the field"
                                              if holes else "") + ".")
    if t_out < r - 1:
        lines.append(f"It is closer than R − 1 = {r - 1} to the start, so its cone reaches the zero padding (squares).")
    rows = ["| level | kernel | dilation | adds to R | running total |", "|---|---|---|---|---|"]
    total = 0
    for c in parts:
        total += c.samples
        rule = f"K_in = {c.kernel}" if c.name == "input layer" else f"({c.kernel}−1)·{c.dilation}"
        rows.append(f"| {c.name} | {c.kernel} | {c.dilation} | {rule} = {c.samples} | {total} |")
    lines += ["", "<details><summary>Each layer's contribution</summary>", "", *rows, "", "</details>"]
    return escape_markdown("\n".join(lines))


def padding_figure(config: WaveNetConfig, targets: int = 8) -> go.Figure:
    """Input padding (left) vs layer padding (right) for `targets` outputs: what each level holds.

    Layer padding (this library): every conv left-pads its own input with (K-1) d zeros.
    Input padding (the WaveNet paper): R - 1 zeros in front of the shifted input once; each conv is
    "valid" and the sequence shrinks by (K-1) d per level, values in front of t = 0 computed from zeros.
    """
    names = cone.level_names(config)[1:]  # the shifted input s, then each conv's output
    pads = [config.input_kernel_size - 1] + cone.queue_sizes(config)  # the zeros each conv reads in front
    p_total = sum(pads)  # R - 1
    fig = make_subplots(rows=1, cols=2, shared_xaxes=True, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=(f"input padding: {p_total} zeros once", f"layer padding: Σ = {p_total} zeros"))
    rows = ["s (shifted input)", *names]
    bars: list[tuple[int, str, int, int, str]] = []  # (col, row, start, length, kind)
    # Input padding: s has p_total zeros then `targets` real positions; level l keeps all but its first sum pads.
    shrink = 0
    for i, row in enumerate(rows):
        if i:
            shrink += pads[i - 1]
        if p_total - shrink:
            bars.append((1, row, -(p_total - shrink), p_total - shrink, "zeros" if i == 0 else "computed from zeros"))
        bars.append((1, row, 0, targets, "real"))
    # Layer padding: each level is `targets` long; the next conv puts its own zeros in front.
    for i, row in enumerate(rows):
        pad = pads[i] if i < len(pads) else 0
        if pad:
            bars.append((2, row, -pad, pad, "zeros"))
        bars.append((2, row, 0, targets, "real"))
    colours = {"zeros": PAD, "computed from zeros": "#ff9896", "real": TARGET}
    shown = set()
    for col, row, start, n, kind in bars:
        fig.add_trace(go.Bar(x=[n], y=[row], base=[start], orientation="h", marker_color=colours[kind], name=kind,
                             showlegend=kind not in shown, legendgroup=kind,
                             hovertemplate=f"{kind}: t = {start} … {start + n - 1}<extra></extra>"), row=1, col=col)
        shown.add(kind)
    fig.update_layout(barmode="overlay", height=140 + 26 * len(rows), margin=dict(l=10, r=10, t=60, b=30),
                      legend=dict(orientation="h", y=-0.15), bargap=0.35)
    fig.update_xaxes(title_text="t", matches="x")  # one time scale for both panels
    return fig


def receptive_field_diagram(kernel_size: float, stacks: float, layers_per_stack: float, pattern: str,
                            custom_dilations: str | None, input_kernel_size: float,
                            output_t: float | None) -> tuple[str, str, go.Figure]:
    """The diagram handler: (graph HTML, formula Markdown, padding figure).

    The graph is inline SVG with the cone of the output at output_t lit and every output's cone embedded
    (receptive_field_svg.diagram_html).

    output_t: the output whose cone is lit, in [0, R + MARGIN - 1]; None = the newest (R + MARGIN - 1).
    """
    try:
        config = config_from_controls(kernel_size, stacks, layers_per_stack, pattern, custom_dilations,
                                      input_kernel_size)
        last = diagram_length(config) - 1
        if output_t is None:
            output_t = last
        if not (is_whole(output_t) and 0 <= output_t <= last):
            raise ConfigError(f"output t must be a whole number in [0, {last}] (R + {MARGIN} - 1), got {output_t!r}")
        t = int(output_t)
        return diagram_html(config, t), formula_markdown(config, t), padding_figure(config)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e


def output_slider(kernel_size: float, stacks: float, layers_per_stack: float, pattern: str,
                  custom_dilations: str | None, input_kernel_size: float) -> gr.Slider:
    """The output-t slider for a new config: 0 .. R + MARGIN - 1, set to the newest output."""
    try:
        config = config_from_controls(kernel_size, stacks, layers_per_stack, pattern, custom_dilations,
                                      input_kernel_size)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    last = diagram_length(config) - 1
    return gr.Slider(maximum=last, value=last)


def training_window(kernel_size: float, stacks: float, layers_per_stack: float, pattern: str,
                    custom_dilations: str | None, input_kernel_size: float, targets: float) -> tuple[go.Figure, str]:
    """(figure, Markdown): the first windows core.data.windows cuts, R + T long, stride T, loss on the last T."""
    try:
        config = config_from_controls(kernel_size, stacks, layers_per_stack, pattern, custom_dilations,
                                      input_kernel_size)
        if not (is_whole(targets) and targets >= 1):
            raise ConfigError(f"targets T must be a whole number >= 1, got {targets!r}")
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    r, t = config.receptive_field, int(targets)
    n_windows = 3
    positions = np.arange(r + n_windows * t)  # a sequence whose tokens are their own positions
    windows = WindowDataset([positions], r, t, random_offset=False)
    fig = go.Figure()
    for i in range(n_windows):
        w = windows[i].numpy()
        start, score = int(w[0]), int(w[windows.score_from])
        name = f"window {i + 1}"
        fig.add_trace(go.Bar(y=[name], x=[score - start], base=[start], orientation="h", marker_color=FAINT,
                             name="context (R, not scored)", showlegend=i == 0, legendgroup="context",
                             hovertemplate=f"context x_{start} … x_{score - 1}<extra></extra>"))
        fig.add_trace(go.Bar(y=[name], x=[int(w[-1]) + 1 - score], base=[score], orientation="h",
                             marker_color=LIT, name="targets (T, scored)", showlegend=i == 0, legendgroup="targets",
                             hovertemplate=f"targets x_{score} … x_{int(w[-1])}<extra></extra>"))
    fig.update_layout(barmode="overlay", height=240, margin=dict(l=10, r=10, t=40, b=40), xaxis_title="position",
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.35))
    md = (f"Each training window holds **R + T = {r:,} + {t:,} = {r + t:,}** samples, windows start every "
          f"**T = {t:,}** (so consecutive windows overlap by exactly R), and the loss uses only the **last T**: "
          f"the logits there see R real samples, never the zeros in front of the window, so a target's loss "
          f"does not depend on where the window was cut. {r / (r + t):.0%} of each window is context only.")
    return fig, md
