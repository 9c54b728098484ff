"""The Train page's runs: start one from the form, the runs table, a run's status, curves and progress bar,
and the stop, resume and delete buttons. Plain handlers over a core.jobs.JobManager:

    start_run(jobs, store, ...)          validate (before any process starts) and start; (run name, message)
    run_status(jobs, run)                (status dict, curves, progress bar, log, error) of a run
    stop_run / resume_run / delete_run   the buttons
    runs_table(jobs), run_names(jobs)    the runs list
    curves_figure(status), curve_values(config), progress_html(status), sample_page(config)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.checkpoints import nll_unit
from core.errors import ConfigError, StudioError
from core.jobs import DONE, JobManager
from core.model_store import ModelStore
from pages.train_form import config_from_form

LOG_LINES = 40
RUN_HEADERS = ["run", "state", "step", "processes", "started"]


def start_run(jobs: JobManager, store: ModelStore, name: str, family: str, model_json: str, data_kind: str,
              data_folder: str | None, targets, clips, seconds, frequency, tone_kinds, lr, batch_size, max_steps,
              valid_every, log_every, overrides: str, device: str, processes) -> tuple:
    """The Start handler: validate everything, then start the run; (the run's name, a message).

    The runs folder is then served by `store`, so the run is a model on every page once it has a checkpoint.
    A config that cannot run (a negative learning rate, an unknown key, a batch larger than the data,
    a device this machine lacks, one run too many) is refused with its reason and no process starts.
    """
    try:
        config = config_from_form(family, model_json, data_kind, data_folder, targets, clips, seconds, frequency,
                                  tone_kinds, lr, batch_size, max_steps, valid_every, log_every, overrides)
        procs = int(processes) if isinstance(processes, (int, float)) and float(processes).is_integer() else processes
        run = jobs.start(config, name=(name or "").strip() or None, device=_device(device), processes=procs)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from None
    store.add_folder(jobs.runs_root)
    return run, f"Started **{run}**."


def run_status(jobs: JobManager, run: str | None) -> tuple:
    """(status dict, curves figure, progress bar HTML, last log lines, error box) of `run`."""
    if not run:
        return {}, None, progress_html(None), "", gr.Textbox(value="", visible=False)
    try:
        status = jobs.status(run, LOG_LINES)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from None
    return (status, curves_figure(status), progress_html(status), status["log"],
            gr.Textbox(value=status["error"] or "", visible=bool(status["error"])))


def stop_run(jobs: JobManager, run: str | None) -> str:
    """The Stop handler: the run finishes its step, saves a checkpoint and stops."""
    try:
        jobs.stop(_need_run(run))
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from None
    return f"Stopping **{run}**: it saves a checkpoint first."


def resume_run(jobs: JobManager, store: ModelStore, run: str | None, max_steps) -> str:
    """The Resume handler: continue from the latest checkpoint, to `max_steps` (empty or 0: as before)."""
    try:
        steps = None if max_steps in (None, "", 0) else max_steps
        if isinstance(steps, float) and steps.is_integer():
            steps = int(steps)
        jobs.resume(_need_run(run), max_steps=steps)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from None
    store.add_folder(jobs.runs_root)
    return f"Resumed **{run}**" + (f" to step {steps}." if steps else ".")


def delete_run(jobs: JobManager, run: str | None) -> tuple:
    try:
        jobs.delete(_need_run(run))
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from None
    names = run_names(jobs)
    return gr.Dropdown(choices=names, value=next(iter(names), None)), f"Deleted **{run}**."


def action_buttons(status: dict | None, writable: bool) -> tuple[gr.Button, gr.Button, gr.Button]:
    """Stop, Resume and Delete… as the selected run allows: Stop while its process starts or runs, Resume once
    it has ended with a checkpoint, Delete once no process runs; none in a read-only app or with no run."""
    state = (status or {}).get("state")
    ended = writable and state in DONE
    return (gr.Button(interactive=writable and state in ("starting", "running")),
            gr.Button(interactive=ended and bool(status.get("checkpoint"))), gr.Button(interactive=ended))


def runs_table(jobs: JobManager) -> list[list]:
    return [[r["name"], r["state"], f"{r['step']} / {r['max_steps'] or '?'}", r["world_size"] or 1,
             time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"])) if r["started"] else "—"]
            for r in jobs.runs()]


def run_names(jobs: JobManager) -> list[str]:
    """The runs' names, newest first."""
    return [r["name"] for r in jobs.runs()]


# -- the views ---------------------------------------------------------------------------------


def curves_figure(status: dict) -> go.Figure:
    """The train and valid curves and the learning rate, vs step: for the autoregressive families their NLL in bits
    per sample (audio, signals) or per dim (images), core.checkpoints.nll_unit; for a bound run (VRNN, SRNN,
    GHMM) the bound it trains, in nats per timestep."""
    rows = status["metrics"]
    config = status.get("config") or {}
    value, unit, name = curve_values(config)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06)
    for split, colour in (("train", "#1f77b4"), ("valid", "#ff7f0e")):
        part = [(r["step"], value(r)) for r in rows if r.get("split") == split and value(r) is not None]
        fig.add_trace(go.Scatter(x=[step for step, _ in part], y=[v for _, v in part], name=f"{split} {name}",
                                 mode="lines+markers" if split == "valid" else "lines", line_color=colour), 1, 1)
    lr = [r for r in rows if r.get("split") == "train" and "lr" in r]
    fig.add_trace(go.Scatter(x=[r["step"] for r in lr], y=[r["lr"] for r in lr], name="learning rate",
                             line_color="#2ca02c"), 2, 1)
    fig.update_yaxes(title_text=unit, row=1, col=1)
    fig.update_yaxes(title_text="lr", type="log", row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(height=420, margin=dict(l=60, r=20, t=30, b=40), legend=dict(orientation="h", y=1.08),
                      title=dict(text=status["name"], x=0.01, y=0.99, font_size=13))
    return fig


def curve_values(config: dict) -> tuple[Callable[[dict], float | None], str, str]:
    """(a metrics row -> its plotted value or None, the axis title, the curves' name) for a run's config.

    A bound run plots its bound ("fivo_nats" in its rows; a train row written before the rows named it
    has only "nll_nats", minus the bound); the others their NLL in bits.
    """
    objective = config.get("objective") or {}
    if objective.get("name") == "bound":
        bound = objective.get("bound", "fivo")
        key = f"{bound}_nats"

        def bound_value(row: dict) -> float | None:
            if key in row:
                return row[key]
            return -row["nll_nats"] if row.get("split") == "train" and "nll_nats" in row else None

        return bound_value, f"{bound.upper()} bound, nats per timestep", bound.upper()
    return (lambda row: row.get("bits")), f"bits per {nll_unit(config.get('model') or {})}", "NLL"


def sample_page(config: dict) -> tuple[str, str] | None:
    """(path, title) of the page that samples a run with this training config, or None."""
    kind = (config.get("data") or {}).get("kind")
    if kind == "mnist":
        return "digits", "Digits"
    if kind == "fourier":
        return "signals", "Signals"
    if kind == "pianorolls":
        return "sequences", "Sequences"
    if ((config.get("model") or {}).get("sample_rate")):
        return "audio", "Audio"
    return None


def progress_html(status: dict | None) -> str:
    """A progress bar with the step, the state and the time left."""
    if not status:
        return "<p>Start a run, or choose one from the list.</p>"
    pct = 100.0 * status["progress"]
    colour = {"failed": "#d62728", "finished": "#2ca02c", "stopped": "#7f7f7f"}.get(status["state"], "#1f77b4")
    left = f" · about {_duration(status['eta_s'])} left" if status["eta_s"] is not None else ""
    done = ""
    if status["state"] in ("stopped", "finished", "failed") and status["checkpoint"]:
        page, sample = sample_page(status.get("config") or {}), ""
        if page:
            link = f"{page[0]}?model={quote(status['checkpoint'], safe='')}"
            sample = f" or <a href='{link}'>sample it on the {page[1]} page</a>"
        done = (f"<br>Latest checkpoint <code>{status['checkpoint']}</code>: see it on the "
                f"<a href='models'>Models</a> page{sample}.")
    return (f"<div style='background:#e5e7eb;border-radius:6px;height:14px;overflow:hidden'>"
            f"<div style='width:{pct:.1f}%;background:{colour};height:100%'></div></div>"
            f"<p><b>{status['state']}</b> · step {status['step']} / {status['max_steps'] or '?'} ({pct:.0f} %)"
            f"{left}{done}</p>")


def _need_run(run: str | None) -> str:
    if not run:
        raise ConfigError("choose a run first")
    return run


def _device(choice: str | None) -> str | None:
    return None if choice in (None, "", "auto") else choice


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
