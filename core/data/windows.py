"""Training windows over token sequences, each scored target seeing a full receptive field.

A model with receptive field R predicts x_t from x_{t-R} .. x_{t-1}. A window of
length R + T cut from a sequence at `start` is

    window = seq[start : start + R + T]                                     (R + T,)
             |<----- R context ----->|<-------- T targets -------->|

and the training loss uses only positions [R, R + T) of each window: their logits see R
real samples, never the zero padding in front of the window, so the loss of a target
does not depend on where the window was cut. Windows of one sequence start at
`offset + k * T` (stride T): consecutive windows overlap by exactly R samples and every
target is scored once per epoch.

With `random_offset=True` (training), `set_epoch` re-draws each sequence's offset so
that, over epochs, the targets left over at the end of a sequence get scored too. The
offset of a sequence is drawn from [0, min(T, slack + 1)), where slack is what is left
after its windows at offset 0; so a sequence gives the same number of windows every
epoch, `len(dataset)` never changes (a `DistributedSampler` fixes it once), and over
epochs every position in [R, len) is a target. Validation uses offset 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from core.codecs import encode
from core.conditioning import Cond
from core.data.batch import Batch, SplitDataset
from core.data.segments import StreamSplit
from core.errors import ConfigError
from core.validation import check_int, need


class AudioModelConfig(Protocol):
    """What audio windows need from a model config (e.g. `WaveNetConfig`)."""

    quantization_levels: int
    codec: str
    sample_rate: int

    @property
    def receptive_field(self) -> int: ...


def check_audio_model(model_config: AudioModelConfig) -> None:
    """ConfigError unless the model takes audio: a codec other than "none" and a sample rate."""
    if model_config.codec == "none":
        raise ConfigError("this data is audio, but the model's codec is 'none'; "
                          "use codec 'mulaw' or 'linear' to train on audio")
    if model_config.sample_rate <= 0:
        raise ConfigError(f"this data is audio, but the model's sample_rate is {model_config.sample_rate}; "
                          "set the model's sample_rate (e.g. 16000)")


def audio_windows(signals: list[np.ndarray], split: str, model_config: AudioModelConfig, targets: int,
                  seed: int, classes: Sequence[int] | None = None) -> SplitDataset:
    """Float signals (T_i,) in [-1, 1] at the model's rate -> its tokens, as the model reads them.

    A convolutional model (its config has a receptive field R) gets windows of R + T, random
    offsets for "train" and offset 0 for "valid" and "test"; a recurrent one (its config has a
    segment_length instead) gets consecutive segments of parallel streams (core.data.segments).
    `classes` (one id per signal) makes every window of a signal carry its class (ClassedWindows).
    """
    check_audio_model(model_config)
    n_classes = getattr(model_config, "n_classes", 0)
    if n_classes and classes is None:
        raise ConfigError(f"the model is class-conditional (n_classes {n_classes}) but this data gives no class ids")
    if classes is not None and not n_classes:
        raise ConfigError("this data gives class ids but the model has none (n_classes 0)")
    sequences = [encode(x, model_config.quantization_levels, model_config.codec) for x in signals]
    if hasattr(model_config, "segment_length"):
        return StreamSplit(sequences, model_config.segment_length, seed=seed, shuffle=split == "train")
    args = dict(receptive_field=model_config.receptive_field, targets=targets, seed=seed,
                random_offset=split == "train")
    return WindowDataset(sequences, **args) if classes is None else ClassedWindows(sequences, classes, **args)


class WindowDataset(SplitDataset):
    """Windows of length R + T and stride T over 1-D int64 token sequences.

    sequences:       list of integer numpy arrays, each (L_i,)
    receptive_field: R, positions of context in front of the targets
    targets:         T, scored positions per window (also the stride)
    seed:            with the epoch, decides the random offsets
    random_offset:   True for training (a drawn offset per sequence and epoch), False for
                     validation / test (offset 0)

    `dataset[i]` is a LongTensor (R + T,); the loss uses positions [R, R + T).
    Raises ConfigError when no sequence is long enough for one window.
    """

    def __init__(
        self,
        sequences: Sequence[np.ndarray],
        receptive_field: int,
        targets: int,
        seed: int = 0,
        random_offset: bool = True,
    ):
        check_int("receptive_field", receptive_field, 1)
        check_int("targets", targets, 1)
        check_int("seed", seed, 0)
        self.sequences = [np.asarray(s) for s in sequences]
        for i, s in enumerate(self.sequences):
            if s.ndim != 1 or not np.issubdtype(s.dtype, np.integer):
                raise ConfigError(f"sequences[{i}] must be a 1-D integer array, got {s.dtype} {s.shape}")
        self.receptive_field, self.targets = int(receptive_field), int(targets)
        self.seed, self.random_offset = int(seed), random_offset
        self.window = self.receptive_field + self.targets
        if not self.sequences:
            raise ConfigError("no sequences to cut windows from; the data split is empty")

        lengths = np.array([len(s) for s in self.sequences])
        room = np.maximum(lengths - self.receptive_field, 0)
        self._counts = room // self.targets  # windows per sequence, at any offset
        self._slack = room - self._counts * self.targets  # in [0, T): how far the offset may move
        if self._counts.sum() == 0:
            span = f"{lengths.min()} to {lengths.max()}" if lengths.min() < lengths.max() else f"{lengths.min()}"
            raise ConfigError(
                f"no clip is long enough for one training window: clips have {span} samples, "
                f"but a window needs R + T = {self.receptive_field} + "
                f"{self.targets} = {self.window} (receptive field R, targets T). Use a smaller "
                f"`targets`, longer clips, or a model with a smaller receptive field."
            )
        self._ends = np.cumsum(self._counts)  # window i belongs to the first sequence with i < end
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the start offset of every sequence for `epoch` (all 0 without random_offset).

        The offsets are a function of (seed, epoch) only, so every process of a
        multi-process run, and every rerun, cuts the same windows.
        """
        check_int("epoch", epoch, 0)
        if self.random_offset:
            rng = np.random.default_rng([self.seed, int(epoch)])
            self._offsets = rng.integers(0, self._slack + 1)
        else:
            self._offsets = np.zeros_like(self._slack)

    @property
    def offsets(self) -> tuple[int, ...]:
        """The start offset of each sequence's first window this epoch, each in [0, T)."""
        return tuple(int(o) for o in self._offsets)

    @property
    def score_from(self) -> int:
        """The first window position the loss scores: R (earlier ones lack a full field)."""
        return self.receptive_field

    def __len__(self) -> int:
        return int(self._ends[-1])

    def sequence_of(self, index: int) -> int:
        """Which sequence window `index` is cut from (windows count through the sequences in order)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"window index {index} out of range for {n} windows")
        return int(np.searchsorted(self._ends, index % n, side="right"))

    def __getitem__(self, index: int) -> torch.Tensor:
        """LongTensor (R + T,): window `index`, counting through the sequences in order."""
        s = self.sequence_of(index)
        k = index % len(self) - (int(self._ends[s - 1]) if s else 0)
        start = int(self._offsets[s]) + k * self.targets
        return torch.from_numpy(self.sequences[s][start : start + self.window].astype(np.int64))

    def collate(self, items: list[torch.Tensor]) -> Batch:
        """Windows (R + T,) -> Batch x (B, R + T), scored from R."""
        return Batch(torch.stack(items), score_from=self.score_from)


class ClassedWindows(WindowDataset):
    """WindowDataset whose sequences each have a class id; `classes` (one int >= 0 per sequence).

    `dataset[i]` is (window LongTensor (R + T,), class id); a batch carries the classes as Cond(classes (B,)).
    """

    def __init__(self, sequences: Sequence[np.ndarray], classes: Sequence[int], **windows):
        super().__init__(sequences, **windows)
        need(len(classes) == len(self.sequences),
             f"classes must give one id per sequence: {len(classes)} for {len(self.sequences)} sequences")
        for c in classes:
            check_int("class id", c, 0)
        self.classes = [int(c) for c in classes]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        window = super().__getitem__(index)
        return window, self.classes[self.sequence_of(index)]

    def collate(self, items: list[tuple[torch.Tensor, int]]) -> Batch:
        """(window (R + T,), class) items -> Batch x (B, R + T), cond classes (B,), scored from R."""
        return Batch(torch.stack([w for w, _ in items]), cond=Cond(classes=torch.tensor([c for _, c in items])),
                     score_from=self.score_from)
