"""The audio page's figure of a variation: its waveform over its spectrogram, on one time axis.

One Plotly figure with two rows that share the x axis, so zooming or panning either zooms both
and a sound seen in the spectrogram lines up with its waveform.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from matplotlib import mlab
from plotly.subplots import make_subplots

PRIMER_COLOUR, CONTINUATION_COLOUR = "#7f7f7f", "#1f77b4"
FLOOR_DB = 80  # the spectrogram shows the loudest 80 dB


def variation_figure(primer: np.ndarray, continuation: np.ndarray, sample_rate: int) -> go.Figure:
    """Waveform (top: primer grey, continuation blue) over a log-magnitude spectrogram (bottom), shared time axis.

    primer (P,) and continuation (n,) are float32 in [-1, 1]; a dashed line marks where the continuation starts.
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=[0.4, 0.6])
    for name, x, offset, colour in (
        ("primer", primer, 0, PRIMER_COLOUR),
        ("continuation", continuation, len(primer), CONTINUATION_COLOUR),
    ):
        if len(x):
            t, y = envelope(x, offset, sample_rate)
            fig.add_trace(go.Scatter(x=t, y=y, name=name, mode="lines", line=dict(color=colour, width=1)),
                          row=1, col=1)
    times, freqs, db = spectrogram(np.concatenate([primer, continuation]), sample_rate)
    fig.add_trace(go.Heatmap(x=times, y=freqs, z=db, colorscale="Magma", zmin=db.max() - FLOOR_DB, zmax=db.max(),
                             showscale=False, name="spectrogram",
                             hovertemplate="%{x:.3f} s, %{y:.0f} Hz<extra></extra>"),
                  row=2, col=1)
    if len(primer):
        fig.add_vline(x=len(primer) / sample_rate, line=dict(color="white", dash="dash", width=1), row=2, col=1)
    fig.update_layout(height=380, margin=dict(l=50, r=10, t=10, b=30), showlegend=False)
    fig.update_yaxes(range=[-1.05, 1.05], title_text="amplitude", row=1, col=1)
    fig.update_yaxes(title_text="Hz", row=2, col=1)
    fig.update_xaxes(title_text="seconds", range=[0, (len(primer) + len(continuation)) / sample_rate], row=2, col=1)
    return fig


def spectrogram(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame times (F,) s, frequencies (K,) Hz, power (K, F) dB) of audio (T,); short clips get short windows."""
    n_fft = min(512, max(16, 2 ** int(np.log2(max(len(audio), 16) // 4))))  # ~4+ frames for short clips
    padded = np.pad(audio, (0, max(0, n_fft + 1 - len(audio))))
    power, freqs, times = mlab.specgram(padded, NFFT=n_fft, Fs=sample_rate, noverlap=n_fft * 3 // 4)  # (K, F)
    return times, freqs, 10 * np.log10(power + 1e-12)  # the floor keeps digital silence finite


def envelope(x: np.ndarray, offset: int, sample_rate: int, bins: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Times and values of a min/max zig-zag over ~bins bins: the shape of x in few points."""
    if len(x) <= 2 * bins:
        return (offset + np.arange(len(x))) / sample_rate, x
    edges = np.linspace(0, len(x), bins + 1).astype(int)
    lo, hi = np.minimum.reduceat(x, edges[:-1]), np.maximum.reduceat(x, edges[:-1])
    t = (offset + np.repeat(edges[:-1], 2)) / sample_rate
    return t, np.stack([lo, hi], axis=1).reshape(-1)
