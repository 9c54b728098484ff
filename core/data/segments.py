"""Consecutive segments of B parallel streams, for truncated backprop with the state carried on.

Each sequence is laid into one of B streams (the stream with the fewest segments so far takes the
next sequence, so the streams stay even) and cut into segments of L samples:

    stream b:  | seq 3: seg 0 | seg 1 | seg 2 (padded) | seq 0: seg 0 | ...
    batch k:   row b = stream b's k-th segment                                  x (B, L)

Batch k+1 continues batch k row by row, so the state after batch k is the state batch k+1 starts
from. A row whose segment begins a sequence has reset=True (its state restarts from zero and a
chunk of start symbols); the last segment of a sequence is padded after `lengths[b]` valid samples,
and rows past the end of a stream have length 0. Every sample of every sequence is scored exactly
once per epoch, the first one included (predicted from the zero state).

The one-element overlap of the reference code is not needed here: the model's state carries the
previous chunk, which is the input of the next segment's first step. For the wayback layout L is a
multiple of chunk_size x segment_steps (WaybackConfig.segment_length), so every segment starts and
ends on a cycle boundary of every layer and on a gradient-block boundary.

Iterate the batches in order: `for k in range(len(ds)): batch = ds[k]`, or
`DataLoader(ds, batch_size=None, shuffle=False)`. `set_epoch(e)` re-deals the sequences to the
streams (training); `shuffle=False` keeps the given order (validation, test).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from core.data.batch import Batch, SplitDataset
from core.errors import ConfigError


@dataclass
class SegmentBatch:
    """x (B, L) long tokens (padding 0); lengths (B,) valid samples per row; reset (B,) bool, a sequence starts."""

    x: torch.Tensor
    lengths: torch.Tensor
    reset: torch.Tensor


class SegmentStreams(Dataset):
    """Batches of consecutive segments over 1-D int token sequences.

    sequences:      list of integer arrays, each (L_i,), L_i >= 1
    batch_size:     B, parallel streams
    segment_length: L, samples per segment
    seed, shuffle:  with the epoch, decide which stream each sequence goes to (shuffle=False: in order)
    """

    def __init__(self, sequences: Sequence[np.ndarray], batch_size: int, segment_length: int,
                 seed: int = 0, shuffle: bool = True):
        for name, value in (("batch_size", batch_size), ("segment_length", segment_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        self.sequences = [np.asarray(s) for s in sequences]
        if not self.sequences:
            raise ConfigError("no sequences to cut segments from; the data split is empty")
        for i, s in enumerate(self.sequences):
            if s.ndim != 1 or len(s) == 0 or not np.issubdtype(s.dtype, np.integer):
                raise ConfigError(f"sequences[{i}] must be a non-empty 1-D integer array, got {s.dtype} {s.shape}")
        self.batch_size, self.segment_length = batch_size, segment_length
        self.seed, self.shuffle = seed, shuffle
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Deal the sequences to the streams for `epoch`: plan[b] = [(sequence, segment index), ...]."""
        order = np.arange(len(self.sequences))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        self.plan: list[list[tuple[int, int]]] = [[] for _ in range(self.batch_size)]
        heap = [(0, b) for b in range(self.batch_size)]
        for i in order:
            used, b = heapq.heappop(heap)
            n = -(-len(self.sequences[i]) // self.segment_length)
            self.plan[b].extend((int(i), j) for j in range(n))
            heapq.heappush(heap, (used + n, b))

    def __len__(self) -> int:
        return max(len(p) for p in self.plan)

    def __getitem__(self, k: int) -> SegmentBatch:
        if not 0 <= k < len(self):
            raise IndexError(f"batch {k} out of range [0, {len(self)})")
        seg = self.segment_length
        x = np.zeros((self.batch_size, seg), dtype=np.int64)
        lengths = np.zeros(self.batch_size, dtype=np.int64)
        reset = np.ones(self.batch_size, dtype=bool)
        for b, plan in enumerate(self.plan):
            if k < len(plan):
                i, j = plan[k]
                piece = self.sequences[i][j * seg : (j + 1) * seg]
                x[b, : len(piece)] = piece
                lengths[b], reset[b] = len(piece), j == 0
        return SegmentBatch(torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(reset))


class StreamSplit(SplitDataset):
    """A split of token sequences read as consecutive segments of parallel streams (truncated backprop).

    The number of streams is the batch size, known only when a loader is made: `loader(B, ...)`
    deals the sequences to B streams for that epoch and yields one Batch (x (B, L), lengths,
    reset) per segment index, in order, so batch k + 1 continues batch k row by row. len() is
    the number of sequences.
    """

    def __init__(self, sequences: Sequence[np.ndarray], segment_length: int, seed: int = 0, shuffle: bool = True):
        self.sequences, self.segment_length, self.seed, self.shuffle = list(sequences), segment_length, seed, shuffle
        if not self.sequences:
            raise ConfigError("no sequences to cut segments from; the data split is empty")

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.sequences[index], dtype=np.int64))

    def loader(self, batch_size: int, *, world: int = 1, rank: int = 0, seed: int = 0, epoch: int = 0,
               train: bool = True) -> list[Batch]:
        """This rank's B of the world x B streams the sequences are dealt to; every segment once, in stream order.

        Every rank deals all the sequences alike and keeps its own rows, so every rank has as many batches
        (the longest stream's segments): under DDP the ranks step together to the epoch's end. Near it a
        rank's rows may all be past their streams' ends (lengths 0: nothing scored, zero gradient).
        """
        streams = SegmentStreams(self.sequences, batch_size * world, self.segment_length, seed=self.seed,
                                 shuffle=self.shuffle and train)
        streams.set_epoch(epoch)
        rows = slice(rank * batch_size, (rank + 1) * batch_size)
        return [Batch(s.x[rows], lengths=s.lengths[rows], reset=s.reset[rows])
                for s in (streams[k] for k in range(len(streams)))]
