"""Which audio models the Audio page lists, and how it describes them.

    audio_models(store)            the store's audio models, the default first
    example_model(entries, name)   the model an example clip is continued with
    model_summary(entry)           the Markdown beside the picker: rate, field, data, classes, metrics
    class_props(entry)             the class-id box for a model: shown only where the user picks the class
    temperature_of(entry)          the temperature the page starts a model at: its config's suggestion, else
                                   core.continuation.DEFAULT_TEMPERATURE
"""

from __future__ import annotations

from pathlib import Path

from core.continuation import suggested_temperature
from core.model_store import ModelStore
from core.pitch import PITCH_EDGES
from pages.audio_training import trained_on
from pages.model_picker import metrics_text

DEFAULT_MODEL = "melodies-wavenet"  # the best-trained bundled audio model: the page starts on it


def audio_models(store: ModelStore) -> list[dict]:
    """The store's entries that generate audio (a WaveNet or a wayback RNN with an audio codec and a sample rate),
    DEFAULT_MODEL first when the store has it (the page starts on it), the others in the store's order."""
    found = [m for m in store.list_models() if m["audio"] is not None]
    return sorted(found, key=lambda m: Path(m["path"]).name != DEFAULT_MODEL)


def example_model(entries: list[dict], bundle: str) -> str | None:
    """The path of the listed model in a folder named `bundle` (an example's own model), else the first listed."""
    named = [m["path"] for m in entries if Path(m["path"]).name == bundle]
    return next(iter(named + [m["path"] for m in entries]), None)


def model_summary(entry: dict | None) -> str:
    """Markdown describing a listed model: rate, receptive field, size, what it was trained on, classes, metrics."""
    if entry is None:
        return "No audio model chosen. Put checkpoint folders in the app's checkpoint folders and press ↻."
    c, a, rf = entry["config"], entry["audio"], entry["receptive_field"]
    lines = [
        f"**{entry['title']}** (`{entry['name']}`) — {a['sample_rate']:,} Hz, {a['quantization_levels']} levels "
        f"({a['codec']}), {entry['parameters']:,} parameters.",
        f"The model hears the last **{rf:,} samples** ({1000 * rf / a['sample_rate']:.1f} ms) before each new one."
        if rf is not None else
        f"A recurrent model ({entry['model_type']}, {c.get('layout', '')} layout): it hears everything before each "
        "new sample through its state.",
    ]
    if entry.get("data"):
        lines.append(trained_on(entry["data"]))
    if c.get("classes_from") == "pitch":
        middle = [f"{lo:g}–{hi:g}" for lo, hi in zip(PITCH_EDGES[:-1], PITCH_EDGES[1:], strict=True)]
        bands = ", ".join([f"under {PITCH_EDGES[0]:g}", *middle, f"{PITCH_EDGES[-1]:g} and over"])
        lines.append(f"Pitch-conditioned: told the register of the voice (the primer's median f0 in one of "
                     f"{c['n_classes']} bands: {bands} Hz), it keeps to it after a pause.")
    elif c.get("n_classes"):
        names = c["extra"].get("class_names")
        listed = ", ".join(f"{i} = {n}" for i, n in enumerate(names)) if names else f"0 … {c['n_classes'] - 1}"
        lines.append(f"Class-conditional: class ids {listed}.")
    if "temperature" in (c.get("extra") or {}):
        lines.append(f"Sampled at temperature {temperature_of(entry):g} by default (its config's suggestion).")
    if entry["metrics"]:
        lines.append("Metrics: " + metrics_text(entry["metrics"], entry["config"]))
    return "\n\n".join(lines)


def class_props(entry: dict | None) -> dict:
    """The class-id box's properties for `entry`: hidden for a model without classes or one that takes its class
    from the primer (classes_from), else bounded by its class count."""
    n = entry["config"].get("n_classes", 0) if entry and not entry["config"].get("classes_from") else 0
    return dict(visible=bool(n), maximum=max(n - 1, 0), info=f"0 … {n - 1}" if n else None)


def temperature_of(entry: dict | None) -> float:
    """The temperature the page sets for `entry`: its config's `extra.temperature`, else the default
    (core.continuation.DEFAULT_TEMPERATURE)."""
    return suggested_temperature(entry["config"].get("extra") if entry else None)
