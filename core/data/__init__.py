"""Data sets for training, one registered *kind* each, and the function that builds their splits.

    data = data_config_from_dict({"kind": "tones", "clips": 8})    # the kind's config dataclass
    train = build_split(data, "train", model_config)                # a SplitDataset of that kind
    for batch in train.loader(batch_size=8): ...                    # core.data.batch.Batch

Kinds: "tones" (synthetic, seeded), "audio_folder" (root/{train,valid,test}/*.wav), both cut
into windows of R + T tokens scored on the last T (or streams of segments for a recurrent
model); "mnist" (class-conditional 784-pixel scanlines) and "fourier" (period-conditioned 50 Hz
curves), whole items scored; "pianorolls" (88-key frames), "speech_frames" (framed audio) and
"ghmm" (drawn from the Gaussian HMM), whole sequences of frames with lengths.

The package's bottom is `registry.py` (the kind registry) and `batch.py` (Batch, SplitDataset);
each kind module registers its config class; this module imports them all and is the top.
A new kind is a module with a `@register_kind` config class and one line below.
"""

from __future__ import annotations

from dataclasses import asdict, fields

from core.config_dicts import dataclass_from_dict
from core.data import audio_folder, fourier, ghmm, mnist, pianorolls, speech_frames, tones  # noqa: F401
from core.data.batch import Batch, SplitDataset
from core.data.registry import KINDS, SPLITS, check_split
from core.errors import ConfigError

DATA_KINDS: tuple[str, ...] = tuple(KINDS)
# The keys of the one flat `data` section every config had before kinds were a registry, where the keys
# of other kinds were accepted and ignored: a section made only of these keeps its kind's keys when read.
LEGACY_KEYS = frozenset({"kind", "root", "targets", "clips", "seconds", "frequency", "kinds", "max_files", "seed",
                         "levels", "mnist_path", "fourier_curves", "fourier_length", "fourier_terms", "max_items"})

__all__ = ["DATA_KINDS", "SPLITS", "Batch", "SplitDataset", "build_split", "data_config", "data_config_from_dict",
           "data_config_to_dict"]


def data_config_from_dict(d: dict | None):
    """The kind's config from a `data` section {"kind": name, **fields} (kind "tones" if absent).

    ConfigError for an unknown kind or key, naming the known ones. An old flat section (only
    LEGACY_KEYS keys, as config.json files of earlier runs hold) keeps its kind's keys, as it meant.
    """
    d = dict(d or {})
    kind = d.pop("kind", "tones")
    if kind not in KINDS:
        raise ConfigError(f"data.kind must be one of {DATA_KINDS}, got {kind!r}")
    cls = KINDS[kind]
    if set(d) <= LEGACY_KEYS:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
    return dataclass_from_dict(cls, d, f"{kind} data")


def data_config(kind: str = "tones", **settings):
    """`data_config_from_dict({"kind": kind, **settings})`."""
    return data_config_from_dict({"kind": kind, **settings})


def data_config_to_dict(data) -> dict:
    """The `data` section of a config: {"kind": name, **fields}."""
    return {"kind": data.kind, **asdict(data)}


def build_split(data, split: str, model_config) -> SplitDataset:
    """The `split` ("train", "valid" or "test") of `data`'s kind, made for `model_config`.

    ConfigError (or another StudioError) when the split cannot be made for that model, saying why.
    """
    check_split(split)
    return data.build(split, model_config)
