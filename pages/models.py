"""The models page: what checkpoints the app serves, what each one is, and moving them to and from the Hub.

Plain functions, each testable without a browser:

    table_rows(store)                          one row per checkpoint: what it is, where, type, rate, receptive
                                               field, size, metrics
    model_details(store, path)                 its config (a dict, shown as JSON) and its model card (Markdown)
    load_hub_model(store, repo_id, revision)   pull a repo into the Hub cache, serve it, refresh the table
    push_to_hub(store, path, repo_id, token, private)   upload a listed checkpoint; the token is used once

Pulled models live in huggingface_hub's standard cache (see core.hub), so they load offline once
pulled; the store serves them from there, listed as "hub: namespace/name".
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import gradio as gr

from core import hub
from core.checkpoints import CARD
from core.errors import CheckpointError, ConfigError, StudioError
from core.model_store import ModelStore
from pages.model_picker import metrics_text

HEADERS = ["model", "name", "type", "sample rate", "receptive field", "parameters", "metrics", "path"]
# px: together they fit the content width of a 1400 px window, each header's longest word fits its column (the
# headers wrap between words), and a narrower window scrolls the table sideways rather than squeezing it
COLUMN_WIDTHS = [190, 180, 90, 80, 100, 105, 290, 175]
MAX_CARD_BYTES = 200_000  # a model card bigger than this is shown truncated
_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*(\n|\Z)", re.DOTALL)


def table_rows(store: ModelStore) -> list[list]:
    """One row per listed checkpoint, in the order of HEADERS (the path last, to select by)."""
    return [
        [
            m["title"],
            m["name"],
            m["model_type"],
            m["config"].get("sample_rate") or "—",
            m["receptive_field"] or "—",
            f"{m['parameters']:,}",
            metrics_text(m["metrics"], m["config"]) or "—",
            m["path"],
        ]
        for m in store.list_models()
    ]


def model_details(store: ModelStore, path: str | None) -> tuple[dict | None, str]:
    """(config.json as a dict, the model card as Markdown) of a listed checkpoint; (None, hint) without one."""
    if not path:
        return None, "Choose a model in the table or the list to see its config and model card."
    entry = _entry(store, path)
    if entry is None:
        return None, f"`{path}` is not listed any more; press ↻ Refresh."
    rf = entry["receptive_field"]
    summary = (f"**{entry['title']}** (`{entry['name']}`): {entry['model_type']}, {entry['parameters']:,} "
               f"parameters" + (f", receptive field {rf:,} samples." if rf else "."))
    return entry["config"], f"{summary}\n\n---\n\n{read_card(Path(path))}"


def read_card(folder: Path) -> str:
    """The folder's README.md as Markdown, without its YAML front matter (the Hub's metadata block)."""
    path = folder / CARD
    if not path.is_file():
        return f"*This checkpoint has no model card ({CARD}).*"
    with open(path, "rb") as f:
        raw = f.read(MAX_CARD_BYTES + 1)
    text = raw[:MAX_CARD_BYTES].decode("utf-8", errors="replace")
    if len(raw) > MAX_CARD_BYTES:
        text += f"\n\n*… the model card is longer than {MAX_CARD_BYTES:,} bytes; the rest is not shown.*"
    return _FRONT_MATTER.sub("", text, count=1).strip() or f"*The model card ({CARD}) is empty.*"


def load_hub_model(store: ModelStore, repo_id: str, revision: str | None) -> tuple[str, list[list]]:
    """The Load handler: pull `repo_id` (at `revision`, empty = default branch), serve it; (status, table rows).

    A StudioError (bad repo id, not found, no network and not cached, not a checkpoint, weights that
    do not match the config) becomes a gr.Error with its message.
    """
    try:
        repo_id, revision = hub.check_repo_id(repo_id), hub.check_revision(revision)
        folder = hub.pull(repo_id, revision)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    label = f"hub: {repo_id}" + (f"@{revision}" if revision else "")
    store.add_folder(folder, label)
    status = (f"Loaded **{repo_id}** ({f'revision `{revision}`' if revision else 'default branch'}) into the "
              f"Hugging Face cache at `{folder}`. It is listed as *{label}* and can be used on every page; "
              "it loads offline from now on.")
    return status, table_rows(store)


def push_to_hub(store: ModelStore, path: str | None, repo_id: str, token: str, private: bool) -> str:
    """The Push handler: upload a listed checkpoint to `repo_id` with `token`; a status with the repo's URL.

    The token goes to core.hub.push for this call only; it is never stored, logged or echoed.
    """
    try:
        if not path:
            raise ConfigError("choose a checkpoint to push")
        entry = _entry(store, path)
        if entry is None:
            raise CheckpointError(f"{path} is not one of this app's models; choose one from the list")
        url = hub.push(path, repo_id, token, private=bool(private))
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from None
    created = " (a new repo is created private)" if private else ""
    return f"Pushed **{entry['name']}** to [{hub.check_repo_id(repo_id)}]({url}){created}."


def build(store: ModelStore) -> None:
    """Lay out the models page inside the current Blocks context and wire its events."""
    rows = table_rows(store)
    choices = _choices(rows)
    first = choices[0][1] if choices else None
    first_config, first_card = model_details(store, first)
    gr.Markdown("## Models\nThe checkpoints this app serves: bundled, trained here, or pulled from the Hugging Face "
                "Hub. Select a row to see its config and model card.")
    # A static first value: a callable one would become a public API endpoint; ↻ Refresh re-reads.
    table = gr.Dataframe(rows, headers=HEADERS, interactive=False, wrap=True, label="models", max_height=400,
                         column_widths=[f"{w}px" for w in COLUMN_WIDTHS], elem_id="models-table")
    refresh = gr.Button("↻ Refresh", size="sm")
    with gr.Row():
        with gr.Column(scale=1):
            model = gr.Dropdown(choices, value=first, label="model", allow_custom_value=True)
            config = gr.JSON(first_config, label="config.json")
        with gr.Column(scale=2):
            card = gr.Markdown(first_card, label="model card")
    with gr.Row():
        with gr.Column(variant="panel"):
            gr.Markdown("### Load from the Hub\nDownloads into the standard Hugging Face cache; works offline "
                        "for models pulled before.")
            repo = gr.Textbox(label="repo id", placeholder="namespace/model-name")
            revision = gr.Textbox(label="revision", placeholder="main",
                                  info="branch, tag or commit hash; empty = the default branch")
            load = gr.Button("Load", variant="primary")
            load_status = gr.Markdown()
        with gr.Column(variant="panel"):
            gr.Markdown("### Push to the Hub\nUploads config.json, model.safetensors, README.md (and metrics.json).")
            push_model = gr.Dropdown(choices, value=first, label="checkpoint", allow_custom_value=True,
                                     info="models pulled or trained after the page loaded appear after ↻ Refresh")
            push_repo = gr.Textbox(label="repo id", placeholder="your-name/model-name")
            token = gr.Textbox(label="Hub token", type="password", placeholder="hf_…",
                               info="needs write access; used for this push only, never stored")
            private = gr.Checkbox(label="private repo")
            push = gr.Button("Push", variant="primary")
            push_status = gr.Markdown()

    def refresh_choices(current: str | None, current_push: str | None):
        found = _choices(table_rows(store))
        paths = [path for _, path in found]

        def keep(value: str | None) -> str | None:
            return value if value in paths else next(iter(paths), None)

        return gr.Dropdown(choices=found, value=keep(current)), gr.Dropdown(choices=found, value=keep(current_push))

    def select_row(evt: gr.SelectData):
        return evt.row_value[-1] if evt.row_value else gr.Dropdown()

    load.click(partial(load_hub_model, store), [repo, revision], [load_status, table], api_name="load_hub_model")
    push.click(partial(push_to_hub, store), [push_model, push_repo, token, private], push_status,
               api_name="push_to_hub").success(lambda: "", None, token, api_visibility="private")
    refresh.click(partial(table_rows, store), None, table, api_visibility="private")
    table.change(refresh_choices, [model, push_model], [model, push_model], api_visibility="private")
    table.select(select_row, None, model, api_visibility="private")
    model.change(partial(model_details, store), model, [config, card], api_visibility="private")


def _entry(store: ModelStore, path: str) -> dict | None:
    return next((m for m in store.list_models() if m["path"] == path), None)


def _choices(rows: list[list]) -> list[tuple[str, str]]:
    return [(f"{row[0]} · {row[1]}", row[-1]) for row in rows]
