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
from core.validation import check_int, need

SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg")
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


@register_kind("audio_folder")
@dataclass
class AudioFolderData(DataKind):
    """A folder of audio files, root/{train,valid,test}/*.wav, resampled to the model's rate, cut into windows."""

    path_fields = ("root",)

    root: str = ""  # the folder holding train/, valid/ and test/
    targets: int = 1024  # T: scored positions per window, and the stride between windows
    max_files: int | None = None  # read at most this many files per split
    seed: int = 0  # the random window offsets

    def __post_init__(self) -> None:
        need(isinstance(self.root, str) and bool(self.root),
             f"root must name a folder with train/, valid/ and test/ subfolders, got {self.root!r}")
        check_int("targets", self.targets, 1)
        if self.max_files is not None:
            check_int("max_files", self.max_files, 1)
        check_int("seed", self.seed, 0)

    def build(self, split: str, model_config) -> WindowDataset:
        """The windows of `split`: its files read at the model's rate, tokenised by its codec."""
        check_audio_model(model_config)
        signals = audio_folder_split(self.root, split, model_config.sample_rate, self.max_files)
        return audio_windows(signals, split, model_config, self.targets, self.seed)
