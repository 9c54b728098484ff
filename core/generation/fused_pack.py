"""The WaveNet fused kernel's weight panels at each precision (core/generation/fused_kernel.c).

The float32 layout and the padding are core.generation.c_kernels' (16-column panels, channel
counts zero-padded to multiples of 16). For reduced precision a panel interleaves the g rows that
one 32-bit input word covers: bfloat16 g = 2 (vdpbf16ps), int8 g = 4 (vpdpbusd), with a scale per
column for int8.
"""

from __future__ import annotations

import numpy as np

from core.generation.c_kernels import panel_layout, zero_padded

PRECISIONS = ("fp32", "bf16", "int8")  # Model.precision 0, 1, 2 in the kernel
GROUP = {"fp32": 1, "bf16": 2, "int8": 4}  # rows of a panel one 32-bit input word covers


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> the bits of the nearest bfloat16 (ties to even), uint16, as the kernel rounds its inputs."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def int8_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) float32 -> (int8 (K, N), scale float32 (N,)) with w ~ q * scale, |q| <= 127 per column."""
    scale = np.abs(w).max(0) / 127
    scale[scale == 0] = 1
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


def weight_panels(w: np.ndarray, rows: int, cols: int, precision: str) -> tuple[np.ndarray, ...]:
    """(K, N) -> padded to (rows, cols) and stored as cols/16 panels at `precision`, flattened, with
    the columns' scales (cols,) and int8 sums (cols,): ones and zeros but for int8."""
    w = zero_padded(w, rows, cols)
    scale, colsum = np.ones(cols, np.float32), np.zeros(cols, np.float32)
    if precision == "bf16":
        w = bf16_bits(w)
    elif precision == "int8":
        w, scale = int8_columns(w)
        colsum = w.sum(0, dtype=np.int64).astype(np.float32)
    return panel_layout(w, GROUP[precision]), scale, colsum
