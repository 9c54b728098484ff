"""The one batch type every objective reads, and the base class of every data set's splits.

    Batch(x, cond, lengths, score_from)
        x           (B, T) long tokens, or (B, T, D) float frames (pianorolls, speech frames)
        cond        Cond with classes (B,) and/or local (B, C_local, T_local), or None
        lengths     (B,) long: valid steps of each item (padding after them), or None: all T
        score_from  positions before it are context only (an audio window's first R samples)
        reset       (B,) bool: rows that start a new sequence (truncated backprop drops their carried
                    state), or None: batches are independent

A split is a `SplitDataset`: a torch Dataset that also says how its items become a `Batch`
(`collate`), how it is iterated for training and evaluation (`loader`), and where scoring starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from core.conditioning import Cond


@dataclass
class Batch:
    x: torch.Tensor
    cond: Cond | None = None
    lengths: torch.Tensor | None = None
    score_from: int = 0
    reset: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        cond = None if self.cond is None else Cond(
            classes=None if self.cond.classes is None else self.cond.classes.to(device),
            local=None if self.cond.local is None else self.cond.local.to(device))
        lengths = None if self.lengths is None else self.lengths.to(device)
        reset = None if self.reset is None else self.reset.to(device)
        return Batch(self.x.to(device), cond, lengths, self.score_from, reset)


class SplitDataset(Dataset):
    """One split of a data kind. Subclasses give `__len__`, `__getitem__` and `collate`.

    score_from: positions of each item before it are context only (0: all are scored).
    """

    score_from = 0

    def collate(self, items: list) -> Batch:
        """The items of one batch as a Batch."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Re-draw whatever an epoch randomises (a window's offset); nothing by default."""

    def loader(self, batch_size: int, *, world: int = 1, rank: int = 0, seed: int = 0, epoch: int = 0,
               train: bool = True) -> DataLoader:
        """This rank's batches of one epoch: shuffled with `seed` and `epoch` and only whole batches for
        training; in order and every item once over all ranks (items rank, rank + world, ...; the last
        batch may be short) for evaluation."""
        self.set_epoch(epoch)
        if train:
            sampler = DistributedSampler(self, world, rank, shuffle=True, seed=seed, drop_last=True)
            sampler.set_epoch(epoch)
        else:  # not DistributedSampler: it pads the ranks to equal shares by repeating items
            sampler = range(rank, len(self), world)
        return DataLoader(self, batch_size=batch_size, sampler=sampler, drop_last=train, collate_fn=self.collate)
