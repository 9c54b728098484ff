"""The training page: start, watch, stop, resume and delete training runs from the browser.

Runs are subprocesses of the training CLI managed by core.jobs.JobManager, each writing its run
folder under the app's runs folder (`python app.py --runs DIR --max-runs N`); the page polls
the folder with a gr.Timer, so a browser reload or an app restart re-attaches to running runs.
Once a run starts here, the runs folder is also served by the app's model store: stopped and
finished runs are models on the Models page and on the page that samples them (Audio, Digits or
Signals), as their latest checkpoint.

Plain functions, each testable without a browser:

    config_from_form(...)                    the form's values -> a training config dict (train_config layout)
    start_run(jobs, store, ...)              validate (before any process starts) and start; (run name, message)
    run_status(jobs, run)                    (status dict, curves, progress bar, log, error) of a run
    stop_run / resume_run / delete_run       the buttons
    save_uploads(root, name, files)          uploaded audio -> a new data folder root/name/{train,valid}
    curves_figure(status), progress_html(status)

The model families and data kinds offered are those of core.models.model_types() and core.data.DATA_KINDS,
so a new family or data kind appears here without touching this page.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from urllib.parse import quote

import gradio as gr
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from core import train_config
from core.data import DATA_KINDS, DataConfig
from core.errors import ConfigError, StudioError
from core.jobs import LIVE, JobManager, max_processes
from core.model_store import ModelStore
from core.models import model_class, model_types
from core.train_config import OptimConfig
from pages.uploads import save_uploads

CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # presets: every configs/*.json
POLL_SECONDS = 2.0
LOG_LINES = 40
RUN_HEADERS = ["run", "state", "step", "processes", "started"]
TRAIN_FIELDS = ("lr", "batch_size", "max_steps", "valid_every", "log_every")
DATA_FIELDS = ("kind", "root", "targets", "clips", "seconds", "frequency", "kinds")
TONE_KINDS = list(DataConfig().kinds)

_settings: dict = {"runs": Path("runs"), "max_runs": 1, "uploads": Path("data") / "uploads"}
_managers: dict[Path, JobManager] = {}
_managers_lock = threading.Lock()


def configure(runs: str | os.PathLike | None = None, max_runs: int | None = None,
              uploads: str | os.PathLike | None = None) -> None:
    """Where the page keeps runs (default runs/), how many train at once (default 1), where uploads go.

    Called by app.py before the app is built (`--runs`, `--max-runs`).
    """
    if max_runs is not None and (isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1):
        raise ValueError(f"max_runs must be an integer >= 1, got {max_runs!r}")
    for key, value in (("runs", runs), ("max_runs", max_runs), ("uploads", uploads)):
        if value is not None:
            _settings[key] = Path(value) if key != "max_runs" else value


def job_manager() -> JobManager:
    """The one JobManager of the configured runs folder in this process (shared by every user)."""
    root = Path(_settings["runs"]).resolve()
    with _managers_lock:
        if root not in _managers:
            _managers[root] = JobManager(root, _settings["max_runs"])
        _managers[root].max_concurrent = _settings["max_runs"]
        return _managers[root]


# -- the form ----------------------------------------------------------------------------------


def family_model_json(family: str) -> str:
    """The model section for `family` at its config's defaults, as editable JSON."""
    cls = model_class(family).config_class
    return json.dumps({"model_type": family, **asdict(cls())}, indent=2)


def presets() -> dict[str, dict]:
    """The training configs in configs/*.json, by file stem (unreadable ones are skipped)."""
    found = {}
    for path in sorted(CONFIGS.glob("*.json")):
        try:
            found[path.stem] = train_config.from_dict(json.loads(path.read_text())).to_dict()
        except (StudioError, OSError, json.JSONDecodeError):
            continue
    return found


def preset_values(config: dict) -> list:
    """The form's values for a full config dict (to_dict layout): what the form has no field for goes to overrides."""
    model, data, opt = config["model"], config["data"], config["train"]
    defaults = {"data": asdict(DataConfig()), "train": asdict(OptimConfig())}
    extra = [f"data.{k}={json.dumps(v)}" for k, v in data.items()
             if k not in DATA_FIELDS and v != defaults["data"].get(k)]
    extra += [f"train.{k}={json.dumps(v)}" for k, v in opt.items()
              if k not in TRAIN_FIELDS and v != defaults["train"].get(k)]
    return [model["model_type"], json.dumps(model, indent=2), data["kind"], data["root"] or None, data["targets"],
            data["clips"], data["seconds"], data["frequency"] or 0, data["kinds"],
            *(opt[k] for k in TRAIN_FIELDS), "\n".join(extra)]


def config_from_form(family: str, model_json: str, data_kind: str, data_folder: str | None, targets, clips, seconds,
                     frequency, tone_kinds, lr, batch_size, max_steps, valid_every, log_every,
                     overrides: str) -> dict:
    """The form's values as a training config dict; ConfigError for JSON or an override that cannot be read."""
    try:
        model = json.loads(model_json or "{}")
    except json.JSONDecodeError as e:
        raise ConfigError(f"the model config is not valid JSON: {e}") from e
    if not isinstance(model, dict):
        raise ConfigError("the model config must be a JSON object of the family's settings")
    model["model_type"] = family
    data = {"kind": data_kind, "targets": targets}
    if data_kind == "tones":
        data.update(clips=clips, seconds=seconds, frequency=frequency or None, kinds=list(tone_kinds or []))
    elif data_kind == "audio_folder":
        data["root"] = data_folder or ""
    opt = dict(zip(TRAIN_FIELDS, (lr, batch_size, max_steps, valid_every, log_every), strict=True))
    lines = [line.strip() for line in (overrides or "").splitlines() if line.strip() and not line.startswith("#")]
    return train_config.apply_overrides({"model": model, "data": data, "train": opt}, lines)


def device_choices() -> list[tuple[str, str]]:
    best = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    choices = [(f"auto ({best})", "auto"), ("cpu", "cpu")]
    if torch.cuda.is_available():
        choices.append(("cuda (one GPU per process)", "cuda"))
        choices += [(f"cuda:{i} ({torch.cuda.get_device_name(i)})", f"cuda:{i}")
                    for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        choices.append(("mps", "mps"))
    return choices


def data_folders() -> list[str]:
    """Folders under data/ and the uploads folder that hold train/ and valid/ subfolders."""
    found = []
    for root in dict.fromkeys([Path("data"), Path(_settings["uploads"])]):
        if root.is_dir():
            found += [str(d) for d in sorted(root.iterdir())
                      if d.is_dir() and (d / "train").is_dir() and (d / "valid").is_dir()]
    return found


# -- the handlers ------------------------------------------------------------------------------


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
    names = _run_names(jobs)
    return gr.Dropdown(choices=names, value=next(iter(names), None)), f"Deleted **{run}**."


def upload_data(name: str, files: list[str] | None) -> tuple:
    """The upload handler: a new data folder, selected as the data set; (message, kind, folder)."""
    try:
        folder = save_uploads(_settings["uploads"], (name or "").strip(), files)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from None
    counts = {s: len(list((folder / s).glob("*.wav"))) for s in ("train", "valid")}
    message = f"Made **{folder}**: {counts['train']} training and {counts['valid']} validation file(s)."
    return message, "audio_folder", gr.Dropdown(choices=data_folders(), value=str(folder))


def runs_table(jobs: JobManager) -> list[list]:
    return [[r["name"], r["state"], f"{r['step']} / {r['max_steps'] or '?'}", r["world_size"] or 1,
             time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"])) if r["started"] else "—"]
            for r in jobs.runs()]


# -- the views ---------------------------------------------------------------------------------


def curves_figure(status: dict) -> go.Figure:
    """Train and valid NLL (bits per sample, or per dim for non-audio models) and the learning rate, vs step."""
    rows = status["metrics"]
    config = (status.get("config") or {}).get("model", {})
    unit = "bits per sample" if config.get("sample_rate") else "bits per dim"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06)
    for split, colour in (("train", "#1f77b4"), ("valid", "#ff7f0e")):
        part = [r for r in rows if r.get("split") == split and "bits" in r]
        fig.add_trace(go.Scatter(x=[r["step"] for r in part], y=[r["bits"] for r in part], name=f"{split} NLL",
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


def sample_page(config: dict) -> tuple[str, str] | None:
    """(path, title) of the page that samples a run with this training config, or None."""
    kind = (config.get("data") or {}).get("kind")
    if kind == "mnist":
        return "digits", "Digits"
    if kind == "fourier":
        return "signals", "Signals"
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


# -- the page ----------------------------------------------------------------------------------


def build(store: ModelStore) -> None:
    """Lay out the training page inside the current Blocks context and wire its events."""
    jobs = job_manager()
    found = presets()
    first = preset_values(found["tone500"] if "tone500" in found else train_config.from_dict({}).to_dict())
    gr.Markdown("## Train\nTrain a model on the server: each run is `python -m core.train` (or `torchrun` for "
                "several processes) writing a folder under "
                f"`{jobs.runs_root}`. Runs keep going when you close the page; come back to watch them. "
                f"At most **{jobs.max_concurrent}** run(s) train at once (`python app.py --max-runs N`).")
    with gr.Row():
        with gr.Column(scale=1, variant="panel"):
            gr.Markdown("### New run")
            preset = gr.Dropdown([*found, *(f"{f} defaults" for f in model_types())],
                                 value="tone500" if "tone500" in found else None, label="start from",
                                 info="a config in configs/, or a model family's defaults")
            name = gr.Textbox(label="run name", placeholder="empty: family-data-date",
                              info="letters, digits, '.', '_' and '-'")
            family = gr.Dropdown(model_types(), value=first[0], label="model family")
            model_json = gr.Code(first[1], language="json", label="model config", lines=8, max_lines=16)
            data_kind = gr.Dropdown(list(DATA_KINDS), value=first[2], label="data set")
            with gr.Group(visible=first[2] == "audio_folder") as folder_group:
                data_folder = gr.Dropdown(data_folders(), value=first[3], label="data folder on the server",
                                          allow_custom_value=True, info="holds train/ and valid/ audio files")
            targets = gr.Number(first[4], precision=0, label="targets per window",
                                info="scored samples per training window")
            with gr.Group(visible=first[2] == "tones") as tone_group:
                with gr.Row():
                    clips = gr.Number(first[5], precision=0, label="clips")
                    seconds = gr.Number(first[6], label="seconds per clip")
                    frequency = gr.Number(first[7], label="frequency (Hz)", info="0 = random pitches")
                tone_kinds = gr.CheckboxGroup(TONE_KINDS, value=first[8], label="tones")
            with gr.Row():
                lr = gr.Number(first[9], label="learning rate")
                batch_size = gr.Number(first[10], precision=0, label="batch size", info="per process")
                max_steps = gr.Number(first[11], precision=0, label="steps")
            with gr.Row():
                valid_every = gr.Number(first[12], precision=0, label="validate every")
                log_every = gr.Number(first[13], precision=0, label="log every")
            overrides = gr.Textbox(first[14], label="more settings", lines=2,
                                   placeholder="one section.key=value per line, e.g. train.weight_decay=1e-5",
                                   info="any config key (see core/train_config.py); values are JSON")
            with gr.Row():
                device = gr.Dropdown(device_choices(), value="auto", label="device")
                processes = gr.Slider(1, max(1, max_processes(None)), value=1, step=1, label="processes",
                                      info="> 1 runs torchrun (DDP)")
            start = gr.Button("Start", variant="primary")
            start_message = gr.Markdown()
            with gr.Accordion("Upload WAVs into a new data folder", open=False):
                upload_name = gr.Textbox(label="folder name", placeholder="my-sounds")
                upload_files = gr.File(file_count="multiple", file_types=[".wav", ".flac", ".ogg"], type="filepath",
                                       label="audio files")
                upload = gr.Button("Make data folder")
                upload_message = gr.Markdown()
        with gr.Column(scale=2):
            gr.Markdown("### Runs")
            table = gr.Dataframe(runs_table(jobs), headers=RUN_HEADERS, interactive=False,
                                 label="runs", max_height=240)
            with gr.Row():
                names = _run_names(jobs)
                run = gr.Dropdown(names, value=next(iter(names), None), label="run", scale=4,
                                  allow_custom_value=True)
                refresh = gr.Button("↻", scale=0, min_width=40)
            progress = gr.HTML(progress_html(None))
            curves = gr.Plot(label="NLL and learning rate")
            error = gr.Textbox(label="error", lines=8, max_lines=20, visible=False)
            log = gr.Textbox(label="log (last lines)", lines=8, max_lines=12, autoscroll=True)
            with gr.Row():
                stop = gr.Button("Stop", variant="stop")
                resume_steps = gr.Number(None, precision=0, label="resume to step", info="0: as before",
                                         scale=2)
                resume = gr.Button("Resume")
                ask_delete = gr.Button("Delete…")
            with gr.Row(visible=False) as confirm_row:
                confirm_text = gr.Markdown()
                confirm = gr.Button("Yes, delete it", variant="stop")
                cancel = gr.Button("Cancel")
            action_message = gr.Markdown()
            with gr.Accordion("status (JSON)", open=False):
                details = gr.JSON()
    timer = gr.Timer(POLL_SECONDS)
    seen = gr.State({})

    form = [family, model_json, data_kind, data_folder, targets, clips, seconds, frequency, tone_kinds,
            lr, batch_size, max_steps, valid_every, log_every, overrides]
    view = [details, curves, progress, log, error]
    show = partial(run_status, jobs)

    def poll(current: str | None, last: dict) -> tuple:
        """Timer tick: refresh the runs list and the selected run, sending only what changed."""
        rows = runs_table(jobs)
        names = [r[0] for r in rows]
        selected = current if current in names else next(
            (r[0] for r in rows if r[1] in LIVE), next(iter(names), None))
        table_update = rows if rows != last.get("rows") else gr.skip()
        run_update = (gr.Dropdown(choices=names, value=selected) if names != last.get("names") or selected != current
                      else gr.skip())
        if selected is None:
            return table_update, run_update, *run_status(jobs, None), {"rows": rows, "names": names}
        try:
            status = jobs.status(selected, LOG_LINES)
        except StudioError:
            return table_update, run_update, *[gr.skip()] * len(view), {"rows": rows, "names": names}
        key = [selected, status["state"], len(status["metrics"])]
        changed = key != last.get("key")
        return (table_update, run_update,
                status if changed else gr.skip(),
                curves_figure(status) if changed else gr.skip(),
                progress_html(status),
                status["log"] if status["log"] != last.get("log") else gr.skip(),
                gr.Textbox(value=status["error"] or "", visible=bool(status["error"])) if changed else gr.skip(),
                {"rows": rows, "names": names, "key": key, "log": status["log"]})

    def refresh_list(current: str | None):
        names = _run_names(jobs)
        return runs_table(jobs), gr.Dropdown(choices=names, value=current if current in names else None)

    def load_preset(choice: str | None) -> list:
        if not choice:
            return [gr.skip()] * len(form)
        if choice.endswith(" defaults"):
            base = train_config.from_dict({"model": {"model_type": choice.removesuffix(" defaults")}}).to_dict()
        else:
            base = presets().get(choice)
            if base is None:
                raise gr.Error(f"the preset {choice!r} is gone from {CONFIGS}", print_exception=False)
        return preset_values(base)

    def kind_groups(kind: str):
        return gr.Group(visible=kind == "audio_folder"), gr.Group(visible=kind == "tones")

    def ask(current: str | None):
        if not current:
            raise gr.Error("choose a run to delete", print_exception=False)
        return gr.Row(visible=True), f"Delete **{current}** and all its checkpoints? This cannot be undone."

    timer.tick(poll, [run, seen], [table, run, *view, seen], api_visibility="private")
    start.click(partial(start_run, jobs, store), [name, *form, device, processes], [run, start_message],
                api_name="start_run").success(refresh_list, run, [table, run], api_visibility="private").then(
        show, run, view, api_visibility="private")
    refresh.click(show, run, view, api_name="run_status").then(refresh_list, run, [table, run],
                                                                api_visibility="private")
    run.input(show, run, view, api_visibility="private")
    def select_row(evt: gr.SelectData):
        return evt.row_value[0] if evt.row_value else gr.skip()

    table.select(select_row, None, run, api_visibility="private").success(show, run, view, api_visibility="private")
    stop.click(partial(stop_run, jobs), run, action_message, api_name="stop_run")
    resume.click(partial(resume_run, jobs, store), [run, resume_steps], action_message, api_name="resume_run")
    ask_delete.click(ask, run, [confirm_row, confirm_text], api_visibility="private")
    cancel.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
    confirm.click(partial(delete_run, jobs), run, [run, action_message], api_visibility="private").then(
        lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private").then(
        show, run, view, api_visibility="private")
    preset.input(load_preset, preset, [family, model_json, data_kind, data_folder, targets, clips, seconds,
                                       frequency, tone_kinds, lr, batch_size, max_steps, valid_every, log_every,
                                       overrides], api_visibility="private")
    family.input(family_model_json, family, model_json, api_visibility="private")
    data_kind.change(kind_groups, data_kind, [folder_group, tone_group], api_visibility="private")
    upload.click(upload_data, [upload_name, upload_files], [upload_message, data_kind, data_folder],
                 api_visibility="private")


def _run_names(jobs: JobManager) -> list[str]:
    return [r["name"] for r in jobs.runs()]


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

