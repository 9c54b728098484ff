"""The training page: start, watch, stop, resume and delete training runs from the browser.

Runs are subprocesses of the training CLI managed by core.jobs.JobManager, each writing its run
folder under the app's runs folder (`python app.py --runs DIR --max-runs N`); the page polls
the folder with a gr.Timer, so a browser reload or an app restart re-attaches to running runs.
Once a run starts here, the runs folder is also served by the app's model store: stopped and
finished runs are models on the Models page and on the page that samples them (Audio, Digits or
Signals), as their latest checkpoint.

This module holds the page's settings (configure, job_manager), lays the page out and wires its
events. The handlers are plain functions, each testable without a browser:

    pages.train_form    the form -> a training config dict; presets, devices, data folders, uploads
    pages.train_runs    start, status, curves, progress, the runs table; stop, resume and delete
    pages.uploads       uploaded audio -> a new data folder root/name/{train,valid}

The model families and data kinds offered are those of core.models.model_types() and core.data.DATA_KINDS,
so a new family or data kind appears here without touching this page.
"""

from __future__ import annotations

import os
import threading
from functools import partial
from pathlib import Path

import gradio as gr

from core.data import DATA_KINDS
from core.errors import StudioError
from core.jobs import LIVE, JobManager
from core.model_store import ModelStore
from core.models import model_types
from core.run_launch import max_processes
from core.training import config as train_config
from pages.train_form import (
    CONFIGS,
    TONE_KINDS,
    data_folders,
    device_choices,
    family_model_json,
    preset_values,
    presets,
    upload_data,
)
from pages.train_runs import (
    LOG_LINES,
    RUN_HEADERS,
    action_buttons,
    curves_figure,
    delete_run,
    progress_html,
    resume_run,
    run_names,
    run_status,
    runs_table,
    start_run,
    stop_run,
)

POLL_SECONDS = 2.0

_settings: dict = {"runs": Path("runs"), "max_runs": 1, "uploads": Path("data") / "uploads", "public_demo": False}
_managers: dict[Path, JobManager] = {}
_managers_lock = threading.Lock()


def configure(runs: str | os.PathLike | None = None, max_runs: int | None = None,
              uploads: str | os.PathLike | None = None, public_demo: bool | None = None) -> None:
    """Where the page keeps runs (default runs/), how many train at once (default 1), where uploads go, and
    whether the app is a public demo: then the page is read-only (runs are listed and watched; nothing is
    started, resumed, stopped, deleted or uploaded, in the page or by an API call) and data may come
    only from the app's own data folders (data/ and the uploads folder).

    Called by app.py before the app is built (`--runs`, `--max-runs`, `--public-demo`).
    """
    if max_runs is not None and (isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1):
        raise ValueError(f"max_runs must be an integer >= 1, got {max_runs!r}")
    for key, value in (("runs", runs), ("max_runs", max_runs), ("uploads", uploads)):
        if value is not None:
            _settings[key] = Path(value) if key != "max_runs" else value
    if public_demo is not None:
        _settings["public_demo"] = bool(public_demo)


def job_manager() -> JobManager:
    """The one JobManager of the configured runs folder in this process (shared by every user)."""
    root = Path(_settings["runs"]).resolve()
    with _managers_lock:
        if root not in _managers:
            _managers[root] = JobManager(root, _settings["max_runs"])
        manager = _managers[root]
        manager.max_concurrent = _settings["max_runs"]
        manager.read_only = _settings["public_demo"]
        manager.data_roots = [Path("data"), Path(_settings["uploads"])] if _settings["public_demo"] else None
        return manager


def build(store: ModelStore) -> None:
    """Lay out the training page inside the current Blocks context and wire its events."""
    jobs = job_manager()
    found = presets()
    first = preset_values(found["tone500"] if "tone500" in found else train_config.from_dict({}).to_dict())
    gr.Markdown("## Train\nTrain a model on the server: each run is `python -m core.train` (or `torchrun` for "
                "several processes) writing a folder under "
                f"`{jobs.runs_root}`. Runs keep going when you close the page; come back to watch them. "
                f"At most **{jobs.max_concurrent}** run(s) train at once (`python app.py --max-runs N`).")
    writable = not jobs.read_only
    if not writable:
        gr.Markdown("**This app is a public demo**: the runs can be watched, but starting, resuming, stopping, "
                    "deleting and uploading are off. Run the app on your own machine to train.")
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
                data_folder = gr.Dropdown(data_folders(_settings["uploads"]), value=first[3],
                                          label="data folder on the server", allow_custom_value=True,
                                          info="holds train/ and valid/ audio files")
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
                                   info="any config key (see core/training/config.py); values are JSON. "
                                        "Sequence models: data.name=nottingham (jsb, nottingham, musedata, "
                                        "piano-midi), objective.bound=iwae (elbo, iwae, fivo), "
                                        "objective.particles=16")
            with gr.Row():
                device = gr.Dropdown(device_choices(), value="auto", label="device")
                most = max(1, min(max_processes(None), jobs.limits.processes))
                processes = gr.Slider(1, most, value=1, step=1, label="processes", info="> 1 runs torchrun (DDP)")
            start = gr.Button("Start", variant="primary", interactive=writable)
            start_message = gr.Markdown()
            with gr.Accordion("Upload WAVs into a new data folder", open=False):
                upload_name = gr.Textbox(label="folder name", placeholder="my-sounds")
                upload_files = gr.File(file_count="multiple", file_types=[".wav", ".flac", ".ogg"], type="filepath",
                                       label="audio files")
                upload = gr.Button("Make data folder", interactive=writable)
                upload_message = gr.Markdown()
        with gr.Column(scale=2):
            gr.Markdown("### Runs")
            table = gr.Dataframe(runs_table(jobs), headers=RUN_HEADERS, interactive=False,
                                 label="runs", max_height=240)
            with gr.Row():
                names = run_names(jobs)
                run = gr.Dropdown(names, value=next(iter(names), None), label="run", scale=4,
                                  allow_custom_value=True)
                refresh = gr.Button("↻ Refresh", scale=0, min_width=110)
            progress = gr.HTML(progress_html(None))
            curves = gr.Plot(label="training curves (NLL in bits, or a bound in nats) and learning rate")
            error = gr.Textbox(label="error", lines=8, max_lines=20, visible=False)
            log = gr.Textbox(label="log (last lines)", lines=8, max_lines=12, autoscroll=True)
            with gr.Row():
                stop = gr.Button("Stop", variant="stop", interactive=False)  # action_buttons: as the run allows
                resume_steps = gr.Number(None, precision=0, label="resume to step", info="0: as before",
                                         scale=2)
                resume = gr.Button("Resume", interactive=False)
                ask_delete = gr.Button("Delete…", interactive=False)
            with gr.Row(visible=False) as confirm_row:
                confirm_text = gr.Markdown()
                confirm = gr.Button("Yes, delete it", variant="stop", interactive=writable)
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
        names = run_names(jobs)
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
    details.change(partial(action_buttons, writable=writable), details, [stop, resume, ask_delete],
                   api_visibility="private", show_progress="hidden")
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
    upload.click(partial(upload_data, _settings["uploads"], read_only=jobs.read_only), [upload_name, upload_files],
                 [upload_message, data_kind, data_folder], api_visibility="private")
