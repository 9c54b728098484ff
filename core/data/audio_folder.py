"""A folder of audio files split into train / valid / test, the layout of the wayback code:

    root/
      train/*.wav   (or .flac, .ogg)
      valid/*.wav
      test/*.wav
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.audio import read_audio
from core.data.registry import DataKind, check_split, register_kind
from core.data.windows import WindowDataset, audio_windows, check_audio_model
from core.errors import AudioError, ConfigError
from core.pitch import CLASS_SOURCES, SILENT_RMS, pitch_class
from core.validation import check_int, need

SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg")
FRAME_S = 0.01
LAYOUT = "root/{train,valid,test}/*.wav (or .flac, .ogg)"


def audio_files(root: str | os.PathLike, split: str) -> list[Path]:
    """The audio files of `split` under `root`, sorted by name. ConfigError if there are none."""
    check_split(split)
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"no data folder at {str(root)!r}; an audio folder has the layout {LAYOUT}")
    folder = root / split
    if not folder.is_dir():
        raise ConfigError(f"no {split!r} folder at {str(folder)!r}; an audio folder has the layout {LAYOUT}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise ConfigError(f"no audio files in {str(folder)!r}; an audio folder has the layout {LAYOUT}")
    return files


def audio_folder_split(
    root: str | os.PathLike, split: str, sample_rate: int, max_files: int | None = None
) -> list[np.ndarray]:
    """Read the first `max_files` (all if None) files of `root/split` as float32 mono (T_i,) at `sample_rate`.

    Raises ConfigError for a missing folder or a split without audio files, and
    AudioError naming the file for a file that cannot be used.
    """
    if max_files is not None:
        check_int("max_files", max_files, 1)
    clips = []
    for path in audio_files(root, split)[:max_files]:
        try:
            clips.append(read_audio(path, sample_rate))
        except AudioError as e:
            raise AudioError(f"{path}: {e}") from e
    return clips


def shorten_silences(x: np.ndarray, sample_rate: int, max_seconds: float) -> np.ndarray:
    """x (T,) with every silent stretch (a run of 10 ms frames under SILENT_RMS) longer than `max_seconds` cut to
    `max_seconds`: its first and last halves are kept, so sound still fades out and in as it did."""
    frame = max(1, round(FRAME_S * sample_rate))
    n = len(x) // frame
    if n == 0:
        return x
    rms = np.sqrt(np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    keep_frames = max(1, round(max_seconds / FRAME_S))
    keep = np.ones(len(x), bool)
    silent = np.concatenate([[False], rms < SILENT_RMS, [False]])
    starts, ends = np.flatnonzero(~silent[:-1] & silent[1:]), np.flatnonzero(silent[:-1] & ~silent[1:])
    for a, b in zip(starts, ends, strict=True):  # frames [a, b) are silent
        if b - a > keep_frames:
            head = keep_frames // 2
            keep[(a + head) * frame : (b - (keep_frames - head)) * frame] = False
    return x[keep]


@register_kind("audio_folder")
@dataclass
class AudioFolderData(DataKind):
    """A folder of audio files, root/{train,valid,test}/*.wav, resampled to the model's rate, cut into windows."""

    path_fields = ("root",)

    root: str = ""  # the folder holding train/, valid/ and test/
    targets: int = 1024  # T: scored positions per window, and the stride between windows
    max_files: int | None = None  # read at most this many files per split
    seed: int = 0  # the random window offsets
    max_silence: float = 0.0  # seconds: longer silent stretches in every split are cut to this (0 = keep them)
    classes: str = ""  # "" = none; "pitch" = each file's pitch register (core.pitch.pitch_class) is its class

    def __post_init__(self) -> None:
        need(isinstance(self.root, str) and bool(self.root),
             f"root must name a folder with train/, valid/ and test/ subfolders, got {self.root!r}")
        check_int("targets", self.targets, 1)
        if self.max_files is not None:
            check_int("max_files", self.max_files, 1)
        check_int("seed", self.seed, 0)
        need(isinstance(self.max_silence, (int, float)) and not isinstance(self.max_silence, bool)
             and 0 <= self.max_silence < float("inf"), f"max_silence must be seconds >= 0, got {self.max_silence!r}")
        need(self.classes in CLASS_SOURCES, f"classes must be one of {CLASS_SOURCES}, got {self.classes!r}")

    def build(self, split: str, model_config) -> WindowDataset:
        """The windows of `split`: its files read at the model's rate, tokenised by its codec."""
        check_audio_model(model_config)
        wanted = getattr(model_config, "classes_from", "")
        if wanted != self.classes:
            raise ConfigError(f"the data's classes ({self.classes or 'none'!r}) must be what the model's classes_from "
                              f"says ({wanted or 'none'!r}): set data.classes and model.classes_from alike")
        rate = model_config.sample_rate
        signals = audio_folder_split(self.root, split, rate, self.max_files)
        classes = [pitch_class(x, rate) for x in signals] if self.classes == "pitch" else None
        if self.max_silence:
            signals = [shorten_silences(x, rate, self.max_silence) for x in signals]
        return audio_windows(signals, split, model_config, self.targets, self.seed, classes)
