"""Whole-sequence data sets of frames (pianorolls, speech frames) and their padded batches.

An item is one whole sequence, a float tensor (T_i, D). A batch pads to its longest item:

    targets (B, T, D)  the frames, zeros past each length, not centred
    inputs  (B, T, D)  input_t = target_{t-1} - mean, input_0 = 0, zeros past each length
    lengths (B,)       valid steps per item

Training batches (`core.data.batch.Batch`) carry only x = targets and lengths: a sequence
model derives the inputs from x with `shifted_inputs` and the mean stored in its config, so a
checkpoint needs nothing from the data set. The collate still returns the inputs, for pages and
tests that want to look at them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from core.data.batch import Batch, SplitDataset


def shifted_inputs(x: torch.Tensor, mean: torch.Tensor | None = None,
                   lengths: torch.Tensor | None = None) -> torch.Tensor:
    """x (B, T, D), mean (D,) or None -> inputs (B, T, D): x shifted right one step and centred.

    inputs[:, 0] = 0 and inputs[:, t] = x[:, t-1] - mean; with lengths (B,), steps at or past a
    sequence's length are 0.
    """
    centred = x[:, :-1] if mean is None else x[:, :-1] - mean
    inputs = torch.cat([torch.zeros_like(x[:, :1]), centred], dim=1)
    if lengths is not None:
        valid = torch.arange(x.shape[1], device=x.device) < lengths.to(x.device).unsqueeze(1)
        inputs = inputs * valid.unsqueeze(-1).to(inputs.dtype)
    return inputs


class PaddedSequences(NamedTuple):
    targets: torch.Tensor  # (B, T, D) float32, zeros past each length
    inputs: torch.Tensor  # (B, T, D) shifted and centred, see shifted_inputs
    lengths: torch.Tensor  # (B,) long


class SequenceDataset(SplitDataset):
    """Whole sequences as items: sequences[i] (T_i, D) -> float32 tensor (T_i, D); batches padded with lengths."""

    def __init__(self, sequences: Sequence[np.ndarray]):
        if not sequences:
            raise ValueError("a sequence data set needs at least one sequence")
        dims = {np.shape(s)[1] if np.ndim(s) == 2 else None for s in sequences}
        if len(dims) != 1 or None in dims or any(len(s) == 0 for s in sequences):
            raise ValueError(f"every sequence must be a non-empty (T_i, D) array with one D; got dims {dims}")
        self.sequences = [torch.as_tensor(np.asarray(s, dtype=np.float32)) for s in sequences]

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.sequences[i]

    def collate(self, items: list[torch.Tensor]) -> Batch:
        """Items (T_i, D) -> Batch x (B, max T_i, D) zeros past each length, lengths (B,)."""
        x, lengths = pad_sequences(items)
        return Batch(x, lengths=lengths)

    @property
    def frames(self) -> int:
        """Total number of frames (timesteps) over all sequences."""
        return sum(len(s) for s in self.sequences)


def pad_sequences(items: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Items (T_i, D) -> (padded (B, max T_i, D) zeros past each length, lengths (B,) long)."""
    lengths = torch.tensor([len(s) for s in items], dtype=torch.long)
    padded = torch.zeros(len(items), int(lengths.max()), items[0].shape[1], dtype=items[0].dtype)
    for b, s in enumerate(items):
        padded[b, : len(s)] = s
    return padded, lengths


class Collate:
    """DataLoader collate_fn: items (T_i, D) -> PaddedSequences, inputs centred by `mean` (D,) or not."""

    def __init__(self, mean: Sequence[float] | np.ndarray | None = None):
        self.mean = None if mean is None else torch.as_tensor(np.asarray(mean, dtype=np.float32))

    def __call__(self, items: Sequence[torch.Tensor]) -> PaddedSequences:
        targets, lengths = pad_sequences(items)
        return PaddedSequences(targets, shifted_inputs(targets, self.mean, lengths), lengths)
