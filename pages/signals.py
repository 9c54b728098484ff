"""The Fourier-series signal lab: a period-conditioned WaveNet draws curves and forecasts held-out ones.

Three handlers, each testable without a browser (core.forecast does the work):

    sample_signals(store, model, period, seconds, count, temperature, seed)      curves of a chosen period
    forecast_signal(store, model, curve, observe, horizon, k, temperature, seed) K futures of a held-out curve,
                                                                                 their mean +- 2 sigma vs the truth
    compare_horizons(store, curves, observe, horizon, k, temperature)            forecast RMSE against the
                                                                                 horizon, every Fourier model

The held-out curves are the test split of data seed 0 (core.data.fourier.split_curves): no
training split of any seed draws them, so every model is compared on curves it never saw.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from core.data.fourier import PERIOD_HIGH, PERIOD_LOW, SAMPLE_RATE_HZ, check_fourier_model, split_curves
from core.errors import ConfigError, StudioError
from core.forecast import Forecast, forecast, horizon_error, sample_curves
from core.generation import default_method
from core.model_store import ModelStore
from pages.checks import number_in, require, seed_or_none, whole_in
from pages.examples import run_after_example
from pages.figures import NEUTRAL
from pages.model_picker import metrics_text, model_picker

CURVE_LENGTH = 500  # samples (10 s) per held-out curve, as in training
HELD_OUT = 256  # held-out curves to choose from
MAX_SECONDS = 20.0  # longest sampled curve
MAX_COUNT = 8  # curves per sample request
MAX_TRAJECTORIES = 64
MAX_COMPARE_CURVES = 64
MAX_COMPARE_MODELS = 6
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
# Forecast presets: (held-out curve, observed points, points to forecast, trajectories, temperature, what it shows).
PRESETS = [
    (14, 250, 200, 16, 1.0, "curve 14, period 5.03 s, 5 s observed: one whole cycle"),
    (1, 250, 200, 16, 1.0, "curve 1, period 9.47 s, 5 s observed: half a cycle"),
    (7, 100, 300, 32, 0.7, "curve 7, period 5.60 s, 2 s observed, temperature 0.7"),
]
TRUTH, OBSERVED, BAND = NEUTRAL, "#ff7f0e", "rgba(31, 119, 180, 0.2)"  # read on a light or dark page


def signal_models(store: ModelStore) -> list[dict]:
    """The store's entries that model Fourier curves: a WaveNet over 127 linear levels with one local channel."""
    found = []
    for m in store.list_models():
        if m["model_type"] != "wavenet":
            continue
        try:
            check_fourier_model(SimpleNamespace(**m["config"]))
        except ConfigError:
            continue
        found.append(m)
    return found


def model_summary(entry: dict | None) -> str:
    """Markdown about a listed signal model: receptive field in samples and seconds, size, training, metrics."""
    if entry is None:
        return ("No Fourier-series model found. Train one on the Train page (data: Fourier series) or with "
                "`python -m core.train --config configs/fourier_wavenet.json --run-dir runs/fourier`, then press ↻.")
    rf = entry["receptive_field"]
    lines = [f"**{entry['title']}** (`{entry['name']}`) — {entry['parameters']:,} parameters; it sees the last "
             f"**{rf} samples** ({rf / SAMPLE_RATE_HZ:.2f} s at {SAMPLE_RATE_HZ} Hz) of the curve."]
    if entry["metrics"]:
        lines.append("Metrics: " + metrics_text(entry["metrics"], entry["config"]))
    return "\n\n".join(lines)


def held_out_curves(n: int = HELD_OUT) -> tuple[np.ndarray, np.ndarray]:
    """The lab's held-out curves (n, CURVE_LENGTH) float32 and their periods (n,) in seconds."""
    return split_curves("test", n, CURVE_LENGTH, seed=0)


# -- samples ------------------------------------------------------------------------------------


def sample_signals(store: ModelStore, model: str | None, period: float, seconds: float, count: float,
                   temperature: float, seed: float | None) -> tuple[go.Figure, str]:
    """The Sample handler: `count` curves of `seconds` with the chosen period; (figure, status)."""
    try:
        net = _model(store, model)
        period = number_in("period", period, PERIOD_LOW, PERIOD_HIGH)  # period_cond refuses PERIOD_HIGH itself
        seconds = number_in("seconds", seconds, 2 / SAMPLE_RATE_HZ, MAX_SECONDS)
        count = whole_in("count", count, 1, MAX_COUNT)
        temperature = number_in("temperature", temperature, 0, 2)
        seed = seed_or_none(seed)
        length = int(round(seconds * SAMPLE_RATE_HZ))
        curves = sample_curves(net, period, length, count, temperature=temperature, seed=seed)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    t = np.arange(length) / SAMPLE_RATE_HZ
    fig = go.Figure()
    for i, y in enumerate(curves):
        fig.add_trace(go.Scatter(x=t, y=y, mode="lines", name=f"sample {i + 1}",
                                 line=dict(color=COLOURS[i % len(COLOURS)], width=1.5)))
    for k in range(1, int(t[-1] // period) + 1):
        fig.add_vline(x=k * period, line=dict(color=TRUTH, dash="dot", width=1))
    _layout(fig, f"{count} sample(s) with period {period:.2f} s (dotted lines: multiples of the period)")
    status = (f"{count} × {length} samples at temperature {temperature:g} with the *{default_method(net)}* "
              f"generator. A model that learnt the condition repeats itself every {period:.2f} s.")
    return fig, status


# -- forecasts ----------------------------------------------------------------------------------


def forecast_signal(store: ModelStore, model: str | None, curve: float, observe: float, horizon: float,
                    trajectories: float, temperature: float, seed: float | None) -> tuple[go.Figure, str]:
    """The Forecast handler: observe the first N points of held-out curve `curve`, draw K futures of H points.

    Returns the figure (traces "truth", "observed", "trajectories", "mean", "+2σ", "-2σ") and a status
    with the mean's RMSE and how much of the truth lies inside the band.
    """
    try:
        net = _model(store, model)
        index = whole_in("curve", curve, 0, HELD_OUT - 1)
        observe = whole_in("observed points", observe, 1, CURVE_LENGTH - 1)
        horizon = whole_in("horizon", horizon, 1, CURVE_LENGTH - observe)
        k = whole_in("trajectories", trajectories, 1, MAX_TRAJECTORIES)
        temperature = number_in("temperature", temperature, 0, 2)
        seed = seed_or_none(seed)
        curves, periods = held_out_curves(index + 1)
        truth, period = curves[index], float(periods[index])
        result = forecast(net, truth[:observe], period, horizon, k, temperature=temperature, seed=seed)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    future = truth[observe : observe + horizon]
    fig = forecast_figure(truth, result)
    rmse = float(np.sqrt(((result.mean - future) ** 2).mean()))
    inside = float(np.mean(np.abs(future - result.mean) <= 2 * result.std + 1e-6))
    status = (f"Curve {index} (period {period:.2f} s): observed {observe} points ({observe / SAMPLE_RATE_HZ:.1f} s), "
              f"{k} trajectories of {horizon} points. RMSE of the mean: **{rmse:.3f}**; "
              f"{100 * inside:.0f}% of the true points lie inside the ±2σ band.")
    return fig, status


def forecast_figure(truth: np.ndarray, result: Forecast) -> go.Figure:
    """The whole true curve, the observed part, each trajectory faintly, their mean and the mean ±2σ band."""
    n, h = len(result.history), result.trajectories.shape[1]
    t_all = np.arange(len(truth)) / SAMPLE_RATE_HZ
    t_future = (n + np.arange(h)) / SAMPLE_RATE_HZ
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t_all, y=truth, mode="lines", name="truth", line=dict(color=TRUTH, width=1)))
    fig.add_trace(go.Scatter(x=t_all[:n], y=result.history, mode="lines", name="observed",
                             line=dict(color=OBSERVED, width=2)))
    # All trajectories as one trace, separated by NaN gaps: one legend entry, one toggle.
    gaps = np.full((len(result.trajectories), 1), np.nan)
    fig.add_trace(go.Scatter(x=np.tile(np.append(t_future, np.nan), len(result.trajectories)),
                             y=np.hstack([result.trajectories, gaps]).reshape(-1), mode="lines",
                             name="trajectories", line=dict(color=COLOURS[0], width=0.5), opacity=0.35))
    upper, lower = result.mean + 2 * result.std, result.mean - 2 * result.std
    fig.add_trace(go.Scatter(x=t_future, y=upper, mode="lines", name="+2σ", line=dict(width=0), showlegend=False))
    fig.add_trace(go.Scatter(x=t_future, y=lower, mode="lines", name="-2σ", line=dict(width=0), fill="tonexty",
                             fillcolor=BAND))
    fig.add_trace(go.Scatter(x=t_future, y=result.mean, mode="lines", name="mean", line=dict(color=COLOURS[0])))
    _layout(fig, "forecast: mean ±2σ of the trajectories against the truth")
    return fig


# -- error against horizon ------------------------------------------------------------------------


def compare_horizons(store: ModelStore, curves: float, observe: float, horizon: float, trajectories: float,
                     temperature: float) -> tuple[go.Figure, str]:
    """The Compare handler: forecast RMSE against steps ahead for every Fourier model, on the same curves.

    Each model forecasts the first `curves` held-out curves from their first `observe` points (seed 0).
    Returns the figure (one trace per model, named as listed) and a Markdown table.
    """
    try:
        m = whole_in("curves", curves, 1, MAX_COMPARE_CURVES)
        observe = whole_in("observed points", observe, 1, CURVE_LENGTH - 1)
        horizon = whole_in("horizon", horizon, 1, CURVE_LENGTH - observe)
        k = whole_in("trajectories", trajectories, 1, MAX_TRAJECTORIES)
        temperature = number_in("temperature", temperature, 0, 2)
        entries = signal_models(store)[:MAX_COMPARE_MODELS]
        require(bool(entries), "no Fourier-series models to compare; train or load one first")
        data, periods = held_out_curves(m)
        errors = {e["name"]: horizon_error(store.get(e["path"]), data, periods, observe, horizon, k,
                                           temperature=temperature, seed=0) for e in entries}
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    steps = np.arange(1, horizon + 1)
    fig = go.Figure()
    for i, (name, rmse) in enumerate(errors.items()):
        fig.add_trace(go.Scatter(x=steps / SAMPLE_RATE_HZ, y=rmse, mode="lines", name=name,
                                 line=dict(color=COLOURS[i % len(COLOURS)])))
    _layout(fig, f"forecast RMSE against horizon: {m} held-out curves, {k} trajectories each", y_range=None)
    fig.update_layout(xaxis_title="seconds ahead", yaxis_title="RMSE of the mean")
    marks = sorted({h for h in (1, 10, 25, 50, 100, 200, horizon) if h <= horizon})
    seen = {e["name"]: e["receptive_field"] / SAMPLE_RATE_HZ for e in entries}
    table = ["| model | sees | " + " | ".join(f"h = {h}" for h in marks) + " | mean |",
             "|---|---|" + "---|" * (len(marks) + 1)]
    table += [f"| {name} | {seen[name]:.1f} s | " + " | ".join(f"{rmse[h - 1]:.3f}" for h in marks)
              + f" | {rmse.mean():.3f} |" for name, rmse in errors.items()]
    table += ["", f"Periods run up to {PERIOD_HIGH:g} s: a model that sees less than one whole period cannot "
              "know the rest of the cycle, and its forecasts lose the phase within a second or two."]
    return fig, "\n".join(table)


# -- layout -------------------------------------------------------------------------------------


def build(store: ModelStore) -> None:
    """Lay out the signal lab inside the current Blocks context and wire its events."""
    gr.Markdown("## Fourier-series lab\nCurves s(t) = Σₖ aₖ sin(2πkt/P + φₖ) with 3 to 5 harmonics, sampled at "
                f"{SAMPLE_RATE_HZ} Hz and quantised to 127 levels. The WaveNet is told the period P and predicts "
                "each next sample.")
    model = model_picker(store, signal_models, model_summary)
    with gr.Tab("Samples"):
        with gr.Row():
            with gr.Column(scale=1):
                period = gr.Slider(PERIOD_LOW, PERIOD_HIGH - 0.01, value=7.0, step=0.01, label="period (seconds)")
                seconds = gr.Slider(1, MAX_SECONDS, value=15, step=0.5, label="seconds to draw")
                count = gr.Slider(1, MAX_COUNT, value=3, step=1, label="curves")
                temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="temperature", info="0 = greedy")
                seed = gr.Number(0, precision=0, minimum=0, label="seed", info="blank = random")
                sample_button = gr.Button("Sample", variant="primary")
            with gr.Column(scale=2):
                sample_plot = gr.Plot(label="samples")
                sample_status = gr.Markdown()
    with gr.Tab("Forecast"):
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Row():
                    curve = gr.Number(0, precision=0, minimum=0, maximum=HELD_OUT - 1, label="held-out curve",
                                      info=f"0 … {HELD_OUT - 1}", scale=4)
                    shuffle = gr.Button("🎲 Random", scale=0, min_width=110)
                observe = gr.Slider(1, CURVE_LENGTH - 1, value=250, step=1, label="observed points (N)")
                horizon = gr.Slider(1, CURVE_LENGTH - 1, value=150, step=1, label="points to forecast",
                                    info="at most 500 − N: the held-out curves are 10 s long")
                trajectories = gr.Slider(1, MAX_TRAJECTORIES, value=16, step=1, label="trajectories (K)")
                f_temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="temperature")
                f_seed = gr.Number(0, precision=0, minimum=0, label="seed", info="blank = random")
                forecast_button = gr.Button("Forecast", variant="primary")
                presets = gr.Examples([list(p[:5]) for p in PRESETS], [curve, observe, horizon, trajectories,
                                                                       f_temperature],
                                      example_labels=[p[5] for p in PRESETS],
                                      label="presets: click one to forecast it with the chosen model")
            with gr.Column(scale=2):
                forecast_plot = gr.Plot(label="forecast")
                forecast_status = gr.Markdown()
    with gr.Tab("Error against horizon"):
        gr.Markdown("Every Fourier model listed forecasts the same held-out curves; the root-mean-square error "
                    "of each model's trajectory mean is plotted against how far ahead it is. A model trained "
                    "with train unrolling (`train.unroll_steps`) has seen its own samples during training: "
                    "compare whether it drifts less.")
        with gr.Row():
            with gr.Column(scale=1):
                c_curves = gr.Slider(1, MAX_COMPARE_CURVES, value=16, step=1, label="held-out curves")
                c_observe = gr.Slider(1, CURVE_LENGTH - 1, value=250, step=1, label="observed points (N)")
                c_horizon = gr.Slider(1, CURVE_LENGTH - 1, value=200, step=1, label="points to forecast")
                c_trajectories = gr.Slider(1, MAX_TRAJECTORIES, value=8, step=1, label="trajectories per curve")
                c_temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="temperature")
                compare_button = gr.Button("Compare models", variant="primary")
            with gr.Column(scale=2):
                compare_plot = gr.Plot(label="RMSE against horizon")
                compare_table = gr.Markdown()

    sample_button.click(partial(sample_signals, store), [model, period, seconds, count, temperature, seed],
                        [sample_plot, sample_status], api_name="sample_signals")
    forecast_button.click(partial(forecast_signal, store),
                          [model, curve, observe, horizon, trajectories, f_temperature, f_seed],
                          [forecast_plot, forecast_status], api_name="forecast_signal")
    compare_button.click(partial(compare_horizons, store),
                         [c_curves, c_observe, c_horizon, c_trajectories, c_temperature],
                         [compare_plot, compare_table], api_name="compare_horizons")
    run_after_example(presets, partial(forecast_signal, store),
                      [model, curve, observe, horizon, trajectories, f_temperature, f_seed],
                      [forecast_plot, forecast_status])
    shuffle.click(lambda: int(np.random.default_rng().integers(HELD_OUT)), None, curve, api_visibility="private")


def _model(store: ModelStore, path: str | None):
    require(bool(path), "choose a model first")
    net = store.get(path)
    check_fourier_model(net.config)
    return net


def _layout(fig: go.Figure, title: str, y_range: tuple[float, float] | None = (-1.1, 1.1)) -> None:
    fig.update_layout(title=title, height=380, margin=dict(l=50, r=10, t=50, b=40), xaxis_title="seconds",
                      yaxis=dict(range=y_range), legend=dict(orientation="h", y=-0.2))
