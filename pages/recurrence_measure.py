"""The measured view of the recurrence page: |d loss_t / d input| against how far back the input lies, by autograd.

    wayback_choices(store)                       the checkbox choices: the store's wayback-family checkpoints
    measure_gradient_reach(store, paths, wrt)    (figure, Markdown): one curve per chosen checkpoint, log time axis
"""

from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go

from core.errors import ConfigError, StudioError
from core.gradient_reach import lag_gradients
from core.model_store import ModelStore
from core.models.wayback import Wayback

MAX_MEASURE_STEPS = 384  # steps the measurement runs, at most: a few seconds on a CPU for the seed's sizes
MAX_MODELS = 4
WRT = {"input": "the input embedding", "layers": "each layer's states"}
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def wayback_choices(store: ModelStore) -> list[tuple[str, str]]:
    """(label, path) for every wayback-family checkpoint the store lists, e.g. 'tiny-stack (stack, span 5 x 1)'."""
    out = []
    for m in store.list_models():
        if m["model_type"] == "wayback":
            c = m["config"]
            out.append((f"{m['name']} ({c.get('layout')}, boundaries {c.get('boundaries')}, "
                        f"periods {c.get('periods')})", m["path"]))
    return out


def measured_steps(model: Wayback) -> int:
    """Steps the measurement runs: two of the model's segments, so the loss at the last step has a whole segment
    behind it and the cut before it shows. Where that is over MAX_MEASURE_STEPS: the most whole blocks of the
    longest span that fits (spans nest, so the last step ends a block of every layer up to it), else the maximum."""
    spans = model.schedule.spans
    if 2 * spans[-1] <= MAX_MEASURE_STEPS:
        return 2 * spans[-1]
    fitting = [span for span in spans if span <= MAX_MEASURE_STEPS]
    return MAX_MEASURE_STEPS - MAX_MEASURE_STEPS % fitting[-1] if fitting else MAX_MEASURE_STEPS


def measure_gradient_reach(store: ModelStore, paths: list[str] | None, wrt: str = "input") -> tuple[go.Figure, str]:
    """(figure, Markdown): per chosen checkpoint, the norm of d loss_t / d (input embedding or layer state) against
    the samples back from the loss, on log axes; exact zeros are left out of the log plot and reported in words."""
    try:
        if not paths:
            raise ConfigError("choose at least one wayback checkpoint (train one with a configs/wayback_*.json)")
        if len(paths) > MAX_MODELS:
            raise ConfigError(f"choose at most {MAX_MODELS} checkpoints at once, got {len(paths)}")
        if wrt not in WRT:
            raise ConfigError(f"wrt must be one of {list(WRT)}, got {wrt!r}")
        names = {m["path"]: m["name"] for m in store.list_models() if m["model_type"] == "wayback"}
        models = []
        for path in paths:
            net = store.get(path)
            if not isinstance(net, Wayback):
                raise ConfigError(f"{path} is not a wayback-family model; choose one of the listed checkpoints")
            models.append((names.get(path, path), net))
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    fig = go.Figure()
    lines = []
    for n, (name, net) in enumerate(models):
        steps = measured_steps(net)
        lag = lag_gradients(net, steps)
        c, colour = net.config.chunk_size, COLOURS[n % len(COLOURS)]
        back = lag.samples_back.tolist()
        norms = lag.input.tolist()
        reached = [b for b, g in zip(back, norms, strict=True) if g > 0]
        fig.add_trace(go.Scatter(x=back, y=norms, mode="lines+markers", name=f"{name} · input",
                                 line=dict(color=colour), marker=dict(size=4)))
        if wrt == "layers":
            for i, grads in enumerate(lag.layers):
                xs = [(lag.loss_step - s + 1) * c for s in grads]
                fig.add_trace(go.Scatter(x=xs, y=list(grads.values()), mode="lines", name=f"{name} · layer {i}",
                                         line=dict(color=colour, dash=["dot", "dash", "dashdot", "longdash"][i % 4])))
        span = net.schedule.longest_span_samples
        fig.add_vline(x=span + 0.5, line_dash="dash", line_color=colour, line_width=1)  # the longest span
        farthest = [max(((lag.loss_step - s + 1) * c for s, g in grads.items() if g > 0), default=0)
                    for grads in lag.layers]
        layer_reach = ", ".join(f"layer {i} {far:,}" for i, far in enumerate(farthest))
        lines.append(f"- **{name}** ({net.config.layout}): the loss at step {lag.loss_step} (of steps 0 – {steps - 1}, "
                     f"chunk size {c}) reaches the input up to **{max(reached, default=0):,} samples back** and "
                     f"is exactly zero beyond; its layers' states up to {layer_reach} samples back. Longest "
                     f"gradient span by the schedule: {span:,} samples"
                     + (f" ({net.schedule.segment_steps:,} steps: more than the {steps} measured here)."
                        if steps < net.schedule.segment_steps else "."))
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=40),
                      xaxis=dict(title="samples back from the loss (log)", type="log"),
                      yaxis=dict(title=f"|d loss_t / d {WRT[wrt]}| (log)", type="log"),
                      legend=dict(orientation="h", y=-0.25))
    text = ("The gradient of one step's loss (the NLL of its chunk, random input, from a stream's start) with "
            "respect to " + WRT[wrt] + ", by autograd. Zeros (cut by truncation) do not show on a log axis; a "
            "thin dashed line in a model's colour marks its longest gradient span.\n\n"
            + "\n".join(lines))
    return fig, text.replace("_", "\\_")
