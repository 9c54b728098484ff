"""The model chooser the sampling pages share: a dropdown of the models a page can use, a ↻ button
that re-scans the app's folders (a run trained meanwhile appears), and a summary of the chosen one.

Each visit re-scans too, and `?model=PATH` in the page's address chooses that checkpoint (the
Train page links a finished run that way)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gradio as gr
from gradio.context import get_blocks_context

from core.checkpoints import nll_unit
from core.model_store import ModelStore

Lister = Callable[[ModelStore], list[dict]]  # the store's entries this page can use
Summary = Callable[[dict | None], str]  # Markdown about one entry (None: nothing to choose)


def model_picker(store: ModelStore, usable: Lister, summary: Summary) -> gr.Dropdown:
    """Lay out the chooser in the current Blocks context and wire it; returns the dropdown (value: a path)."""
    entries = usable(store)
    first = entries[0] if entries else None
    with gr.Row():
        model = gr.Dropdown([(m["label"], m["path"]) for m in entries], value=first and first["path"], label="model",
                            scale=5, allow_custom_value=True)
        refresh = gr.Button("↻ Refresh", scale=0, min_width=110)
    info = gr.Markdown(summary(first))

    def refresh_models(current: str | None) -> gr.Dropdown:
        return _dropdown(usable(store), current)

    def visit(current: str | None, request: gr.Request) -> gr.Dropdown:
        found, wanted = usable(store), request.query_params.get("model")
        named = next((m["path"] for m in found if wanted and _same_folder(m["path"], wanted)), None)
        return _dropdown(found, named or current)

    def describe(path: str | None) -> str:
        return summary(next((m for m in usable(store) if m["path"] == path), None))

    refresh.click(refresh_models, model, model, api_visibility="private")
    get_blocks_context().root_block.load(visit, model, model, api_visibility="private")  # this page's visits
    model.change(describe, model, info, api_visibility="private")
    return model


def _dropdown(entries: list[dict], current: str | None) -> gr.Dropdown:
    """The chooser's update: these entries, keeping `current` if it is one of them, else the first."""
    paths = [m["path"] for m in entries]
    return gr.Dropdown(choices=[(m["label"], m["path"]) for m in entries],
                       value=current if current in paths else next(iter(paths), None))


def _same_folder(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, ValueError):
        return False


# How the metrics a run writes read to a person; a key's other form is left out where it is shown. Both NLLs in
# bits are in the model's one unit (core.checkpoints.nll_unit), whatever their keys say.
_METRIC_FORMS = {
    "step": ("step {:,}", None),
    "valid_bits_per_sample": ("validation {:.3f} bits/{unit}", None),
    "valid_nll_nats": ("validation {:.3f} nats", "valid_bits_per_sample"),
    "valid_accuracy": ("accuracy {:.1%}", None),
    "test_bits_per_dim": ("test {:.3f} bits/{unit}", None),
    "test_nll_nats_per_item": ("test {:,.1f} nats/item", "test_bits_per_dim"),
}


# A sequence model's bounds (core.training.bound_objective, core.evaluate): per split, the key of each bound in nats
# per timestep. Where they are present they replace the NLLs in bits, which repeat the trained bound.
_BOUND_KEYS = {"test": "test_{}_per_t", "validation": "valid_{}_nats"}
_BOUNDS = ("fivo", "iwae", "elbo")
_REPEATED_BY_BOUNDS = ("valid_bits_per_sample", "valid_nll_nats", "test_bits_per_dim", "test_nll_nats_per_item",
                       "test_particles")


def _bounds_text(metrics: dict) -> list[str]:
    """Each split's bounds as one part: 'test FIVO -7.444, IWAE -8.083, ELBO -8.401 nats/timestep (4 particles)'."""
    parts = []
    for split, pattern in _BOUND_KEYS.items():
        found = [f"{b.upper()} {metrics[pattern.format(b)]:.3f}" for b in _BOUNDS if pattern.format(b) in metrics]
        if found:
            particles = metrics.get("test_particles") if split == "test" else None
            with_particles = f" ({particles} particles)" if particles else ""
            parts.append(f"{split} {', '.join(found)} nats/timestep{with_particles}")
    return parts


def metrics_text(metrics: dict, config: dict) -> str:
    """A checkpoint's metrics.json in words, its NLLs per the unit of its config.json (core.checkpoints.nll_unit),
    e.g. 'step 10,000 · validation 4.056 bits/sample · accuracy 16.8% · test 3.888 bits/sample' for audio; a sequence
    model's bounds grouped per split in nats per timestep; keys it does not know as 'key value'; '' for none."""
    unit = nll_unit(config)
    bounds = _bounds_text(metrics)
    bound_keys = {p.format(b) for p in _BOUND_KEYS.values() for b in _BOUNDS}
    parts = []
    for key, value in metrics.items():
        form, shown_by = _METRIC_FORMS.get(key, (None, None))
        if key == "step" or shown_by in metrics or key in bound_keys or (bounds and key in _REPEATED_BY_BOUNDS):
            continue
        try:
            parts.append(form.format(value, unit=unit) if form else f"{key} {value:.4g}")
        except (TypeError, ValueError):
            parts.append(f"{key} {value}")
    step = [_METRIC_FORMS["step"][0].format(metrics["step"])] if isinstance(metrics.get("step"), int) else []
    return " · ".join(step + bounds + parts)
