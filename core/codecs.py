"""Quantisers that turn samples in [-1, 1] into integer codes in [0, q) and back.

Both kinds put q levels on the same uniform grid over [-1, 1]:

    grid[k] = -1 + 2k / (q - 1),   k = 0 .. q-1

`linear` quantises the sample itself; `mulaw` first compands it with mu = q - 1,

    y = sign(x) * log1p(mu |x|) / log1p(mu),

so that quiet samples get more of the levels (the WaveNet recipe, with q = 256).
Encoding picks the nearest grid value (in the companded domain for mu-law), so
`decode(encode(x))` is the nearest representable value and `encode(decode(c)) == c`.

Every function accepts a numpy array or a torch tensor and returns the same kind (a
tensor stays on its device). The arithmetic is done in float64, which makes the
round trips exact for every q up to 65536; on Apple MPS, which has no float64, it is
float32.
"""

import math
from typing import Literal, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)
Kind = Literal["mulaw", "linear"]
KINDS: tuple[str, ...] = ("mulaw", "linear")
MAX_Q = 65536


def _check_q(q: int) -> None:
    if (
        isinstance(q, bool)
        or not isinstance(q, (int, np.integer))
        or not 2 <= q <= MAX_Q
    ):
        raise ValueError(f"q must be an int in [2, {MAX_Q}], got {q!r}")


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.device.type == "mps" else torch.float64


def _to_work_float(x: Array) -> Array:
    """`x` as float64 (float32 on MPS, which lacks float64), clipped to [-1, 1]."""
    if isinstance(x, torch.Tensor):
        y = x.to(_work_dtype(x))
    else:
        y = np.asarray(x, dtype=np.float64)
    if bool(y.isnan().any() if isinstance(y, torch.Tensor) else np.isnan(y).any()):
        raise ValueError("x contains NaN; only finite samples can be encoded")
    return y.clip(-1.0, 1.0)


def _grid_codes(y: Array, q: int) -> Array:
    """Nearest grid index of `y` in [-1, 1], as int64. Any shape; same shape out."""
    k = ((y + 1.0) * (0.5 * (q - 1))).round()
    return k.to(torch.int64) if isinstance(k, torch.Tensor) else k.astype(np.int64)


def _grid_values(codes: Array, q: int) -> Array:
    """Grid value of each integer code in [0, q), in the working float type."""
    if isinstance(codes, torch.Tensor):
        if (
            codes.dtype.is_floating_point
            or codes.dtype.is_complex
            or codes.dtype == torch.bool
        ):
            raise ValueError(
                f"codes must be an integer tensor, got dtype {codes.dtype}"
            )
        k = codes.to(_work_dtype(codes))
    else:
        codes = np.asarray(codes)
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be an integer array, got dtype {codes.dtype}")
        k = codes.astype(np.float64)
    if bool(((codes < 0) | (codes >= q)).any()):
        raise ValueError(f"codes must lie in [0, {q}) for q={q}; some are outside")
    return k * (2.0 / (q - 1)) - 1.0


def _to_float32(x: Array) -> Array:
    x = x.clip(-1.0, 1.0)
    return x.to(torch.float32) if isinstance(x, torch.Tensor) else x.astype(np.float32)


def _sign(x: Array) -> Array:
    return x.sign() if isinstance(x, torch.Tensor) else np.sign(x)


def _compand(x: Array, mu: int) -> Array:
    """mu-law companding of `x` in [-1, 1]; any shape, same shape out."""
    log1p = torch.log1p if isinstance(x, torch.Tensor) else np.log1p
    return _sign(x) * log1p(mu * abs(x)) / math.log1p(mu)


def _expand(y: Array, mu: int) -> Array:
    """Inverse of `_compand`; any shape, same shape out."""
    expm1 = torch.expm1 if isinstance(y, torch.Tensor) else np.expm1
    return _sign(y) * expm1(abs(y) * math.log1p(mu)) / mu


def linear_encode(x: Array, q: int) -> Array:
    """Samples (any shape, values clipped to [-1, 1]) -> int64 codes in [0, q), same shape.

    Each code is the index of the nearest of q uniform grid values over [-1, 1].
    Raises ValueError for a bad `q` or NaN samples.
    """
    _check_q(q)
    return _grid_codes(_to_work_float(x), q)


def linear_decode(codes: Array, q: int) -> Array:
    """Integer codes in [0, q) (any shape) -> float32 grid values in [-1, 1], same shape."""
    _check_q(q)
    return _to_float32(_grid_values(codes, q))


def mulaw_encode(x: Array, q: int) -> Array:
    """Samples (any shape, values clipped to [-1, 1]) -> int64 codes in [0, q), same shape.

    Companding with mu = q - 1, then the nearest of q uniform grid values over [-1, 1].
    Raises ValueError for a bad `q` or NaN samples.
    """
    _check_q(q)
    return _grid_codes(_compand(_to_work_float(x), q - 1), q)


def mulaw_decode(codes: Array, q: int) -> Array:
    """Integer codes in [0, q) (any shape) -> float32 samples in [-1, 1], same shape."""
    _check_q(q)
    return _to_float32(_expand(_grid_values(codes, q), q - 1))


_ENCODERS = {"mulaw": mulaw_encode, "linear": linear_encode}
_DECODERS = {"mulaw": mulaw_decode, "linear": linear_decode}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def encode(x: Array, q: int, kind: Kind = "mulaw") -> Array:
    """Samples in [-1, 1] (any shape) -> int64 codes in [0, q) with the `kind` quantiser."""
    _check_kind(kind)
    return _ENCODERS[kind](x, q)


def decode(codes: Array, q: int, kind: Kind = "mulaw") -> Array:
    """Integer codes in [0, q) (any shape) -> float32 samples with the `kind` quantiser."""
    _check_kind(kind)
    return _DECODERS[kind](codes, q)
