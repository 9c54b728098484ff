"""Speech as sequences of frames, the way the FIVO paper prepares TIMIT, for any 16 kHz signals.

TIMIT is not free, so this frames whatever signals it is given, or an audio folder
(`speech_frames_from_folder`: root/{train,valid,test}/*.wav read as mono 16 kHz):

    mean, std = signal_stats(train_signals)          # one scalar each, over every training sample
    frames = frame_signal(signal, mean, std)         # (T, 200): standardise, zero-pad the end, reshape

Each step is 200 consecutive samples (12.5 ms at 16 kHz); the last frame is completed with
zeros after standardising. Every split is standardised with the *training* statistics. The
frames feed a Gaussian-emission VRNN / SRNN with data_dim = samples_per_step; store `mean` and
`std` in its config (signal_mean, signal_std) so samples can be turned back into audio with
`unframe`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.audio_folder import audio_files, audio_folder_split
from core.data.fetch import cache_dir
from core.data.pianorolls import check_frame_model
from core.data.registry import SPLITS, DataKind, check_split, register_kind
from core.data.sequences import SequenceDataset
from core.errors import ConfigError
from core.validation import check_int, need

SAMPLE_RATE = 16000
SAMPLES_PER_STEP = 200


def _check_signals(signals: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    if not signals:
        raise ConfigError(f"{what}: no signals to frame")
    out = [np.asarray(s, dtype=np.float64) for s in signals]
    for i, s in enumerate(out):
        if s.ndim != 1 or s.size == 0 or not np.isfinite(s).all():
            raise ConfigError(f"{what}: signal {i} must be a non-empty 1-D array of finite samples, got {s.shape}")
    return out


def signal_stats(signals: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean and standard deviation over every sample of every signal (one scalar each).

    Two passes over the signals one at a time (mean, then squared deviations), so memory stays that of
    the largest signal, not of all of them together.
    """
    if not signals:
        raise ConfigError("signal_stats: no signals to frame")
    count, total = 0, 0.0
    for i, s in enumerate(signals):
        s = np.asarray(s, dtype=np.float64)
        if s.ndim != 1 or s.size == 0 or not np.isfinite(s).all():
            raise ConfigError(f"signal_stats: signal {i} must be a non-empty 1-D array of finite samples, "
                              f"got {s.shape}")
        count, total = count + s.size, total + float(s.sum())
    mean = total / count
    std = math.sqrt(sum(float(np.square(np.asarray(s, dtype=np.float64) - mean).sum()) for s in signals) / count)
    if std == 0.0:
        raise ConfigError("signal_stats: the training signals are constant (standard deviation 0)")
    return mean, std


def training_stats(root: str | os.PathLike, max_files: int | None = None) -> tuple[float, float]:
    """signal_stats of root/train's files at 16 kHz, remembered on disk (the cache folder "speech_stats")
    under a key of the files' names, sizes and modification times: reading hours of audio takes seconds."""
    files = audio_files(root, "train")[:max_files]
    stats = [(Path(f).name, os.stat(f)) for f in files]  # one stat each: the app's start-up reads this for 3,600
    stamp = [str(Path(root).resolve()), *((name, st.st_size, st.st_mtime_ns) for name, st in stats)]
    key = hashlib.sha256(json.dumps([SAMPLE_RATE, stamp]).encode()).hexdigest()
    path = cache_dir("speech_stats") / f"{key}.json"
    try:
        mean, std = json.loads(path.read_text())
        return float(mean), float(std)
    except (OSError, ValueError, TypeError):
        pass
    mean, std = signal_stats(audio_folder_split(root, "train", SAMPLE_RATE, max_files))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([mean, std]))
    except OSError:
        pass  # a read-only cache only costs the next caller the reading
    return mean, std


def frame_signal(signal: np.ndarray, mean: float, std: float, samples_per_step: int = SAMPLES_PER_STEP) -> np.ndarray:
    """signal (S,) -> frames (ceil(S / samples_per_step), samples_per_step) float32 of (signal - mean) / std,
    the last frame completed with zeros."""
    if isinstance(samples_per_step, bool) or not isinstance(samples_per_step, int) or samples_per_step < 1:
        raise ConfigError(f"samples_per_step must be an integer >= 1, got {samples_per_step!r}")
    if not std > 0:
        raise ConfigError(f"std must be > 0, got {std!r}")
    (s,) = _check_signals([signal], "frame_signal")
    standard = (s - mean) / std
    standard = np.pad(standard, (0, -len(standard) % samples_per_step))
    return standard.reshape(-1, samples_per_step).astype(np.float32)


def unframe(frames: np.ndarray, mean: float, std: float) -> np.ndarray:
    """frames (..., T, F) standardised -> signal (..., T * F) float32 in the original units."""
    frames = np.asarray(frames, dtype=np.float64)
    return (frames.reshape(*frames.shape[:-2], -1) * std + mean).astype(np.float32)


def independent_gaussian_ll(frames: Sequence[np.ndarray]) -> float:
    """Log-likelihood in nats per timestep of standardised `frames` (each (T_i, F)) under an independent N(0, 1)
    per value, the training signal's own mean and deviation: the floor a speech-frame model must beat."""
    values = np.concatenate([np.asarray(f, dtype=np.float64).reshape(len(f), -1) for f in frames])
    return float((-0.5 * np.square(values) - 0.5 * math.log(2 * math.pi)).sum(axis=1).mean())


def speech_frame_splits(splits: dict[str, Sequence[np.ndarray]], samples_per_step: int = SAMPLES_PER_STEP
                        ) -> tuple[dict[str, SequenceDataset], float, float]:
    """{"train": signals, other splits...} -> ({split: SequenceDataset of (T_i, samples_per_step)}, mean, std),
    every split standardised with the training split's statistics."""
    if "train" not in splits:
        raise ConfigError(f"speech_frame_splits needs a 'train' split to standardise with, got {sorted(splits)}")
    mean, std = signal_stats(splits["train"])
    datasets = {name: SequenceDataset([frame_signal(s, mean, std, samples_per_step) for s in signals])
                for name, signals in splits.items()}
    return datasets, mean, std


def speech_frames_from_folder(root: str | os.PathLike, samples_per_step: int = SAMPLES_PER_STEP,
                              sample_rate: int = SAMPLE_RATE, max_files: int | None = None
                              ) -> tuple[dict[str, SequenceDataset], float, float]:
    """An audio folder (root/train/*.wav required; valid/ and test/ used when present), read as mono at
    `sample_rate` -> speech_frame_splits of its clips: ({split: frames}, train mean, train std)."""
    splits = {split: audio_folder_split(root, split, sample_rate, max_files)
              for split in SPLITS if split == "train" or (Path(root) / split).is_dir()}
    return speech_frame_splits(splits, samples_per_step)


@register_kind("speech_frames")
@dataclass
class SpeechFrameData(DataKind):
    """Any audio folder framed the way the FIVO seed frames TIMIT: 16 kHz, samples_per_step samples per
    step, standardised by the training split's mean and deviation; whole utterances, Gaussian emissions."""

    path_fields = ("root",)

    root: str = ""  # the folder holding train/, valid/ and test/
    samples_per_step: int = SAMPLES_PER_STEP
    max_files: int | None = None  # read at most this many files per split

    def __post_init__(self) -> None:
        need(isinstance(self.root, str) and bool(self.root),
             f"root must name a folder with train/, valid/ and test/ subfolders, got {self.root!r}")
        check_int("samples_per_step", self.samples_per_step, 1)
        if self.max_files is not None:
            check_int("max_files", self.max_files, 1)

    def build(self, split: str, model_config) -> SequenceDataset:
        check_split(split)
        check_frame_model(model_config, self.samples_per_step, "gaussian", "speech frames")
        mean, std = model_config.signal_mean, model_config.signal_std
        signals = audio_folder_split(self.root, split, SAMPLE_RATE, self.max_files)
        return SequenceDataset([frame_signal(x, mean, std, self.samples_per_step) for x in signals])

    def model_settings(self, model: dict) -> dict:
        """Frames of samples_per_step values, Gaussian, and the training signal's mean and deviation."""
        settings = {"data_dim": self.samples_per_step, "emission": "gaussian", "sample_rate": SAMPLE_RATE}
        if "signal_mean" not in model or "signal_std" not in model:
            mean, std = training_stats(self.root, self.max_files)
            settings.update(signal_mean=mean, signal_std=std)
        return settings
