"""The receptive-field page: how far back a WaveNet sees, why dilations make that cheap, and what it costs.

Every section is a plain handler of the controls (kernel size K, stacks, layers per stack, dilation
pattern, custom dilations, input kernel size K_in), testable without a browser:

    receptive_field_diagram(...)   the graph (levels x time) with one output's cone lit, the formula, padding
    stack_costs(...)               parameters of the dilated stack vs one plain conv; the generator's queues
    training_window(...)           windows of R + T samples, stride T, loss on the last T (core.data.windows)
    measure_receptive_field(...)   |d logits_t / d x_{t-j}| against j for a loaded (or random) model
    generation_cost(...)           naive vs cached generation timed on this machine as R grows

The graph and the counts come from core.cone; the measurements run the real model and generators.
"""

from __future__ import annotations

import time
from functools import partial

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from core import cone as graph
from core.data.windows import WindowDataset
from core.errors import ConfigError, StudioError
from core.generation import make_stepper
from core.model_store import ModelStore
from core.models.wavenet import WaveNet, WaveNetConfig
from core.receptive_field import input_gradient
from pages.checks import is_whole

MARGIN = 4  # the diagram shows positions 0 .. R + MARGIN - 1: the newest output's whole cone, and some room
MAX_DIAGRAM_R = 2100  # wider than this the graph is not drawn (the numbers still are)
MAX_BACKGROUND = 6000  # nodes (and edges) of the whole graph drawn faintly behind the cone, at most
MAX_MEASURE_R = 8192  # receptive field of a random model the measurement builds, at most
RANDOM = "random"  # the model choice that builds a random model from the controls
GRADIENT_SEEDS = 4  # random input sequences the measured gradient is averaged over
EFFECTIVE_MASS = 0.9  # the effective field: the last J lags holding this share of the gradient
COST_LAYERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)  # one exponential stack per point: R = (K-1)(2^n - 1) + 1
COST_SECONDS = 0.1  # time spent timing each (method, R) point
COST_BUDGET = 5.0  # seconds after which no larger R is started (at least 3 points are measured)
LIT, FAINT, PAD, TARGET = "#d62728", "#c7c7c7", "#7f7f7f", "#1f77b4"


def config_from_controls(kernel_size: float, stacks: float, layers_per_stack: float, pattern: str,
                         custom_dilations: str | None, input_kernel_size: float, channels: float = 64,
                         quantization_levels: int = 256) -> WaveNetConfig:
    """The WaveNetConfig the controls describe (ConfigError naming the control that is wrong).

    channels sets C_res = C_dil, and C_skip = C_head = 2 * channels.
    """
    for name, value, low in (("kernel size", kernel_size, 2), ("stacks", stacks, 1),
                             ("layers per stack", layers_per_stack, 1), ("input kernel size", input_kernel_size, 1),
                             ("channels", channels, 1)):
        if not (is_whole(value) and value >= low):
            raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
    dilations = graph.dilations_for(pattern, int(layers_per_stack), int(stacks), custom_dilations)
    c = int(channels)
    return WaveNetConfig(quantization_levels=quantization_levels, dilations=dilations, kernel_size=int(kernel_size),
                         input_kernel_size=int(input_kernel_size), residual_channels=c, dilation_channels=c,
                         skip_channels=2 * c, head_channels=2 * c, codec="none", sample_rate=0)


# -- the graph and its cone ------------------------------------------------------------------


def diagram_length(config: WaveNetConfig) -> int:
    """Positions 0 .. T-1 the diagram shows: T = R + MARGIN."""
    return config.receptive_field + MARGIN


def cone_figure(config: WaveNetConfig, t_out: int) -> go.Figure:
    """The dilated causal graph, levels (rows) x time (columns), with the cone of the output at t_out lit.

    Trace names: "graph" (faint edges), "nodes" (faint nodes), "cone edges", "cone" (lit nodes, x = position,
    y = level, level 0 = inputs), "start symbol", "padding" (zero padding the cone reaches), "output", "target".
    """
    r, names = config.receptive_field, graph.level_names(config)
    length = diagram_length(config)
    top = len(names) - 1
    fig = go.Figure()
    if r > MAX_DIAGRAM_R:
        fig.add_annotation(text=f"R = {r:,}: too wide to draw (at most {MAX_DIAGRAM_R:,}); the numbers below hold",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_layout(height=200, xaxis_visible=False, yaxis_visible=False)
        return fig
    edges = graph.dependency_graph(config, length)
    lit = graph.cone(config, t_out, padding=True)
    if (top + 1) * length <= MAX_BACKGROUND:
        segments = [(s, level, t, level + 1) for level, es in enumerate(edges) for s, t in es]
        fig.add_trace(_lines(segments, "graph", FAINT, 0.6))
        xs = [t for level in range(top + 1) for t in range(graph.first_real(level), length)]
        ys = [level for level in range(top + 1) for _ in range(graph.first_real(level), length)]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="nodes", hoverinfo="skip",
                                 marker=dict(color=FAINT, size=5), showlegend=False))
    lit_segments = [(p, level - 1, t, level) for level in range(1, top + 1) for t in lit[level]
                    if t >= graph.first_real(level) for p in graph.parents(config, level, t)]
    fig.add_trace(_lines(lit_segments, "cone edges", LIT, 1.2))
    real = [(t, level) for level, s in enumerate(lit) for t in sorted(s) if t >= 0]
    fig.add_trace(go.Scatter(
        x=[t for t, _ in real], y=[level for _, level in real], mode="markers", name="cone",
        marker=dict(color=LIT, size=7), customdata=[names[level] for _, level in real],
        hovertemplate="%{customdata}<br>t = %{x}<extra>in the cone</extra>",
    ))
    pads = [(t, level) for level, s in enumerate(lit) for t in s if t < graph.first_real(level)]
    if pads:
        fig.add_trace(go.Scatter(x=[t for t, _ in pads], y=[level for _, level in pads], mode="markers",
                                 name="zero padding", marker=dict(symbol="square-open", color=PAD, size=8),
                                 hovertemplate="padding (a zero) at t = %{x}<extra></extra>"))
    start_lit = graph.START in lit[0]
    fig.add_trace(go.Scatter(x=[graph.START], y=[0], mode="markers+text", name="start symbol", text=["START"],
                             textposition="bottom center", hovertemplate="the start symbol s_0<extra></extra>",
                             marker=dict(symbol="diamond", size=10, color=LIT if start_lit else FAINT)))
    fig.add_trace(go.Scatter(x=[t_out], y=[top], mode="markers", name=f"output at t = {t_out}",
                             marker=dict(symbol="star", size=16, color=LIT, line=dict(color="black", width=1)),
                             hovertemplate="logits of x_%{x}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[t_out], y=[0], mode="markers", name=f"target x_{t_out} (never seen)",
                             marker=dict(symbol="circle-open", size=14, color=TARGET, line=dict(width=2)),
                             hovertemplate="x_%{x}: what the output predicts<extra></extra>"))
    lowest = min([graph.START, *[t for t, _ in pads]])
    fig.update_layout(
        height=160 + 32 * (top + 1), margin=dict(l=10, r=10, t=60, b=40),
        xaxis=dict(title="time t", range=[lowest - 1, length], zeroline=False),
        yaxis=dict(tickvals=list(range(top + 1)), ticktext=names, range=[-0.7, top + 0.5], zeroline=False),
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0), hovermode="closest",
    )
    return fig


def formula_markdown(config: WaveNetConfig, t_out: int) -> str:
    """R in closed form with every level's term, and what the output at t_out sees."""
    r, k = config.receptive_field, config.kernel_size
    parts = graph.contributions(config)
    terms = " + ".join(f"{k - 1}·{c.dilation}" for c in parts[1:])
    lines = [
        f"### R = Σ (K−1)·d + K_in = {terms} + {config.input_kernel_size} = **{r:,}**",
        "",
    ]
    inputs = graph.input_positions(config, t_out)
    lo, hi = t_out - r, t_out - 1
    seen = f"x_{min(inputs)} … x_{max(inputs)}" if inputs else "no input at all"
    holes = (hi - max(lo, 0) + 1) - len(inputs) if inputs else 0
    start = " and the start symbol" if graph.START in graph.cone(config, t_out)[0] else ""
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
    return _markdown("\n".join(lines))


def padding_figure(config: WaveNetConfig, targets: int = 8) -> go.Figure:
    """Input padding (left) vs layer padding (right) for `targets` outputs: what each level holds.

    Layer padding (this library): every conv left-pads its own input with (K-1) d zeros.
    Input padding (the WaveNet paper): R - 1 zeros in front of the shifted input once; each conv is
    "valid" and the sequence shrinks by (K-1) d per level, values in front of t = 0 computed from zeros.
    """
    names = graph.level_names(config)[1:]  # the shifted input s, then each conv's output
    pads = [config.input_kernel_size - 1] + graph.queue_sizes(config)  # the zeros each conv reads in front
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
                            output_t: float | None) -> tuple[go.Figure, str, go.Figure]:
    """The diagram handler: (cone figure, formula Markdown, padding figure).

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
        return cone_figure(config, t), formula_markdown(config, t), padding_figure(config)
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


# -- parameters and queues --------------------------------------------------------------------


def stack_costs(kernel_size: float, stacks: float, layers_per_stack: float, pattern: str,
                custom_dilations: str | None, input_kernel_size: float, channels: float,
                batch: float) -> tuple[str, str]:
    """(parameters Markdown, queues Markdown) for the controls' config at `channels` and `batch`."""
    try:
        config = config_from_controls(kernel_size, stacks, layers_per_stack, pattern, custom_dilations,
                                      input_kernel_size, channels)
        if not (is_whole(batch) and batch >= 1):
            raise ConfigError(f"batch must be a whole number >= 1, got {batch!r}")
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    return parameters_markdown(config), queues_markdown(config, int(batch))


def parameters_markdown(config: WaveNetConfig) -> str:
    """Taps per channel pair and real parameter counts: the dilated stack vs one plain causal conv."""
    taps, params = graph.tap_counts(config), graph.conv_parameters(config)
    k, n = config.kernel_size, len(config.dilations)
    c, c2 = config.residual_channels, 2 * config.dilation_channels
    return _markdown("\n".join([
        f"**Weights per channel pair:** the dilated stack has {k} × {n} = **{taps.dilated:,}** "
        f"(+ {taps.input} in the input layer); one plain causal conv that sees as far back needs R = "
        f"**{taps.plain:,}** — {taps.plain / taps.dilated:,.1f}× more. (The talk's example: K = 2, nine layers "
        "1 … 256, R = 512: 18 vs 512.)",
        "",
        f"**With channels** (C_res = {c} in, 2·C_dil = {c2} out, weights + biases): the dilated convs hold "
        f"**{params.dilated:,}** parameters, a plain conv of width R would hold **{params.plain:,}**. "
        f"The whole WaveNet at these widths (Q = {config.quantization_levels}, skip = head = "
        f"{config.skip_channels}) has {graph.model_parameters(config):,} parameters.",
    ]))


def queues_markdown(config: WaveNetConfig, batch: int) -> str:
    """The cached generator's ring buffers per layer, their memory, and the work per sample."""
    sizes = graph.queue_sizes(config)
    c = config.residual_channels
    naive, cached = graph.layer_evaluations(config)
    memory = graph.queue_memory(config, batch)
    lines = [
        f"The cached generator (Paine et al. 2016; `CachedStepper` in core/generation) keeps, per layer, a ring of its "
        f"last (K−1)·d inputs, each (B, C_res) = ({batch}, {c}) float32. Together **{sum(sizes):,} slots = "
        f"R − K_in**, **{_bytes(memory)}** (with the (B, K_in) input tokens). The naive generator keeps no state "
        f"but reruns the stack over the last R + 1 = {config.receptive_field + 1:,} positions for every sample: "
        f"{naive:,} layer evaluations per sample against {cached:,} — {naive // cached:,}× the work.",
        "",
        "| layer | dilation | slots (K−1)·d | memory |",
        "|---|---|---|---|",
    ]
    lines += [f"| {i + 1} | {d} | {s} | {_bytes(s * batch * c * 4)} |"
              for i, (d, s) in enumerate(zip(config.dilations, sizes, strict=True))]
    return _markdown("\n".join(lines))


# -- training windows --------------------------------------------------------------------------


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


# -- measured receptive field -----------------------------------------------------------------


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
    cone_lags = {t - j for j in graph.input_positions(config, t)}
    measured = {int(j) for j in lags[g > 0]}
    paths = graph.path_counts(config, t)
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
        fig.add_vline(x=effective + 0.5, line_dash="dash", line_color="black",
                      annotation_text=f"{EFFECTIVE_MASS:.0%} of the gradient", annotation_position="top right")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=40), xaxis_title="lag j (input x_{t-j})",
                      yaxis=dict(title="relative magnitude", type="log"), legend=dict(orientation="h", y=-0.3))
    agree = "equals" if measured == cone_lags else "**differs from**"
    md = (f"**{label}**: the set of lags with a nonzero gradient ({min(measured, default=0)} … "
          f"{max(measured, default=0)}, {len(measured):,} lags) {agree} the analytic cone (1 … R = {r:,}, "
          f"shaded). But **{EFFECTIVE_MASS:.0%} of the gradient comes from the last {effective:,} samples** — "
          f"{effective / r:.1%} of R: the effective receptive field is much narrower than the analytic one. "
          f"Averaged over {GRADIENT_SEEDS} random input sequences at t = {t}.")
    return fig, _markdown(md)


# -- naive vs cached generation ---------------------------------------------------------------


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


# -- the page -----------------------------------------------------------------------------------


def build(store: ModelStore) -> None:
    """Lay out the receptive-field page inside the current Blocks context and wire its events."""
    defaults = dict(kernel_size=2, stacks=1, layers_per_stack=4, pattern="exponential", custom_dilations="1, 2, 4, 8",
                    input_kernel_size=1)
    config = config_from_controls(**defaults)
    last = diagram_length(config) - 1
    first_cone, first_formula, first_padding = receptive_field_diagram(*defaults.values(), last)
    gr.Markdown("## Receptive field\nHow far back a WaveNet sees: each dilated causal conv layer adds (K−1)·d "
                "samples, so the field grows exponentially with depth while the weights grow linearly. Change the "
                "stack and pick an output: its cone lights up down to the inputs it depends on.")
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            kernel = gr.Slider(2, 5, value=defaults["kernel_size"], step=1, label="kernel size K")
            stacks = gr.Slider(1, 4, value=defaults["stacks"], step=1, label="stacks")
            layers = gr.Slider(1, 10, value=defaults["layers_per_stack"], step=1, label="layers per stack")
            pattern = gr.Radio(list(graph.PATTERNS), value=defaults["pattern"], label="dilation pattern",
                               info="exponential 1, 2, 4, …; linear 1, 2, 3, …; constant 1, 1, …")
            custom = gr.Textbox(defaults["custom_dilations"], label="custom dilations",
                                info="one stack, repeated `stacks` times; used when the pattern is custom "
                                     "(Enter to apply)")
            k_in = gr.Slider(1, 5, value=defaults["input_kernel_size"], step=1, label="input kernel size K_in")
        with gr.Column(scale=3):
            formula = gr.Markdown(first_formula, elem_id="rf-formula")
            # Built as wide as any drawable diagram, so API calls may ask for any output; narrowed on page load.
            output_t = gr.Slider(0, MAX_DIAGRAM_R + MARGIN - 1, value=last, step=1, label="output t",
                                 info="whose cone to light up; below R − 1 the cone reaches the padding")
            cone_plot = gr.Plot(first_cone, label="dilated causal convolution graph (levels × time)")
    config_inputs = [kernel, stacks, layers, pattern, custom, k_in]

    gr.Markdown("### Parameters: dilated stack vs one plain causal convolution")
    channels = gr.Slider(1, 256, value=64, step=1, label="channels (C_res = C_dil)")
    params_md, queues_first = stack_costs(*defaults.values(), 64, 1)
    parameters = gr.Markdown(params_md)

    gr.Markdown("### Measured receptive field\nThe gradient of the logits at t with respect to the input at t − j, "
                "against j, over the analytic cone (shaded). Nonzero exactly on the cone — yet most of it sits at "
                "the smallest lags.")
    choices = wavenet_choices(store)
    with gr.Row():
        model = gr.Dropdown(choices, value=RANDOM, label="model", scale=5, allow_custom_value=True)
        refresh = gr.Button("↻", scale=0, min_width=40)
        measure = gr.Button("Measure", variant="primary", scale=1)
    measured_md = gr.Markdown("Measuring the random model…")
    measured_plot = gr.Plot(label="|d logits_t / d x_{t−j}| against j")

    gr.Markdown("### Training windows")
    targets = gr.Slider(1, 2048, value=16, step=1, label="targets T per window")
    first_window, first_window_md = training_window(*defaults.values(), 16)
    window_md = gr.Markdown(first_window_md)
    window_plot = gr.Plot(first_window, label="the first windows of a sequence")

    gr.Markdown("### Input padding vs layer padding\nBoth put R − 1 zeros in front in total. Input padding does it "
                "once, in front of the input, and every conv shrinks the sequence; the values in front of t = 0 are "
                "then computed from zeros (not zero themselves). Layer padding — what this library does — pads every "
                "conv's input with its own (K−1)·d zeros, so each level keeps length T and the cached generator's "
                "queues can start as exactly those zeros. The two agree from t = R − 1 on, where no cone reaches "
                "padding.")
    padding_plot = gr.Plot(first_padding, label="each level's 8 outputs and the zeros the next conv reads in front")

    gr.Markdown("### Fast generation: the queues")
    batch = gr.Slider(1, 64, value=1, step=1, label="batch B")
    queues = gr.Markdown(queues_first)
    cost_button = gr.Button("Time naive vs cached generation on this machine")
    cost_md = gr.Markdown()
    cost_plot = gr.Plot(label="seconds per sample as R grows", visible=False)  # shown by the first run

    gr.on(None, lambda: gr.Slider(maximum=last, value=last), None, output_t, api_visibility="private",
          show_progress="hidden")  # inputs None: on page load only
    changed = gr.on([c.change for c in (kernel, stacks, layers, pattern, k_in)] + [custom.submit, custom.blur],
                    output_slider, config_inputs, output_t, api_visibility="private", trigger_mode="always_last",
                    show_progress="hidden")
    changed.success(receptive_field_diagram, [*config_inputs, output_t], [cone_plot, formula, padding_plot],
                    api_name="receptive_field_diagram", show_progress="hidden").success(
        stack_costs, [*config_inputs, channels, batch], [parameters, queues], api_name="stack_costs",
        show_progress="hidden").success(
        training_window, [*config_inputs, targets], [window_plot, window_md], api_name="training_window",
        show_progress="hidden")
    output_t.input(receptive_field_diagram, [*config_inputs, output_t], [cone_plot, formula, padding_plot],
                   api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    gr.on([channels.change, batch.change], stack_costs, [*config_inputs, channels, batch], [parameters, queues],
          api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    targets.change(training_window, [*config_inputs, targets], [window_plot, window_md], api_visibility="private",
                   trigger_mode="always_last", show_progress="hidden")
    measure.click(partial(measure_receptive_field, store), [model, *config_inputs], [measured_plot, measured_md],
                  api_name="measure_receptive_field")
    gr.on(None, partial(measure_receptive_field, store, RANDOM, *defaults.values()), None,
          [measured_plot, measured_md], api_visibility="private")  # on page load: the default random model
    refresh.click(lambda current: gr.Dropdown(choices=wavenet_choices(store), value=current), model, model,
                  api_visibility="private")
    cost_button.click(lambda: gr.Plot(visible=True), None, cost_plot, api_visibility="private").then(
        generation_cost, [kernel, channels], [cost_plot, cost_md], api_name="generation_cost",
        concurrency_limit=1)  # timings taken side by side would disturb each other


def _lines(segments: list[tuple[int, int, int, int]], name: str, colour: str, width: float) -> go.Scatter:
    """One trace of line segments (x0, y0, x1, y1), separated by gaps."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for x0, y0, x1, y1 in segments:
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    return go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip", showlegend=name != "graph",
                      line=dict(color=colour, width=width))


def _markdown(text: str) -> str:
    """Underscores escaped, so "K_in ... C_res" reads as written instead of turning italic."""
    return text.replace("_", "\\_")


def _bytes(n: int) -> str:
    """1536 -> "1.5 KiB"."""
    if n < 1024:
        return f"{n:,} B"
    return f"{n / 1024:,.1f} KiB" if n < 1024**2 else f"{n / 1024**2:,.1f} MiB"
