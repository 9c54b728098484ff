"""Checkpoint folders: `config.json` + `model.safetensors` + model card `README.md`.

The layout of `huggingface_hub`'s `PyTorchModelHubMixin`, so a folder is the same thing
bundled, local, or on the Hub. Weights are safetensors only: nothing is ever unpickled.

A save is atomic: files are written into a temporary sibling folder which is renamed into
place in one step, so a process killed mid-save leaves either the old folder or the new one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.errors import CheckpointError, ConfigError
from core.models import build_model, config_from_dict
from core.models.wavenet import WaveNet, WaveNetConfig
from core.models.wavenet_widen import WIDENED, widen_state

CONFIG, WEIGHTS, CARD, METRICS = "config.json", "model.safetensors", "README.md", "metrics.json"


def config_dict(model: torch.nn.Module) -> dict:
    """The JSON-able config of a model: {"model_type": ..., **fields}."""
    return {"model_type": model.model_type, **asdict(model.config)}


def save_checkpoint(
    model: torch.nn.Module,
    folder: str | os.PathLike,
    *,
    card: str | None = None,
    metrics: dict | None = None,
    extra_files: dict[str, bytes] | None = None,
    extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint folder atomically and return its path.

    extra_files: name -> bytes (e.g. trainer state); extra_tensors: name -> safetensors dict.
    With overwrite, an existing folder is replaced; otherwise it is an error.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise CheckpointError(f"{folder} already exists; choose another folder or pass overwrite=True")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, tmp / WEIGHTS, metadata={"format": "pt"})
        _write_text(tmp / CONFIG, json.dumps(config_dict(model), indent=2))
        _write_text(tmp / CARD, card if card is not None else model_card(model, metrics))
        if metrics is not None:
            _write_text(tmp / METRICS, json.dumps(metrics, indent=2))
        for name, tensors in (extra_tensors or {}).items():
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp / name)
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
        _fsync(folder.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def is_checkpoint(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def read_config(folder: str | os.PathLike):
    """The model config stored in a checkpoint folder (CheckpointError if there is none)."""
    folder = _recover(Path(folder))
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder; a checkpoint is a folder with {CONFIG} and {WEIGHTS}")
    path = folder / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a checkpoint: it has no {CONFIG}")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    try:
        return config_from_dict(raw)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from e


def load_state(folder: Path, name: str = WEIGHTS) -> dict[str, torch.Tensor]:
    path = folder / name
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a checkpoint: it has no {name}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e


def load_checkpoint(folder: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the model from config.json and load its weights strictly, in eval mode."""
    folder = Path(folder)
    model = build_model(read_config(folder))
    state = load_state(folder)
    problems = _mismatches(model.state_dict(), state)
    if problems:
        raise CheckpointError(f"weights in {folder} do not match its {CONFIG}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


NEW_CONDITIONING = "class_embedding.weight"  # a tensor load_weights_into may add, at zero


def load_weights_into(model: torch.nn.Module, folder: str | os.PathLike) -> None:
    """Copy a checkpoint's weights into `model` (fine-tuning), which must have exactly its tensors and shapes.

    Only the weights travel: `model` keeps its own config (a sample rate or a data kind may differ). One
    tensor may be new: a class embedding (`class_embedding.weight`) the checkpoint's model lacked starts at
    zero, so the fine-tuned model begins as the checkpoint's, for every class, and learns what a class adds.
    A WaveNet may also be wider (more residual or dilation channels) than the checkpoint's: it is grown so
    that it computes what the checkpoint computes (core.models.wavenet_widen). CheckpointError names every
    tensor that is missing, extra or of another shape, or why a WaveNet cannot be grown.
    """
    folder = _recover(Path(folder))
    if not is_checkpoint(folder):
        raise CheckpointError(f"{folder} is not a checkpoint: a checkpoint is a folder with {CONFIG} and {WEIGHTS}")
    state = load_state(folder)
    if isinstance(model, WaveNet):
        old = read_config(folder)
        if isinstance(old, WaveNetConfig) and any(getattr(old, w) != getattr(model.config, w) for w in WIDENED):
            try:
                state = widen_state(state, old, model)
            except ConfigError as e:
                raise CheckpointError(f"the WaveNet in {folder} cannot be grown into this one: {e}") from e
    expected = model.state_dict()
    if NEW_CONDITIONING in expected and NEW_CONDITIONING not in state:
        state[NEW_CONDITIONING] = torch.zeros_like(expected[NEW_CONDITIONING])
    problems = _mismatches(expected, state)
    if problems:
        raise CheckpointError(f"the weights in {folder} do not fit this model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def _mismatches(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """What stops `state` loading strictly where `expected` (a state_dict) is: missing, extra, reshaped tensors."""
    problems = [f"missing tensor {k!r}" for k in expected if k not in state]
    problems += [f"unexpected tensor {k!r}" for k in state if k not in expected]
    problems += [
        f"tensor {k!r} has shape {tuple(state[k].shape)}, the config needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    return problems


def train_config_path(folder: str | os.PathLike) -> Path | None:
    """The training config saved with a checkpoint: `train_config.json` in a bundle, or the run folder's
    `config.json` for a run checkpoint (run/checkpoints/step_N); None if there is neither."""
    folder = Path(folder)
    return next((p for p in (folder / "train_config.json", folder.parent.parent / CONFIG) if p.is_file()), None)


def training_data(folder: str | os.PathLike) -> dict | None:
    """What a checkpoint was trained on: {"kind", "root", "card"}, or None when nothing says.

    kind and root come from its training config's data section (root "" for generated data), card is
    the model card's "- Data: ..." line without its prefix ("" if the card has none).
    """
    folder = Path(folder)
    path = train_config_path(folder)
    try:
        data = json.loads(path.read_text()).get("data") if path is not None else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        data = None
    try:
        card = next((line[len("- Data:"):].strip() for line in (folder / CARD).read_text().splitlines()
                     if line.startswith("- Data:")), "")
    except (OSError, UnicodeDecodeError):
        card = ""
    if not isinstance(data, dict) and not card:
        return None
    data = data if isinstance(data, dict) else {}
    return {"kind": str(data.get("kind", "")), "root": str(data.get("root") or ""), "card": card}


def read_metrics(folder: str | os.PathLike) -> dict:
    path = Path(folder) / METRICS
    return json.loads(path.read_text()) if path.is_file() else {}


def nll_unit(config: dict) -> str:
    """What one value of a model's NLL in bits is per, from its config.json (or a training config's model section):
    "timestep" for the sequence models scored by a particle filter (vrnn, srnn, ghmm: one frame), "dim" for an
    image model (pixelcnn, or a scanline WaveNet with an image_shape: one pixel), else "sample" (audio, or another
    1-D signal). The metrics.json keys keep their names ("valid_bits_per_sample", "test_bits_per_dim")."""
    if config.get("model_type") in ("vrnn", "srnn", "ghmm"):
        return "timestep"
    if config.get("model_type") == "pixelcnn" or "image_shape" in (config.get("extra") or {}):
        return "dim"
    return "sample"


def model_card(model: torch.nn.Module, metrics: dict | None = None, notes: str = "", title: str = "") -> str:
    """A Hub model card: YAML front matter, what the model is, its config and metrics.

    `title` names the model by what it is ("Bach melodies, 8 kHz"): the app lists it by that name
    (card_title reads it back from the front matter); without one the heading names the family.
    """
    if "\n" in title or '"' in title:
        raise ValueError(f"title must be one line without double quotes, got {title!r}")
    cfg = config_dict(model)
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        "---",
        "library_name: autoregressive-studio",
        f"tags: [autoregressive-studio, {model.model_type}]",
        *([f'title: "{title}"'] if title else []),
        "---",
        f"# {title or f'{model.model_type} checkpoint'}",
        "",
        f"Made with Autoregressive Studio. Parameters: {n_params:,}. {_field_sentence(model)}",
        "",
    ]
    if notes:
        lines += [notes.strip(), ""]
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in metrics.items()]
        lines.append("")
    lines += ["## Config", "", "```json", json.dumps(cfg, indent=2), "```", ""]
    return "\n".join(lines)


def card_title(folder: str | os.PathLike) -> str | None:
    """The `title:` of a checkpoint's model card front matter (see model_card), or None."""
    try:
        with open(Path(folder) / CARD, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return None
    front = _FRONT_MATTER_TITLE.search(head)
    if front is None:
        return None
    return front.group(1).strip().strip('"').strip() or None


_FRONT_MATTER_TITLE = re.compile(r'\A---\s*\n(?:(?!---).*\n)*?title:[ \t]*(.+?)[ \t]*\n')


def _field_sentence(model: torch.nn.Module) -> str:
    """What the model's prediction of one position sees: R samples, or (an image model) a region of pixels."""
    r = getattr(model, "receptive_field", None)
    if r is not None:
        return f"Receptive field: {r} samples."
    c = model.config
    if hasattr(c, "receptive_radius"):
        reach = "every earlier pixel" if c.covers_image else f"the earlier pixels within {c.receptive_radius}"
        return f"Receptive field: {reach} of the {c.height} x {c.width} image (radius {c.receptive_radius})."
    return ""


def _write_text(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _recover(folder: Path) -> Path:
    """Finish an overwrite that was killed between its two renames: the old folder wins."""
    old = folder.with_name(f".{folder.name}.old")
    if not folder.exists() and old.is_dir():
        os.replace(old, folder)
    return folder


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run folder (its `latest` pointer), or None."""
    run_dir = Path(run_dir)
    pointer = run_dir / "latest"
    if pointer.is_file():
        folder = run_dir / "checkpoints" / pointer.read_text().strip()
        if is_checkpoint(folder):
            return folder
    found = sorted(p for p in (run_dir / "checkpoints").glob("step_*") if is_checkpoint(p))
    return found[-1] if found else None


def remove_stale_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Clear what killed saves and deletions left in a run's `checkpoints/` folder; returns the paths removed.

    `.step_*.tmp` (a save killed before its rename) and `.step_*.deleting` (a deletion killed half way) are
    removed; `.step_*.old` (an overwrite killed between its renames) is put back where its checkpoint is
    missing (as loading does) and removed where the new one is in place. Call it only while no process is
    saving into the run (on resume, before training starts): a save in progress looks just like a stale one.
    `latest_checkpoint` does not call it, because the app calls that while runs are saving.
    """
    folder = Path(run_dir) / "checkpoints"
    removed = []
    for path in sorted(folder.glob(".step_*")):
        if not path.is_dir() or not path.name.endswith((".tmp", ".deleting", ".old")):
            continue
        if path.name.endswith(".old"):
            _recover(folder / path.name[1:].removesuffix(".old"))  # moves it back if its checkpoint is missing
        if path.exists():
            shutil.rmtree(path)
            removed.append(path)
    return removed


def remove_checkpoint(folder: str | os.PathLike) -> None:
    """Delete a checkpoint folder; it is renamed first so a half-deleted one never looks whole."""
    folder = Path(folder)
    doomed = folder.with_name(f".{folder.name}.deleting")
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
