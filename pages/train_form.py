"""The Train page's form: model family, model JSON, data, optimiser settings -> a training config dict.

    config_from_form(...)                 the form's values -> a training config dict (train_config layout)
    presets() / preset_values(config)     configs/*.json, and the form's values for a config
    family_model_json(family)             a family's model section at its defaults, as editable JSON
    device_choices(), data_folders(uploads)
    upload_data(uploads, name, files)     the upload handler: uploaded audio -> a data folder, selected

The model families and data kinds offered are those of core.models.model_types() and core.data.DATA_KINDS.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import gradio as gr
import torch

from core.data.registry import KINDS
from core.errors import ConfigError, StudioError
from core.jobs import READ_ONLY
from core.models import model_class
from core.training import config as train_config
from core.training.config import OptimConfig
from core.training.objectives import objective_config_from_dict
from pages.uploads import save_uploads

CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # presets: every configs/*.json
TRAIN_FIELDS = ("lr", "batch_size", "max_steps", "valid_every", "log_every")
FORM_KINDS = {"tones": ("targets", "clips", "seconds", "frequency", "kinds"), "audio_folder": ("root", "targets")}


def kind_defaults(kind: str) -> dict:
    """A data kind's settings at their defaults (a required one, such as a folder, as None)."""
    out = {}
    for f in fields(KINDS[kind]):
        out[f.name] = f.default_factory() if f.default_factory is not MISSING else f.default
    return out


TONE_KINDS = kind_defaults("tones")["kinds"]


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
    data_defaults, shown = kind_defaults(data["kind"]), kind_defaults("tones")
    extra = [f"data.{k}={json.dumps(v)}" for k, v in data.items()
             if k not in FORM_KINDS.get(data["kind"], ()) and k != "kind" and v != data_defaults.get(k)]
    objective = config.get("objective") or {}
    if objective.get("name") != model_class(model["model_type"]).default_objective:
        extra += [f"objective.{k}={json.dumps(v)}" for k, v in objective.items()]
    else:  # the family's own objective: the settings the config changes (an ELBO preset's bound, say)
        defaults = asdict(objective_config_from_dict({"name": objective["name"]}, objective["name"]))
        extra += [f"objective.{k}={json.dumps(v)}" for k, v in objective.items()
                  if k != "name" and v != defaults.get(k)]
    extra += [f"train.{k}={json.dumps(v)}" for k, v in opt.items()
              if k not in TRAIN_FIELDS and v != asdict(OptimConfig()).get(k)]
    form = {**shown, "root": None, **{k: v for k, v in data.items() if k in FORM_KINDS.get(data["kind"], ())}}
    return [model["model_type"], json.dumps(model, indent=2), data["kind"], form["root"] or None, form["targets"],
            form["clips"], form["seconds"], form["frequency"] or 0, form["kinds"],
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
    data = {"kind": data_kind}
    if data_kind == "tones":
        data.update(targets=targets, clips=clips, seconds=seconds, frequency=frequency or None,
                    kinds=list(tone_kinds or []))
    elif data_kind == "audio_folder":
        data.update(root=data_folder or "", targets=targets)
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


def data_folders(uploads: str | os.PathLike) -> list[str]:
    """Folders under data/ and `uploads` that hold train/ and valid/ subfolders."""
    found = []
    for root in dict.fromkeys([Path("data"), Path(uploads)]):
        if root.is_dir():
            found += [str(d) for d in sorted(root.iterdir())
                      if d.is_dir() and (d / "train").is_dir() and (d / "valid").is_dir()]
    return found


def upload_data(uploads: str | os.PathLike, name: str, files: list[str] | None, *, read_only: bool = False) -> tuple:
    """The upload handler: a new data folder under `uploads`, selected as the data set; (message, kind, folder).

    Refused when `read_only` (a public demo), whoever calls it.
    """
    try:
        if read_only:
            raise ConfigError(READ_ONLY)
        folder = save_uploads(uploads, (name or "").strip(), files)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from None
    counts = {s: len(list((folder / s).glob("*.wav"))) for s in ("train", "valid")}
    message = f"Made **{folder}**: {counts['train']} training and {counts['valid']} validation file(s)."
    return message, "audio_folder", gr.Dropdown(choices=data_folders(uploads), value=str(folder))
