"""A folder of audio files split into train / valid / test, the layout of the wayback code:

    root/
      train/*.wav   (or .flac, .ogg)
      valid/*.wav
      test/*.wav
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from core.audio import read_audio
from core.errors import AudioError, ConfigError

SPLITS: tuple[str, ...] = ("train", "valid", "test")
SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg")
LAYOUT = "root/{train,valid,test}/*.wav (or .flac, .ogg)"


def audio_files(root: str | os.PathLike, split: str) -> list[Path]:
    """The audio files of `split` under `root`, sorted by name. ConfigError if there are none."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
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
    if max_files is not None and (isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1):
        raise ConfigError(f"max_files must be None or an integer >= 1, got {max_files!r}")
    clips = []
    for path in audio_files(root, split)[:max_files]:
        try:
            clips.append(read_audio(path, sample_rate))
        except AudioError as e:
            raise AudioError(f"{path}: {e}") from e
    return clips
