"""The Music tab's figures: pianorolls with the prefix told apart, and the true sequence's bound per frame.

    pianoroll_figure(prefix, truth, samples, title)    one row per roll (the truth, then each sample): the
                                                       prefix in grey, the continuation in colour, a line between
    bound_figure(bound, baseline, prefix_length, title) FIVO's share of log p-hat per frame against the
                                                       independent-keys baseline, the continuation shaded
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.data.pianorolls import LOWEST_MIDI
from pages.figures import NEUTRAL

PREFIX, TRUTH, SAMPLE = "#8c8c8c", "#2ca02c", "#1f77b4"
KEY_MARGIN = 2  # keys shown below the lowest and above the highest sounding one
ROW_HEIGHT = 170
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(midi: int) -> str:
    """MIDI note number -> its name with octave, e.g. 60 -> 'C4', 21 -> 'A0'."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def key_range(rolls: list[np.ndarray]) -> tuple[int, int]:
    """(first, last) key index to show: every sounding key of `rolls` (each (T, 88)) with a margin; all if silent."""
    keys = np.concatenate([np.flatnonzero(np.asarray(r).reshape(-1, r.shape[-1]).max(0, initial=0) > 0.5)
                           for r in rolls])
    width = rolls[0].shape[-1]
    if not len(keys):
        return 0, width - 1
    return max(0, int(keys.min()) - KEY_MARGIN), min(width - 1, int(keys.max()) + KEY_MARGIN)


def _heatmap(roll: np.ndarray, start: int, keys: tuple[int, int], name: str, colour: str,
             legend: bool) -> go.Heatmap:
    """roll (T, 88) drawn from frame `start`: sounding keys in `colour`, silence transparent."""
    low, high = keys
    return go.Heatmap(z=roll[:, low : high + 1].T, x=start + np.arange(len(roll)),
                      y=LOWEST_MIDI + np.arange(low, high + 1), zmin=0, zmax=1, showscale=False, name=name,
                      colorscale=[[0, "rgba(255, 255, 255, 0)"], [1, colour]], hoverongaps=False,
                      legendgroup=name, showlegend=legend, xgap=1,
                      hovertemplate=f"{name}<br>frame %{{x}}<br>MIDI note %{{y}}<extra></extra>")


def pianoroll_figure(prefix: np.ndarray, truth: np.ndarray, samples: np.ndarray, title: str) -> go.Figure:
    """Rows: the true continuation, then each sample (N, S, 88), every one after the same prefix (P, 88).

    Traces: "prefix" (one per row, one legend entry), "true continuation", "sample 1", ...; a dashed
    line at the prefix's end (P - 0.5) when P > 0.
    """
    names = ["true continuation", *[f"sample {i + 1}" for i in range(len(samples))]]
    rows = [truth, *samples]
    keys = key_range([prefix, *rows]) if len(prefix) else key_range(rows)
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.04, subplot_titles=names)
    for row, (name, roll) in enumerate(zip(names, rows, strict=True), start=1):
        if len(prefix):
            fig.add_trace(_heatmap(prefix, 0, keys, "prefix", PREFIX, row == 1), row=row, col=1)
        fig.add_trace(_heatmap(roll, len(prefix), keys, name, TRUTH if row == 1 else SAMPLE, True), row=row, col=1)
    if len(prefix):
        fig.add_vline(x=len(prefix) - 0.5, line=dict(color=NEUTRAL, dash="dash", width=1.5), row="all", col=1)
    ticks = [m for m in range(LOWEST_MIDI + keys[0], LOWEST_MIDI + keys[1] + 1) if m % 12 == 0]  # the Cs
    fig.update_yaxes(tickvals=ticks, ticktext=[note_name(m) for m in ticks], title_text="key")
    fig.update_xaxes(title_text="frame (beat)", row=len(rows), col=1)
    fig.update_layout(title=f"{title}: grey prefix, then the continuation (dashed line)",
                      height=90 + ROW_HEIGHT * len(rows), margin=dict(l=60, r=10, t=70, b=40),
                      legend=dict(orientation="h", y=-0.08))
    return fig


def bound_figure(bound: np.ndarray, baseline: np.ndarray, prefix_length: int, title: str) -> go.Figure:
    """Bars "FIVO per frame" (bound (T,)), a line "independent keys" (baseline (T,)), the continuation shaded."""
    frames = np.arange(len(bound))
    fig = go.Figure()
    colours = [PREFIX if t < prefix_length else TRUTH for t in frames]
    fig.add_trace(go.Bar(x=frames, y=bound, name="FIVO per frame", marker_color=colours,
                         hovertemplate="frame %{x}: %{y:.3f} nats<extra></extra>"))
    fig.add_trace(go.Scatter(x=frames, y=baseline, name="independent keys", mode="lines",
                             line=dict(color=NEUTRAL, width=1.5, dash="dot")))
    if prefix_length:
        fig.add_vline(x=prefix_length - 0.5, line=dict(color=NEUTRAL, dash="dash", width=1.5))
    fig.add_vrect(x0=prefix_length - 0.5, x1=len(bound) - 0.5, fillcolor=TRUTH, opacity=0.08, line_width=0,
                  annotation_text="true continuation", annotation_position="top left")
    fig.update_layout(title=f"{title}: log p̂ per frame of the true sequence (nats)", height=320,
                      margin=dict(l=60, r=10, t=50, b=40), xaxis_title="frame (beat)", yaxis_title="nats",
                      legend=dict(orientation="h", y=-0.25))
    return fig
