"""The checkpoints an app serves: found by scanning folders, loaded once, shared by every user.

A folder given to the store is searched one level deep:

    checkpoints/              itself a checkpoint, or holding checkpoint folders
      tiny-tones/             config.json + model.safetensors  -> "checkpoints/tiny-tones"
    runs/
      my-run/checkpoints/...  a training run: its latest checkpoint -> "runs/my-run (step_000100)"

Loaded models are cached per checkpoint folder (and per version of its weights file, so a
folder overwritten by a new save is loaded afresh). They are shared across users and threads:
generation never mutates a model (see core.generation), so sharing needs no more than a lock
around loading.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from core.checkpoints import (
    CARD,
    CONFIG,
    METRICS,
    WEIGHTS,
    card_title,
    config_dict,
    is_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    read_config,
    read_metrics,
    training_data,
)
from core.continuation import generates_audio
from core.devices import pick_device
from core.errors import CheckpointError, StudioError
from core.models import build_model

SMALL_MODEL = 5_000_000  # stored numbers up to which a model is built on the CPU to be described


class ModelStore:
    """Lists the checkpoints under `folders` and loads them on demand onto `device` (default: the best one)."""

    def __init__(self, folders: Sequence[str | os.PathLike], device: str | torch.device | None = None):
        self.folders = [Path(f) for f in folders]
        self.device = torch.device(device) if device is not None else pick_device()
        self._lock = threading.Lock()
        self._models: dict[Path, tuple[int, torch.nn.Module]] = {}  # folder -> (weights mtime_ns, model)
        self._folders_lock = threading.Lock()  # add_folder replaces self.folders whole: readers need no lock
        self._labels: dict[Path, str] = {}  # resolved checkpoint folder -> display name (e.g. a Hub repo id)
        # resolved folder -> (its files' mtimes, entry without its name): building a model to describe it
        # takes a while, and every page lists the models when the app is built and on every visit
        self._described: dict[Path, tuple[tuple, dict | None]] = {}

    def add_folder(self, path: str | os.PathLike, label: str | None = None) -> None:
        """Also serve the checkpoints in `path` (e.g. a snapshot pulled from the Hub), listed as `label` if given.

        Thread-safe; adding a folder twice only updates its label.
        """
        folder = Path(path)
        resolved = folder.resolve()
        with self._folders_lock:
            if label is not None:
                self._labels = {**self._labels, resolved: label}
            if all(f.resolve() != resolved for f in self.folders):
                self.folders = [*self.folders, folder]

    def list_models(self) -> list[dict]:
        """One entry per checkpoint found, in folder order; unreadable folders are skipped.

        Entry keys: name (where it is: "checkpoints/melodies-wavenet", "runs/x (step_00000100)"), title
        (what it is: its model card's title, else model_title's), label (how a chooser lists it: "title ·
        name"), path (str), model_type, config (dict), receptive_field (None for a recurrent model),
        parameters, metrics, audio ({"sample_rate", "quantization_levels", "codec"} for a model that
        generates audio, else None), data (what it was trained on, core.checkpoints.training_data).
        A folder is described once per version of its files.
        """
        entries, seen, labels = [], set(), self._labels
        for root in self.folders:
            for name, folder in _candidates(root):
                resolved = folder.resolve()
                if resolved in seen:
                    continue
                entry = self._description(resolved, folder)
                if entry is not None:
                    seen.add(resolved)
                    shown = labels.get(resolved, name)
                    entries.append({"name": shown, **entry, "label": f"{entry['title']} · {shown}"})
        return entries

    def _description(self, resolved: Path, folder: Path) -> dict | None:
        stamp = tuple(_mtime(folder / name) for name in (CONFIG, WEIGHTS, METRICS, CARD))
        cached = self._described.get(resolved)
        if cached is None or cached[0] != stamp:
            cached = (stamp, _describe(folder))
            self._described[resolved] = cached  # a race only describes a folder twice
        return cached[1]

    def get(self, path: str | os.PathLike) -> torch.nn.Module:
        """The model in checkpoint folder `path`, loaded on first use and cached (CheckpointError if unusable)."""
        folder = Path(path).resolve()
        if not any(folder.is_relative_to(root.resolve()) for root in self.folders):
            raise CheckpointError(f"{path} is not in this app's model folders; choose one of the listed models")
        try:
            version = (folder / WEIGHTS).stat().st_mtime_ns
        except OSError as e:
            raise CheckpointError(f"{path} is not a checkpoint folder (it needs config.json and {WEIGHTS})") from e
        with self._lock:
            cached = self._models.get(folder)
            if cached is None or cached[0] != version:
                self._models[folder] = (version, load_checkpoint(folder, self.device))
            return self._models[folder][1]


def _candidates(root: Path) -> list[tuple[str, Path]]:
    """(display name, folder) for root, its subfolders, and each run folder's latest checkpoint."""
    if is_checkpoint(root):
        return [(root.name, root)]
    if not root.is_dir():
        return []
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = f"{root.name}/{child.name}"
        if is_checkpoint(child):
            found.append((label, child))
        elif (latest := latest_checkpoint(child)) is not None:
            found.append((f"{label} ({latest.name})", latest))
    return found


def _stored_values(folder: Path) -> float:
    """How many numbers the folder's weights file holds, from its header alone (inf if it cannot be read)."""
    try:
        with safe_open(folder / WEIGHTS, "pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except (OSError, SafetensorError):
        return math.inf


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _describe(folder: Path) -> dict | None:
    """A listing entry without its name and label, or None when the folder's config cannot be read."""
    try:
        config = read_config(folder)
        # Built without its weights: on the CPU when small (milliseconds), else on the meta device (shapes
        # only, no memory). Meta is not the default: its first use imports torch._dynamo, seconds of start-up.
        # fork_rng: the random initial weights leave the process's random numbers as they were.
        with torch.random.fork_rng(devices=[]), torch.device("cpu" if _stored_values(folder) <= SMALL_MODEL
                                                             else "meta"):
            model = build_model(config)
    except StudioError:
        return None
    try:
        metrics = read_metrics(folder)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        metrics = {}
    title = card_title(folder) or model_title(model, _data_kind(folder))
    return {
        "title": title,
        "path": str(folder),
        "model_type": model.model_type,
        "config": config_dict(model),
        "receptive_field": getattr(model, "receptive_field", None),
        "parameters": sum(p.numel() for p in model.parameters()),
        "metrics": metrics,
        "audio": ({"sample_rate": model.config.sample_rate, "quantization_levels": model.config.quantization_levels,
                   "codec": model.config.codec} if generates_audio(model) else None),
        "data": training_data(folder),
    }


FAMILY_NAMES = {"wavenet": "WaveNet", "pixelcnn": "Gated PixelCNN", "wayback": "wayback RNN", "vrnn": "VRNN",
                "srnn": "SRNN", "ghmm": "Gaussian HMM"}
DATA_NAMES = {"tones": "synthetic tones", "mnist": "MNIST digits", "fourier": "Fourier curves",
              "speech_frames": "speech frames", "ghmm": "Gaussian HMM sequences"}


def model_title(model: torch.nn.Module, data: dict | None = None) -> str:
    """What a checkpoint without a card title is, from its family, its data section (kind and where from,
    if known) and its rate: "WaveNet on audio from data/melodies8k, 8 kHz", "VRNN on jsb pianorolls"."""
    family = FAMILY_NAMES.get(model.model_type, model.model_type)
    kind = (data or {}).get("kind")
    if kind == "audio_folder":
        what = f"audio from {data.get('root') or 'a folder'}"
    elif kind == "pianorolls":
        what = f"{data.get('name') or 'the'} pianorolls"
    else:
        what = DATA_NAMES.get(kind, "")
    rate = getattr(model.config, "sample_rate", 0) if generates_audio(model) else 0
    if rate and not what:
        what = "audio"
    text = f"{family} on {what}" if what else family
    return f"{text}, {rate / 1000:g} kHz" if rate else text


def _data_kind(folder: Path) -> dict | None:
    """The data section of the training config beside a checkpoint (a bundle's train_config.json, or its
    run folder's config.json), or None."""
    for candidate in (folder / "train_config.json", folder.parent.parent / "config.json"):
        try:
            data = json.loads(candidate.read_text()).get("data")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(data, dict):
            return data
    return None
