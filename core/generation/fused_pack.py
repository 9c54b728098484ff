"""Packing a WaveNet's weights into the fused kernel's layouts (core/generation/fused_kernel.c).

Every channel count is zero-padded to a multiple of the 16-column PANEL; a (K, N) matrix is
stored as N/16 panels, each holding its K rows for 16 columns, so the kernel streams every
weight once per step in order. For reduced precision the panel interleaves the g rows that one
32-bit input word covers: bfloat16 g = 2 (vdpbf16ps), int8 g = 4 (vpdpbusd), with a scale per
column for int8.
"""

from __future__ import annotations

import numpy as np
import torch

PANEL = 16
PRECISIONS = ("fp32", "bf16", "int8")  # Model.precision 0, 1, 2 in the kernel
GROUP = {"fp32": 1, "bf16": 2, "int8": 4}  # rows of a panel one 32-bit input word covers


def pad(n: int) -> int:
    return -(-n // PANEL) * PANEL


def as_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def padded(x: np.ndarray, *shape: int) -> np.ndarray:
    """x zero-padded at the end of each axis to `shape`."""
    out = np.zeros(shape, np.float32)
    out[tuple(slice(0, s) for s in x.shape)] = x
    return out


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> the bits of the nearest bfloat16 (ties to even), uint16, as the kernel rounds its inputs."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def int8_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) float32 -> (int8 (K, N), scale float32 (N,)) with w ~ q * scale, |q| <= 127 per column."""
    scale = np.abs(w).max(0) / 127
    scale[scale == 0] = 1
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


def panels(w: np.ndarray, rows: int, cols: int, precision: str = "fp32") -> tuple[np.ndarray, ...]:
    """(K, N) -> padded to (rows, cols) and stored as cols/16 panels, flattened, with the columns'
    scales and int8 sums (ones and zeros but for int8). A panel is (rows/g, 16, g) for g rows per
    32-bit input word: float32 g = 1, bfloat16 g = 2, int8 g = 4 (fused_kernel.c's layouts)."""
    w = padded(w, rows, cols)
    scale, colsum = np.ones(cols, np.float32), np.zeros(cols, np.float32)
    if precision == "bf16":
        w = bf16_bits(w)
    elif precision == "int8":
        w, scale = int8_columns(w)
        colsum = w.sum(0, dtype=np.int64).astype(np.float32)
    g = GROUP[precision]
    panels = w.reshape(rows // g, g, cols // PANEL, PANEL).transpose(2, 0, 3, 1)
    return np.ascontiguousarray(panels).reshape(-1), scale, colsum


def gate_order(x: np.ndarray, c_dil: int, c_pad: int) -> np.ndarray:
    """(..., 2 C_dil) [tanh | sigmoid] -> (..., 2 C_pad) in the kernel's blocks: tanh 16, sigmoid 16, ..."""
    lead = x.shape[:-1]
    halves = padded(x.reshape(*lead, 2, c_dil), *lead, 2, c_pad).reshape(*lead, 2, c_pad // PANEL, PANEL)
    return np.ascontiguousarray(np.swapaxes(halves, -3, -2)).reshape(*lead, 2 * c_pad)
