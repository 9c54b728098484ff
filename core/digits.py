"""Digits: class-conditional sampling, infill and scoring of 28 x 28 images, for both digit models.

A digit is 784 tokens in raster order (row by row) in [0, Q), Q = the model's levels, and a
class y in 0..9. Both models give logits (B, Q, 784) whose column i predicts pixel i from
pixels < i and y: the scanline WaveNet (`core.models.wavenet`, with its start symbol) and the
Gated PixelCNN (`core.models.pixelcnn`). So one set of functions serves both:

    sample(model, classes, observed=, temperature=, seed=, progress=)   (B, 784) tokens
    surprise_bits(model, x, classes)                                     (B, 784) -log2 p(x_i | x_<i, y)
    class_posterior(model, x)                                            (B, 10) p(y | x), uniform prior
    observed_mask(kind, painted=)                                        (784,) bool: the pixels kept

Both sample through `core.generation`, one step per pixel: the WaveNet with its fused kernel or
cached steps, the PixelCNN with per-layer caches of both stacks (core.generation.pixelcnn_cached,
and its C kernel core.generation.pixelcnn_fused; "rows" is the old row-by-row path).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.conditioning import Cond
from core.errors import ConfigError
from core.generation import generate_all
from core.generation.sampling import check_sampling_args
from core.models.pixelcnn import GatedPixelCNN
from core.models.wavenet import WaveNet

SIDE, PIXELS, N_CLASSES = 28, 784, 10
MASKS = ("top half", "bottom half", "left half", "right half", "painted region")
Progress = Callable[[int, int], None]  # (pixels done, pixels to do)


def check_digit_model(model: torch.nn.Module) -> None:
    """ConfigError unless `model` is a 10-class model of 28 x 28 images (scanline WaveNet or PixelCNN)."""
    c = model.config
    if isinstance(model, GatedPixelCNN):
        ok = (c.height, c.width) == (SIDE, SIDE)
    elif isinstance(model, WaveNet):
        ok = list(c.extra.get("image_shape", [])) == [SIDE, SIDE] and c.local_channels == 0
    else:
        ok = False
    if not (ok and c.n_classes == N_CLASSES):
        raise ConfigError("this is not a digit model: it must be a 10-class scanline WaveNet "
                          "(extra.image_shape [28, 28]) or a 28 x 28 Gated PixelCNN")


def to_tokens(images: np.ndarray, levels: int) -> torch.Tensor:
    """uint8 grey images (B, 28, 28) or (B, 784), 0..255 -> LongTensor (B, 784) in [0, levels), as MNIST is."""
    from core.data.mnist import requantise

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.reshape(len(images), -1).shape[1] != PIXELS:
        raise ConfigError(f"digits must be uint8 (B, 28, 28) images, got {images.dtype} {images.shape}")
    return torch.from_numpy(requantise(images.reshape(len(images), PIXELS), levels).astype(np.int64))


def to_images(tokens: torch.Tensor, levels: int) -> np.ndarray:
    """LongTensor (B, 784) in [0, levels) -> uint8 (B, 28, 28), level j shown as round(255 j / (levels - 1))."""
    grey = torch.round(tokens.double() * 255 / (levels - 1)).clamp(0, 255)
    return grey.to(torch.uint8).reshape(-1, SIDE, SIDE).cpu().numpy()


def observed_mask(kind: str, painted: np.ndarray | None = None) -> np.ndarray:
    """(784,) bool, True where a pixel is observed (kept): the named half, or all but the painted region.

    painted: (28, 28) bool, True where the user painted the pixels to re-draw ("painted region" only).
    """
    rows, cols = np.divmod(np.arange(PIXELS), SIDE)
    half = SIDE // 2
    halves = {"top half": rows < half, "bottom half": rows >= half, "left half": cols < half,
              "right half": cols >= half}
    if kind in halves:
        return halves[kind]
    if kind != "painted region":
        raise ConfigError(f"mask must be one of {MASKS}, got {kind!r}")
    if painted is None or np.shape(painted) != (SIDE, SIDE):
        raise ConfigError("paint the region to re-draw over the digit first")
    painted = np.asarray(painted, dtype=bool).reshape(PIXELS)
    if not painted.any():
        raise ConfigError("the painted region is empty: paint over the pixels the model should re-draw")
    return ~painted


def sample(model: torch.nn.Module, classes: torch.Tensor, *, observed: tuple[torch.Tensor, torch.Tensor] | None = None,
           temperature: float = 1.0, seed: int | None = None, progress: Progress | None = None,
           method: str = "auto") -> torch.Tensor:
    """Digits (B, 784) of the given classes (B,); observed = (mask (B or 1, 784) bool, values (B or 1, 784)).

    Observed pixels come back unchanged; the others are drawn in raster order given everything
    before them. `method` is the generator: "auto", or one of the model family's (WaveNet: "fused",
    "cached", "naive"; PixelCNN: "fused", "cached", "rows").
    """
    check_digit_model(model)
    check_sampling_args(temperature, None)
    classes = torch.as_tensor(classes, dtype=torch.long).reshape(-1)
    if classes.numel() == 0 or classes.min() < 0 or classes.max() >= N_CLASSES:
        raise ConfigError(f"classes must be digits 0..9, got {classes.tolist()}")
    batch = len(classes)
    if observed is not None:
        mask, values = (torch.as_tensor(o).reshape(-1, PIXELS).expand(batch, -1) for o in observed)
        observed = (mask.bool(), values.long())
    return generate_all(model, PIXELS, cond=Cond(classes=classes), batch=batch, observed=observed,
                        temperature=temperature, seed=seed, method=method, chunk_size=SIDE, progress=progress)


@torch.inference_mode()
def surprise_bits(model: torch.nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """-log2 p(x_i | x_<i, y) per pixel, FloatTensor (B, 784), in one forward pass."""
    check_digit_model(model)
    device = next(model.parameters()).device
    x = x.to(device)
    logits = model(x, Cond(classes=torch.as_tensor(classes, dtype=torch.long, device=device).reshape(-1)))
    return F.cross_entropy(logits, x, reduction="none").float() / np.log(2.0)


@torch.inference_mode()
def class_posterior(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """p(y | x) for y = 0..9 by Bayes' rule with a uniform prior: softmax_y log p(x | y); (B, 10)."""
    check_digit_model(model)
    batch = x.shape[0]
    classes = torch.arange(N_CLASSES).repeat(batch)  # image b with every class: rows b*10 .. b*10+9
    bits = surprise_bits(model, x.repeat_interleave(N_CLASSES, dim=0), classes)
    log_likelihood = -bits.double().sum(dim=1) * np.log(2.0)  # (B*10,) nats
    return torch.softmax(log_likelihood.reshape(batch, N_CLASSES), dim=1)
